// Whole-cluster simulations of membership changes and snapshots: random
// changes (add, remove, replace, the leader included, stuck ones abandoned)
// while clients run and the network partitions and nodes crash; snapshots
// taken, compacted, streamed in chunks and installed, with crashes at every
// install step; scripted cases for the situations a random mix may miss.
// Every run is under every checker (one leader per term, log matching,
// leader completeness, state machine safety and contents, lease exclusion,
// linearizability); a broken install order must be caught.
#include <gtest/gtest.h>

#include "tests/sim/simulation.h"

namespace nori::sim {
namespace {

struct Totals {
  size_t runs = 0, failed = 0, ops = 0, crashes = 0, partitions = 0;
  size_t adds = 0, removes = 0, leader_removes = 0, replaces = 0, abandons = 0, wipes = 0;
  size_t changes = 0, snapshots = 0, installs = 0, chunks = 0, resends = 0;
  size_t install_crashes[5] = {0, 0, 0, 0, 0};
  size_t recovered_old = 0, recovered_new = 0;
  std::vector<std::string> first_failures;

  void add(const SimReport& r) {
    ++runs;
    ops += r.ok_ops;
    crashes += r.crashes;
    partitions += r.partitions;
    adds += r.adds;
    removes += r.removes;
    leader_removes += r.leader_removes;
    replaces += r.replaces;
    abandons += r.abandons;
    wipes += r.wipes;
    changes += r.changes_completed;
    snapshots += r.snapshots_taken;
    installs += r.installs;
    chunks += r.snapshot_chunks;
    resends += r.snapshot_resends;
    for (int i = 0; i < 5; ++i)
      install_crashes[i] += r.install_crashes[i];
    recovered_old += r.recovered_old;
    recovered_new += r.recovered_new;
    if (!r.ok) {
      ++failed;
      if (first_failures.size() < 3) first_failures.push_back(r.summary());
    }
  }
};

Totals sweep(uint64_t first, uint64_t seeds, SimOptions (*options_for)(uint64_t),
             void (*tweak)(SimOptions&) = nullptr) {
  Totals t;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    SimOptions o = options_for(seed);
    if (tweak) tweak(o);
    t.add(run_simulation(o));
  }
  return t;
}

std::string failures(const Totals& t) {
  std::string s;
  for (const std::string& f : t.first_failures)
    s += f + "\n";
  return s;
}

TEST(SimMembership, MembershipChangesUnderPartitionsKeepEveryChecker) {
  const uint64_t seeds = NORI_SIM_MEMBERSHIP_SEEDS;
  Totals t = sweep(1, seeds, &SimOptions::membership_for_seed);
  EXPECT_EQ(t.failed, 0u) << failures(t);
  // The sweep exercises what it claims: every kind of change, under faults.
  EXPECT_GT(t.ops, seeds * 100);
  EXPECT_GT(t.crashes, seeds);
  EXPECT_GT(t.partitions, seeds);
  EXPECT_GT(t.adds, seeds / 2);
  EXPECT_GT(t.removes, seeds / 2);
  EXPECT_GT(t.leader_removes, seeds / 10);
  EXPECT_GT(t.replaces, seeds / 4);
  EXPECT_GT(t.abandons, 0u);
  // Decommissioned: only nodes in no group, about one seed in eight. The 20
  // seeds of a sanitizer build may hold none (seeds 1-20 do since the
  // clients' routing changed the schedules); reimages run under the
  // sanitizers in ClientFindsLeaderAfterItsGuessesWentToRetiredNodes (4).
  if (seeds >= 100) EXPECT_GT(t.wipes, seeds / 40);
  EXPECT_GT(t.changes, seeds);
  EXPECT_GT(t.installs, seeds / 2);
}

TEST(SimMembership, SnapshotSeedsPassEveryCheckerWithoutMembershipChanges) {
  const uint64_t seeds = NORI_SIM_MEMBERSHIP_SEEDS / 2;
  Totals t = sweep(1, seeds, &SimOptions::snapshots_for_seed);
  EXPECT_EQ(t.failed, 0u) << failures(t);
  EXPECT_GT(t.snapshots, seeds * 5);
  EXPECT_GT(t.installs, 0u);
}

TEST(SimMembership, InterruptedSnapshotTransferResumesFromTheAcknowledgedOffset) {
  // Chunks of 8-64 bytes over a lossy, partitioned network: transfers take
  // several round trips, some stall, and the leader re-drives them from the
  // follower's last acknowledged offset (not from 0), after which the
  // install completes under every checker.
  const uint64_t seeds = NORI_SIM_MEMBERSHIP_SEEDS;
  Totals t = sweep(1001, seeds, &SimOptions::membership_for_seed, [](SimOptions& o) {
    o.loss = 0.08;
    o.snapshot_chunk_bytes = 8;
  });
  EXPECT_EQ(t.failed, 0u) << failures(t);
  EXPECT_GT(t.chunks, t.installs * 3);
  EXPECT_GT(t.resends, 0u);
  EXPECT_GT(t.installs, seeds / 4);
}

TEST(SimMembership, CrashAtEveryInstallStepLeavesOldOrNewState) {
  // Each step boundary in turn: 1 file durable, 2 reset record durable,
  // 3 state machine restored, 4 acknowledged. A crash there must recover to
  // the old snapshot (before the reset record is durable) or the new one
  // (after), with a state machine equal to the committed log's (checked at
  // recovery, at every later snapshot and at the end).
  const uint64_t seeds = NORI_SIM_MEMBERSHIP_SEEDS / 2;
  for (int step = 1; step <= 4; ++step) {
    SCOPED_TRACE(::testing::Message() << "install step " << step);
    static int current_step;
    current_step = step;
    Totals t = sweep(2001, seeds, &SimOptions::membership_for_seed, [](SimOptions& o) {
      o.install_crash_chance = 0.5;
      o.install_crash_step = current_step;
    });
    EXPECT_EQ(t.failed, 0u) << failures(t);
    EXPECT_GT(t.install_crashes[step], 2u);
    for (int other = 1; other <= 4; ++other) {
      if (other != step) EXPECT_EQ(t.install_crashes[other], 0u);
    }
    if (step == 1) {
      EXPECT_GT(t.recovered_old, 0u);  // the reset record was not durable yet
    } else {
      EXPECT_GT(t.recovered_new, 0u);
    }
  }
}

TEST(SimMembership, CrashDuringAStaleInstallMayRecoverItsOwnNewerSnapshot) {
  // Found by nori-sim --long (seed 46373 of --membership, 60 s): a chunk of
  // snapshot 793 arrived while the follower's commit index was below 793;
  // appends it already held then committed to 794 and it took its own
  // snapshot at 794 while the transfer finished, so the core installed the
  // older snapshot (its commit index is checked when a chunk arrives, not
  // when the file is complete).
  // A crash at an install step boundary recovered the node's own snapshot
  // 794, which the recovery check took for neither the old state nor the
  // new one. It is a correct outcome (the storage ignores a reset record
  // older than its snapshot; the restored state is checked against the
  // committed log either way), now counted apart.
  SimOptions o = SimOptions::membership_for_seed(46373);
  o.duration = 60 * kSecond;
  SimReport r = run_simulation(o);
  EXPECT_TRUE(r.ok) << r.summary();
  EXPECT_GE(r.recovered_own_newer, 1u) << "the seed no longer has the race: " << r.summary();
}

// Membership seeds where every follower that falls behind needs a snapshot.
SimOptions install_heavy(uint64_t seed) {
  SimOptions o = SimOptions::membership_for_seed(seed);
  o.raft.snapshot_keep_entries = 0;
  o.raft.snapshot_entries_max = 20;
  return o;
}

TEST(SimMembership, ResetRecordBeforeTheSnapshotFileIsCaught) {
  // A broken driver makes the reset record durable before the snapshot
  // file. A crash between the two leaves the log reset to a snapshot whose
  // state machine cannot be restored: the node comes back with an older
  // state under the new index, which the state-machine content check
  // catches (besides the missing file itself).
  size_t caught = 0, content = 0;
  for (uint64_t seed = 1; seed <= NORI_SIM_BROKEN_SEEDS; ++seed) {
    SimOptions o = install_heavy(seed);
    o.unsafe_install_reset_before_file_for_testing = true;
    o.install_crash_chance = 1;
    o.install_crash_step = 2;  // with the broken order: reset durable, file not
    SimReport r = run_simulation(o);
    if (!r.ok) ++caught;
    for (const std::string& v : r.violations) {
      if (v.find("state machine contents") != std::string::npos) {
        ++content;
        break;
      }
    }
  }
  EXPECT_GE(caught, (NORI_SIM_BROKEN_SEEDS + 1) / 2);
  EXPECT_GE(content, (NORI_SIM_BROKEN_SEEDS + 2) / 3)
      << "the state-machine content check missed a mixed install";
  // The same seeds with the correct order pass (the failure is the order's).
  for (uint64_t seed = 1; seed <= NORI_SIM_BROKEN_SEEDS; ++seed) {
    SimOptions o = install_heavy(seed);
    o.install_crash_chance = 1;
    o.install_crash_step = 2;
    SimReport r = run_simulation(o);
    EXPECT_TRUE(r.ok) << r.summary();
  }
}

// A quiet 3-node cluster (one group, no random faults, snapshots every few
// dozen entries and none kept behind them) for the scripted cases.
SimOptions scripted(uint64_t seed) {
  SimOptions o = SimOptions::snapshots_for_seed(seed);
  o.nodes = 3;
  o.groups = 1;
  o.fault_interval_mean = 0;
  o.loss = 0.01;
  o.install_crash_chance = 0;
  o.raft.snapshot_entries_max = 30;
  o.raft.snapshot_keep_entries = 0;
  o.duration = 10 * kSecond;
  o.quiet = 5 * kSecond;
  o.require_progress = true;
  return o;
}

TEST(SimMembership, FarBehindFollowerCatchesUpBySnapshot) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SimOptions o = scripted(seed);
    // A follower down for 5 s while clients write hundreds of entries: the
    // leader's log starts long past its last index when it returns.
    o.script.push_back(
        {2 * kSecond, ScriptStep::Op::kCrash, ScriptStep::Who::kFollower, 0, 5 * kSecond});
    SimReport r = run_simulation(o);
    ASSERT_TRUE(r.ok) << r.summary();
    const raft::NodeId f = r.script_nodes[0];
    ASSERT_NE(f, 0u);
    EXPECT_GT(r.installs, 0u) << r.summary();
    // It caught up: at the end it has applied everything committed.
    EXPECT_EQ(r.final_applied[0].at(f), r.final_commit[0]) << r.summary();
    EXPECT_GT(r.final_commit[0], 200u) << r.summary();
  }
}

TEST(SimMembership, RemovingTheLeaderHandsOverAndCommits) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SimOptions o = scripted(seed);
    o.nodes = 5;
    o.membership = true;
    o.random_changes = false;  // only the script's changes
    // The leader is removed twice in a row; after each removal the group
    // must keep committing client writes (require_progress, linearizable
    // history), and neither node may be a member at the end.
    o.script.push_back({3 * kSecond, ScriptStep::Op::kRemove, ScriptStep::Who::kLeader});
    o.script.push_back({7 * kSecond, ScriptStep::Op::kRemove, ScriptStep::Who::kLeader});
    SimReport r = run_simulation(o);
    ASSERT_TRUE(r.ok) << r.summary();
    EXPECT_GE(r.leader_removes, 2u) << r.summary();
    const std::string& m = r.final_membership[0];
    ASSERT_FALSE(m.empty()) << "no leader at the end: " << r.summary();
    for (raft::NodeId x : r.script_nodes) {
      ASSERT_NE(x, 0u);
      EXPECT_EQ(m.find(std::to_string(x)), std::string::npos)
          << "removed leader " << x << " still in " << m << "\n"
          << r.summary();
    }
    EXPECT_NE(r.script_nodes[0], r.script_nodes[1]);
  }
}

TEST(SimMembership, AbandonedChangeLeavesAWorkingCluster) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SimOptions o = scripted(seed);
    o.membership = true;
    o.random_changes = false;
    o.spares = 1;
    o.change_stuck_after = 2 * kSecond;
    // Node 4 (a spare) is added while it is down for good: it never catches
    // up, the promotion is stuck and gets abandoned; the group keeps
    // committing and node 4 is not a member at the end.
    o.script.push_back({kSecond, ScriptStep::Op::kCrash, ScriptStep::Who::kNode, 4, kSecond * 60});
    o.script.push_back({2 * kSecond, ScriptStep::Op::kAdd, ScriptStep::Who::kNode, 4});
    SimReport r = run_simulation(o);
    ASSERT_TRUE(r.ok) << r.summary();
    EXPECT_EQ(r.adds, 1u) << r.summary();
    EXPECT_GE(r.abandons, 1u) << r.summary();
    EXPECT_EQ(r.final_membership[0], "voters={1,2,3}") << r.summary();
  }
}

TEST(SimMembership, AbandonedJointConfigurationGoesBackToTheOldOne) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SimOptions o = scripted(seed);
    o.membership = true;
    o.random_changes = false;
    o.change_stuck_after = 150 * kMillisecond;
    // A follower is cut off, then the other follower is removed: C_new is
    // the leader and the cut-off node, so the joint configuration cannot
    // commit. The change is abandoned before the leader's check-quorum gives
    // up (C_old is appended and takes effect at once, and the leader and the
    // remaining follower are a majority of it): the group keeps its three
    // voters and commits.
    o.script.push_back(
        {3 * kSecond, ScriptStep::Op::kIsolate, ScriptStep::Who::kFollower, 0, 3 * kSecond});
    o.script.push_back({3 * kSecond + 20 * kMillisecond, ScriptStep::Op::kRemove,
                        ScriptStep::Who::kOtherFollower});
    SimReport r = run_simulation(o);
    ASSERT_TRUE(r.ok) << r.summary();
    EXPECT_EQ(r.removes, 1u) << r.summary();
    EXPECT_EQ(r.abandons, 1u) << r.summary();
    EXPECT_EQ(r.final_membership[0], "voters={1,2,3}") << r.summary();
  }
}

TEST(SimMembership, RemovedNodeThatMissedItsRemovalDoesNotDisrupt) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SimOptions o = scripted(seed);
    o.nodes = 5;
    o.membership = true;
    o.random_changes = false;
    o.wipe_removed_fraction = 0;  // it keeps running with its old log
    // A follower is cut off, removed while it cannot hear of it, and comes
    // back believing it is still a voter: its election timer fires again and
    // again, but the members ignore it (it is no peer of theirs and they
    // hear from their leader), so no term changes and writes keep
    // committing.
    o.script.push_back(
        {2 * kSecond, ScriptStep::Op::kIsolate, ScriptStep::Who::kFollower, 0, 4 * kSecond});
    o.script.push_back({2500 * kMillisecond, ScriptStep::Op::kRemove, ScriptStep::Who::kPrevious});
    SimReport r = run_simulation(o);
    ASSERT_TRUE(r.ok) << r.summary();
    const raft::NodeId x = r.script_nodes[0];
    ASSERT_NE(x, 0u);
    EXPECT_EQ(r.removes, 1u) << r.summary();
    EXPECT_EQ(r.final_membership[0].find(std::to_string(x)), std::string::npos)
        << r.final_membership[0];
    EXPECT_EQ(r.leaders, 1u) << "the removed node disrupted the group: " << r.summary();
  }
}

TEST(SimMembership, LearnerWithoutItsConfigurationIsNotPromoted) {
  // Found by the membership sweep (seed 101147): with a promotion lag
  // allowance larger than the commit index, a learner that had received
  // nothing (cut off) was promoted at once. Removing the other voters then
  // left C_new needing its vote; the leader lost check-quorum, and no
  // election could ever succeed: the new voter, with no configuration,
  // drops vote requests from nodes it does not know (raft.cc step()). A
  // learner must hold the configuration entry naming it before promotion.
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SimOptions o = scripted(seed);
    o.membership = true;
    o.random_changes = false;
    o.spares = 1;
    o.change_stuck_after = 2 * kSecond;
    o.raft.promote_lag_entries_max = 1'000'000;
    o.script.push_back({kSecond, ScriptStep::Op::kIsolate, ScriptStep::Who::kNode, 4, 6 * kSecond});
    o.script.push_back({1500 * kMillisecond, ScriptStep::Op::kAdd, ScriptStep::Who::kNode, 4});
    o.script.push_back({3 * kSecond, ScriptStep::Op::kRemove, ScriptStep::Who::kFollower});
    o.script.push_back({4500 * kMillisecond, ScriptStep::Op::kRemove, ScriptStep::Who::kFollower});
    SimReport r = run_simulation(o);
    EXPECT_TRUE(r.ok) << r.summary();
    EXPECT_FALSE(r.final_membership[0].empty()) << "no leader at the end: " << r.summary();
  }
}

TEST(SimMembership, ClientFindsLeaderAfterItsGuessesWentToRetiredNodes) {
  // Found by nori-sim --long (seed 2873 of --membership, 60 s): group 1
  // ended as voters {4,8} led by 4, committing whenever asked, among nine
  // node ids of which five were retired by reimages (silent for good), one
  // was a removed voter and one a spare (neither knowing the leader). The
  // clients then forgot the leader after any timeout and guessed among
  // every id: every write of the 8 s quiet window went to a silent id, and
  // the progress check failed although the cluster was healthy. Clients now
  // keep the node that served them, follow hints, learn the members from
  // replies and rotate over those (tests/sim/client_router.h).
  SimOptions o = SimOptions::membership_for_seed(2873);
  o.duration = 60 * kSecond;
  SimReport fixed = run_simulation(o);
  EXPECT_TRUE(fixed.ok) << fixed.summary();
  EXPECT_GE(fixed.wipes, 3u) << "the scenario lost its retired ids: " << fixed.summary();

  // The clients as they were, draw for draw: the same seed fails the
  // progress check again, and nothing else, with a leader in place at the
  // end. The progress check still catches clients that miss a healthy
  // leader; it was not weakened to let the fixed clients pass.
  o.unsafe_clients_guess_at_random_for_testing = true;
  SimReport old = run_simulation(o);
  ASSERT_FALSE(old.ok) << old.summary();
  ASSERT_EQ(old.violation_count, 1u) << old.summary();
  EXPECT_NE(old.violations[0].find("progress: group 1 committed no client write"),
            std::string::npos)
      << old.summary();
  EXPECT_EQ(old.final_membership[0], "voters={4,8}") << old.summary();
  EXPECT_EQ(old.wipes, 5u) << old.summary();
  EXPECT_NE(old.replay.find("--unsafe-random-clients"), std::string::npos) << old.replay;
  // If a change to raft/ or to the simulator moves this seed's schedule,
  // the old clients may stop missing the leader on it (they did so in 1 of
  // 13,623 long runs): then pick another seed that fails only the progress
  // check with --unsafe-random-clients and passes without it.
}

TEST(SimMembership, ClientsFollowTheGroupPastRetiredAndRemovedNodes) {
  // Built like seed 2873, scripted: two spares join, then every founding
  // voter is removed (a leader hands over first) and decommissioned: its id
  // is retired (silent for good) and the new machine comes back under a new
  // id, outside the group, knowing no leader. Then the leader crashes just
  // before the faults heal, so every client times out on it and must find
  // the new leader among eight ids: three silent, three that know nothing,
  // two members.
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SimOptions o = scripted(seed);
    o.membership = true;
    o.random_changes = false;
    o.spares = 2;
    // A new leader (after a removed one handed over) commits, and so
    // accepts the next change, only after the lease wait (about 2.1 s).
    o.duration = 14 * kSecond;
    using Op = ScriptStep::Op;
    const auto node = ScriptStep::Who::kNode;
    o.script.push_back({1000 * kMillisecond, Op::kAdd, node, 4});
    o.script.push_back({2500 * kMillisecond, Op::kAdd, node, 5});
    for (raft::NodeId x = 1; x <= 3; ++x) {
      o.script.push_back(
          {(1500 + 2500 * static_cast<SimTime>(x)) * kMillisecond, Op::kRemove, node, x});
    }
    // Once all three are out (a removed leader hands over first).
    for (raft::NodeId x = 1; x <= 3; ++x)
      o.script.push_back({12 * kSecond, Op::kReimage, node, x});  // new id 5 + x
    o.script.push_back({13800 * kMillisecond, Op::kCrash, ScriptStep::Who::kLeader, 0, kSecond});
    SimReport r = run_simulation(o);
    EXPECT_TRUE(r.ok) << r.summary();
    EXPECT_EQ(r.wipes, 3u) << r.summary();
    EXPECT_EQ(r.final_membership[0], "voters={4,5}") << r.summary();
    ASSERT_NE(r.script_nodes.back(), 0u) << "no leader to crash: " << r.summary();
  }
}

TEST(SimMembership, ProgressCheckCatchesAGroupThatCannotCommitAfterTheFaults) {
  // The progress check is not weakened by the clients' routing: two of
  // three voters go down for good just before the faults heal; the clients
  // find every live node, and none can commit.
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SimOptions o = scripted(seed);
    o.script.push_back(
        {9500 * kMillisecond, ScriptStep::Op::kCrash, ScriptStep::Who::kFollower, 0, 60 * kSecond});
    o.script.push_back({9500 * kMillisecond, ScriptStep::Op::kCrash,
                        ScriptStep::Who::kOtherFollower, 0, 60 * kSecond});
    SimReport r = run_simulation(o);
    ASSERT_FALSE(r.ok) << r.summary();
    ASSERT_EQ(r.violation_count, 1u) << r.summary();
    EXPECT_NE(r.violations[0].find("progress: group 1 committed no client write"),
              std::string::npos)
        << r.summary();
  }
}

TEST(SimMembership, ReplayCommandNamesTheScenarioAndItsKnobs) {
  SimOptions o = SimOptions::membership_for_seed(4);
  o.unsafe_install_reset_before_file_for_testing = true;
  o.install_crash_chance = 1;
  o.install_crash_step = 2;
  const std::string cmd = o.replay_command();
  for (const char* part : {"--seed 4", "--membership", "--install-crash-chance 1",
                           "--install-crash-step 2", "--unsafe-install-reset-first", "--trace"}) {
    EXPECT_NE(cmd.find(part), std::string::npos) << part << " missing from " << cmd;
  }
  // A seed's own defaults are not repeated; --snapshots alone is named.
  EXPECT_EQ(SimOptions::membership_for_seed(4).replay_command().find("--install-crash"),
            std::string::npos);
  EXPECT_NE(SimOptions::snapshots_for_seed(4).replay_command().find("--snapshots"),
            std::string::npos);
}

TEST(SimMembership, SameMembershipSeedReplaysExactly) {
  SimOptions o = SimOptions::membership_for_seed(77);
  SimReport a = run_simulation(o);
  SimReport b = run_simulation(o);
  EXPECT_EQ(a.summary(), b.summary());
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.final_membership, b.final_membership);
}

}  // namespace
}  // namespace nori::sim
