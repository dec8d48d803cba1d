// Unit tests of the Raft core on the deterministic in-process TestCluster.
// Each test is named after the failure it proves handled.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "tests/raft/test_cluster.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

constexpr TimePoint kFar = TimePoint::max();

// Elects node `id` and advances past every restart promise so that it commits.
NodeId stable_leader(TestCluster& c, NodeId id = 1) {
  c.elect(id);
  EXPECT_TRUE(c.raft(id).is_leader());
  c.advance(3s);
  EXPECT_TRUE(c.raft(id).is_leader());
  EXPECT_GE(c.raft(id).commit_index(), c.raft(id).last_index());
  return id;
}

Index propose_ok(TestCluster& c, NodeId id, std::string data, uint64_t pid = 0) {
  auto r = c.raft(id).propose(std::move(data), pid, c.now(), kFar);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
  return r.ok() ? *r : 0;
}

size_t count_sent(TestCluster& c, NodeId id, MessageType type) {
  size_t k = 0;
  for (const Message& m : c.node(id).sent)
    k += m.type() == type;
  return k;
}

const ReadResult* find_read(TestCluster& c, NodeId id, uint64_t request_id) {
  for (const ReadResult& r : c.node(id).reads) {
    if (r.request_id == request_id) return &r;
  }
  return nullptr;
}

bool has_event(TestCluster& c, NodeId id, EventKind kind) {
  for (const Event& e : c.node(id).events) {
    if (e.kind == kind) return true;
  }
  return false;
}

// --- elections ------------------------------------------------------------------

TEST(RaftElection, ElectsExactlyOneLeaderWithDefaultTimeouts) {
  TestCluster c(3);
  NodeId l = c.wait_for_leader(2s);
  ASSERT_NE(l, kNoNode);
  int leaders = 0;
  for (NodeId id : c.ids()) {
    leaders += c.raft(id).is_leader();
    EXPECT_EQ(c.raft(id).leader(), l);
    EXPECT_EQ(c.raft(id).term(), c.raft(l).term());
  }
  EXPECT_EQ(leaders, 1);
  EXPECT_TRUE(has_event(c, l, EventKind::kLeaderElected));
  EXPECT_TRUE(has_event(c, l, EventKind::kVoteGranted));
  EXPECT_GE(c.raft(l).status().elections_started, 1u);
  for (NodeId id : c.ids()) {
    if (id != l) {
      EXPECT_TRUE(has_event(c, id, EventKind::kVoteRequest));
      EXPECT_TRUE(has_event(c, id, EventKind::kLeaderElected));
    }
  }
}

TEST(RaftElection, AtMostOneLeaderPerTermUnderLossAndCrashes) {
  TestCluster c(5);
  std::mt19937_64 rng(7);
  c.set_drop([&](const Message&) { return rng() % 5 == 0; });
  std::map<Term, NodeId> leader_of_term;
  auto record = [&] {
    for (NodeId id : c.ids()) {
      for (const Event& e : c.node(id).events) {
        if (e.kind != EventKind::kLeaderElected || e.node != id) continue;
        auto [it, inserted] = leader_of_term.emplace(e.term, id);
        EXPECT_EQ(it->second, id) << "two leaders in term " << e.term;
      }
      c.node(id).events.clear();
    }
  };
  for (int step = 0; step < 40; ++step) {
    c.advance(500ms);
    record();
    if (step % 4 == 3) {
      NodeId victim = c.leader();
      if (victim == kNoNode) victim = 1 + rng() % 5;
      c.crash(victim);
      c.advance(800ms);
      record();
      c.start_node(victim);
    }
  }
  EXPECT_GE(leader_of_term.size(), 5u);
  // Log matching on what was applied: every applied sequence is a prefix of
  // the longest one.
  std::vector<Entry> longest;
  for (NodeId id : c.ids()) {
    const auto& log = c.node(id).disk->log();
    Index commit = c.raft(id).commit_index();
    std::vector<Entry> committed(log.begin(), log.begin() + std::min<size_t>(commit, log.size()));
    if (committed.size() > longest.size()) std::swap(committed, longest);
    EXPECT_TRUE(std::equal(committed.begin(), committed.end(), longest.begin()));
  }
}

TEST(RaftElection, PreVoteKeepsIsolatedFollowerFromInflatingTerms) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  Term term = c.raft(l).term();
  c.isolate(3);
  c.advance(5s);
  EXPECT_EQ(c.raft(3).term(), term) << "pre-vote failed, so the term must not grow";
  c.heal();
  c.advance(1s);
  EXPECT_TRUE(c.raft(l).is_leader()) << "the rejoining node must not depose the leader";
  EXPECT_EQ(c.raft(l).term(), term);
}

TEST(RaftElection, CheckQuorumStepsDownIsolatedLeader) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(l);
  c.advance(800ms);
  EXPECT_FALSE(c.raft(l).is_leader());
  EXPECT_TRUE(has_event(c, l, EventKind::kStepDown));
  auto r = c.raft(l).propose("x", 1, c.now(), kFar);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kNotLeader);
}

TEST(RaftElection, LeaderStickinessIgnoresVotesWhileLeaderIsAlive) {
  TestCluster c(3, [](Config& cfg) { cfg.pre_vote = false; });
  NodeId l = stable_leader(c);
  // Node 3 campaigns without pre-vote while the leader is healthy: voters that
  // heard from the leader within the minimum election timeout ignore it.
  for (NodeId id : c.ids())
    c.node(id).sent.clear();
  c.raft(3).campaign(c.now());
  c.settle();
  for (NodeId id : {NodeId{1}, NodeId{2}}) {
    for (const Message& m : c.node(id).sent) {
      auto* v = std::get_if<VoteReply>(&m.body);
      EXPECT_FALSE(v != nullptr && v->granted) << "node " << id << " granted a disruptive vote";
    }
  }
  EXPECT_FALSE(c.raft(3).is_leader());
  (void)l;
}

// --- durability ---------------------------------------------------------------------

TEST(RaftDurability, VoteIsDurableBeforeReply) {
  TestCluster c(3, [](Config& cfg) { cfg.pre_vote = false; });
  c.isolate(3);
  c.node(2).auto_persist = false;
  c.raft(1).campaign(c.now());
  c.settle();
  EXPECT_FALSE(c.raft(1).is_leader()) << "won with a vote that was not durable";
  EXPECT_EQ(count_sent(c, 2, MessageType::kVoteReply), 0u);
  EXPECT_EQ(c.node(2).disk->hard_state().vote, kNoNode);
  ASSERT_EQ(c.held_messages(2), 1u);
  c.persist_hard_state(2);
  EXPECT_EQ(c.node(2).disk->hard_state().vote, 1u);
  c.settle();
  EXPECT_TRUE(c.raft(1).is_leader());
}

TEST(RaftDurability, CandidateCountsSelfVoteOnlyWhenDurable) {
  TestCluster solo(1);
  solo.node(1).auto_persist = false;
  solo.raft(1).campaign(solo.now());
  solo.settle();
  EXPECT_EQ(solo.raft(1).role(), Role::kCandidate) << "counted its own vote before it was durable";
  solo.persist_hard_state(1);
  solo.settle();
  EXPECT_TRUE(solo.raft(1).is_leader());

  // With peers: the vote requests carry a term that is not durable yet, so
  // they wait for it too.
  TestCluster c(3, [](Config& cfg) { cfg.pre_vote = false; });
  c.node(1).auto_persist = false;
  c.raft(1).campaign(c.now());
  c.settle();
  EXPECT_EQ(count_sent(c, 1, MessageType::kVoteRequest), 0u);
  c.persist_hard_state(1);
  c.settle();
  EXPECT_EQ(count_sent(c, 1, MessageType::kVoteRequest), 2u);
  EXPECT_TRUE(c.raft(1).is_leader());
}

TEST(RaftDurability, AppendAckedOnlyWhenDurable) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(3);
  c.node(2).auto_persist = false;
  Index x = propose_ok(c, l, "x", 7);
  c.settle();
  EXPECT_LT(c.raft(l).commit_index(), x) << "committed on an ack of non-durable entries";
  // A hard-state-only sync does not release an append ack.
  c.persist_hard_state(2);
  c.settle();
  EXPECT_LT(c.raft(l).commit_index(), x);
  c.persist_all(2);
  c.settle();
  EXPECT_GE(c.raft(l).commit_index(), x);
  ASSERT_FALSE(c.node(l).proposals.empty());
  EXPECT_TRUE(c.node(l).proposals.back().ok());
  EXPECT_EQ(c.node(l).proposals.back().index, x);
}

TEST(RaftDurability, HeartbeatReplyDoesNotWaitForDataSync) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(3);
  c.node(2).auto_persist = false;
  propose_ok(c, l, "x");
  c.settle();
  ASSERT_GT(c.held_messages(2), 0u);
  size_t replies = count_sent(c, 2, MessageType::kHeartbeatReply);
  c.advance(200ms);
  EXPECT_GT(count_sent(c, 2, MessageType::kHeartbeatReply), replies)
      << "a heartbeat reply waited for the data sync";
  EXPECT_GT(c.held_messages(2), 0u);
  EXPECT_TRUE(c.raft(l).lease_valid(c.now()));
}

TEST(RaftDurability, LeaderWritesItsDiskInParallelAndCountsItselfOnlyWhenDurable) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(3);
  c.node(l).auto_persist = false;
  size_t appends = count_sent(c, l, MessageType::kAppend);
  Index x = propose_ok(c, l, "x");
  c.settle();
  EXPECT_GT(count_sent(c, l, MessageType::kAppend), appends)
      << "the append waited for the leader's own disk write";
  EXPECT_EQ(c.raft(2).durable_index(), x);
  EXPECT_LT(c.raft(l).commit_index(), x)
      << "the leader counted itself before its write was durable";
  c.persist_all(l);
  c.settle();
  EXPECT_GE(c.raft(l).commit_index(), x);
}

TEST(RaftDurability, HeartbeatThatRaisesTheTermWaitsOnlyForTheHardState) {
  TestCluster c(3);
  stable_leader(c, 1);
  // Node 3 is behind by a term: its reply to the new term's heartbeat must
  // wait for the term (hard state), but not for any entry write.
  Message hb{1, 1, 3, c.raft(3).term() + 5, Heartbeat{.commit = 0, .round = 1}};
  c.raft(3).step(hb, c.now());
  Ready ready;
  c.raft(3).take_ready(ready);
  ASSERT_TRUE(ready.hard_state.has_value());
  EXPECT_EQ(ready.hard_state->term, hb.term);
  bool found = false;
  for (const OutMessage& m : ready.messages) {
    if (m.msg.type() == MessageType::kHeartbeatReply) {
      EXPECT_EQ(m.after, SendAfter::kHardState);
      EXPECT_EQ(std::get<HeartbeatReply>(m.msg.body).round, 1u);
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

TEST(RaftDurability, CommitHintNeverCoversEntriesNotYetDurable) {
  // Pipelined appends (no coalescing): node 2 must learn that x committed
  // while its own write of x is still pending.
  TestCluster c(3, [](Config& cfg) { cfg.append_hold_us = 0; });
  NodeId l = stable_leader(c);
  c.node(2).auto_persist = false;
  Index x = propose_ok(c, l, "x");
  c.settle();  // committed through node 3; node 2 has x only in memory
  propose_ok(c, l, "y");
  c.settle();  // this append tells node 2 that x is committed
  ASSERT_GE(c.raft(2).commit_index(), x);
  ASSERT_LT(c.raft(2).durable_index(), x);
  Ready ready;
  c.raft(2).take_ready(ready);
  EXPECT_LE(ready.commit, c.raft(2).durable_index())
      << "a restart could treat a stale on-disk entry as committed";
  for (const auto& b : c.node(2).batches) {
    if (b.hard_state) EXPECT_LT(b.hard_state->commit, x);
  }
}

TEST(RaftDurability, FreshGroupHasNoPromiseToWaitOut) {
  TestCluster c(3);
  c.elect(1);
  ASSERT_TRUE(c.raft(1).is_leader());
  Index w = propose_ok(c, 1, "w");
  c.settle();
  EXPECT_GE(c.raft(1).commit_index(), w) << "a replica at term 0 never promised anything";
}

// --- replication ----------------------------------------------------------------------

TEST(RaftReplication, ProposalsAreBatchedIntoOneAppendPerFollower) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  size_t before = count_sent(c, l, MessageType::kAppend);
  for (int i = 0; i < 100; ++i)
    propose_ok(c, l, "v" + std::to_string(i));
  c.settle();
  // One append per follower carries all 100 entries.
  EXPECT_EQ(count_sent(c, l, MessageType::kAppend) - before, 2u);
  for (NodeId id : c.ids())
    EXPECT_EQ(c.raft(id).last_index(), c.raft(l).last_index());
  EXPECT_EQ(c.raft(l).commit_index(), c.raft(l).last_index());
}

TEST(RaftReplication, ConflictingSuffixIsRepairedWithFastBacktracking) {
  TestCluster c(3);
  NodeId old = stable_leader(c, 1);
  c.isolate(old);
  for (int i = 0; i < 50; ++i)
    propose_ok(c, old, "lost" + std::to_string(i));
  c.settle();
  c.advance(4s);
  NodeId l = c.leader();
  ASSERT_TRUE(l == 2 || l == 3);
  for (int i = 0; i < 5; ++i)
    propose_ok(c, l, "kept" + std::to_string(i));
  c.advance(100ms);
  size_t rejects_before = 0;
  for (const Message& m : c.node(old).sent) {
    if (auto* r = std::get_if<AppendReply>(&m.body); r && !r->success) ++rejects_before;
  }
  c.heal();
  c.advance(1s);
  size_t rejects = 0;
  for (const Message& m : c.node(old).sent) {
    if (auto* r = std::get_if<AppendReply>(&m.body); r && !r->success) ++rejects;
  }
  EXPECT_LE(rejects - rejects_before, 3u) << "backtracked one entry at a time";
  EXPECT_EQ(c.node(old).disk->log(), c.node(l).disk->log());
  for (const Entry& e : c.node(old).disk->log())
    EXPECT_EQ(e.data.rfind("lost", 0), std::string::npos);
}

// Coalescing (Config::append_hold_us): follower f never acknowledges until
// persisted, so the leader's first append to it stays in flight.
struct SyncingFollower {
  TestCluster& c;
  NodeId l, f;
  size_t before;
  SyncingFollower(TestCluster& cl) : c(cl), l(stable_leader(cl)), f(l == 2 ? 3 : 2) {
    c.node(f).auto_persist = false;
    before = c.appends_with_entries(l, f).size();
  }
  size_t appends() { return c.appends_with_entries(l, f).size() - before; }
};

TEST(RaftReplication, AppendsToAFollowerStillSyncingAreCoalesced) {
  TestCluster c(3);  // the default hold
  SyncingFollower s(c);
  propose_ok(c, s.l, "x");
  c.settle();
  ASSERT_EQ(s.appends(), 1u);
  for (int i = 0; i < 5; ++i) {
    propose_ok(c, s.l, "y" + std::to_string(i));
    c.settle();
  }
  // The other follower acknowledged every round, so all six committed...
  EXPECT_EQ(c.raft(s.l).commit_index(), c.raft(s.l).last_index());
  // ...while f, still syncing x, got no append per round.
  EXPECT_EQ(s.appends(), 1u) << "an append per leader round to a follower still syncing";
  // Its acknowledgement of x sends the five held entries as one append.
  c.persist_all(s.f);
  c.settle();
  EXPECT_EQ(s.appends(), 2u);
  c.persist_all(s.f);
  c.settle();
  EXPECT_EQ(c.raft(s.f).durable_index(), c.raft(s.l).last_index());
}

TEST(RaftReplication, WithoutHoldEveryRoundIsPipelined) {
  TestCluster c(3, [](Config& cfg) { cfg.append_hold_us = 0; });
  SyncingFollower s(c);
  for (int i = 0; i < 6; ++i) {
    propose_ok(c, s.l, "y" + std::to_string(i));
    c.settle();
  }
  EXPECT_EQ(s.appends(), 6u);
}

TEST(RaftReplication, HeldEntriesGoOutOnceTheHoldTimeHasPassed) {
  TestCluster c(3, [](Config& cfg) { cfg.append_hold_us = 3000; });
  SyncingFollower s(c);
  propose_ok(c, s.l, "x");
  c.settle();
  propose_ok(c, s.l, "y");
  c.settle();
  ASSERT_EQ(s.appends(), 1u);
  // The append of x is older than the hold now (advance ticks the nodes):
  // the next round sends y and z without waiting for f any longer.
  c.advance(std::chrono::microseconds(3000));
  propose_ok(c, s.l, "z");
  c.settle();
  EXPECT_EQ(s.appends(), 2u) << "an unanswered append held new entries past append_hold_us";
}

TEST(RaftReplication, LargeBacklogIsPipelinedDespiteTheHold) {
  TestCluster c(3, [](Config& cfg) { cfg.append_hold_bytes = 1000; });
  SyncingFollower s(c);
  propose_ok(c, s.l, "x");
  c.settle();
  // 20 x 100 bytes waiting: past append_hold_bytes, so they go now.
  for (int i = 0; i < 20; ++i)
    propose_ok(c, s.l, std::string(100, 'v'));
  c.settle();
  EXPECT_EQ(s.appends(), 2u);
}

TEST(RaftReplication, LostAppendDoesNotStrandHeldEntries) {
  // The append in flight is lost; entries held behind it still reach the
  // follower (stall detection re-probes, as for a full window).
  TestCluster c(3);
  NodeId l = stable_leader(c);
  NodeId f = l == 2 ? 3 : 2;
  bool dropped = false;
  c.set_drop([&](const Message& m) {
    if (dropped || m.to != f || m.type() != MessageType::kAppend) return false;
    if (std::get<Append>(m.body).entries.empty()) return false;
    dropped = true;
    return true;
  });
  propose_ok(c, l, "x");
  c.settle();
  ASSERT_TRUE(dropped);
  for (int i = 0; i < 5; ++i) {
    propose_ok(c, l, "y" + std::to_string(i));
    c.settle();
  }
  c.advance(2s);
  EXPECT_EQ(c.raft(f).durable_index(), c.raft(l).last_index());
  EXPECT_EQ(c.raft(f).commit_index(), c.raft(l).last_index());
}

TEST(RaftReplication, FlowControlBoundsAppendsInFlight) {
  TestCluster c(3, [](Config& cfg) {
    cfg.inflight_msgs_max = 2;
    cfg.append_entries_max = 1;
  });
  NodeId l = stable_leader(c);
  for (int i = 0; i < 10; ++i)
    propose_ok(c, l, "v");
  Ready ready;
  c.raft(l).take_ready(ready);
  size_t to2 = 0;
  for (const OutMessage& m : ready.messages) {
    if (m.msg.to == 2 && m.msg.type() == MessageType::kAppend) ++to2;
  }
  EXPECT_EQ(to2, 2u) << "more appends in flight than inflight_msgs_max";

  TestCluster b(3, [](Config& cfg) {
    cfg.inflight_bytes_max = 300;
    cfg.append_entries_max = 1;
  });
  l = stable_leader(b);
  for (int i = 0; i < 10; ++i)
    propose_ok(b, l, std::string(100, 'x'));
  b.raft(l).take_ready(ready);
  to2 = 0;
  for (const OutMessage& m : ready.messages) {
    if (m.msg.to == 2 && m.msg.type() == MessageType::kAppend) ++to2;
  }
  EXPECT_EQ(to2, 3u) << "bytes in flight must stop at the first append past 300 bytes";
}

TEST(RaftReplication, CommitOnlyCountsCurrentTermEntries) {
  TestCluster c(3);
  stable_leader(c, 1);
  c.isolate(3);
  c.set_drop([](const Message& m) { return m.type() == MessageType::kAppendReply; });
  Index x = propose_ok(c, 1, "x");
  c.settle();
  ASSERT_EQ(c.raft(2).durable_index(), x);
  ASSERT_LT(c.raft(1).commit_index(), x);
  c.crash(1);
  c.start_node(1);
  // Node 2 leads the next term; nothing it appends is delivered.
  c.set_drop([](const Message& m) { return m.type() == MessageType::kAppend; });
  c.elect(2);
  ASSERT_TRUE(c.raft(2).is_leader());
  c.advance(3s);
  ASSERT_TRUE(c.raft(2).is_leader());
  Index noop = c.raft(2).last_index();
  ASSERT_EQ(noop, x + 1);
  // Node 1 really holds x (from the old term): a quorum (1, 2) has it...
  Message ack{1, 1, 2, c.raft(2).term(), AppendReply{.success = true, .match_index = x}};
  c.raft(2).step(ack, c.now());
  EXPECT_LT(c.raft(2).commit_index(), x) << "committed an old-term entry by counting replicas";
  // ...and it commits only with an entry of the current term.
  ack.body = AppendReply{.success = true, .match_index = noop};
  c.raft(2).step(ack, c.now());
  EXPECT_EQ(c.raft(2).commit_index(), noop);
}

TEST(RaftReplication, RestartedFollowerCatchesUpFromStorageAfterCacheTrim) {
  TestCluster c(3, [](Config& cfg) { cfg.log_cache_bytes_max = 1000; });
  NodeId l = stable_leader(c);
  c.crash(3);
  for (int i = 0; i < 200; ++i) {
    propose_ok(c, l, std::string(50, 'a' + i % 26));
    if (i % 20 == 0) c.settle();
  }
  c.advance(200ms);
  c.start_node(3);
  c.advance(3s);
  EXPECT_EQ(c.node(3).disk->log(), c.node(l).disk->log());
  EXPECT_EQ(c.raft(3).commit_index(), c.raft(l).commit_index());
}

TEST(RaftReplication, HeartbeatCommitIsClampedToFollowerMatch) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.set_drop([](const Message& m) { return m.to == 3 && m.type() == MessageType::kAppend; });
  for (int i = 0; i < 5; ++i)
    propose_ok(c, l, "v");
  c.settle();
  ASSERT_GT(c.raft(l).commit_index(), c.raft(3).last_index());
  c.node(l).sent.clear();
  c.advance(160ms);
  bool saw = false;
  for (const Message& m : c.node(l).sent) {
    if (m.to == 3 && m.type() == MessageType::kHeartbeat) {
      EXPECT_LE(std::get<Heartbeat>(m.body).commit, c.raft(3).last_index());
      saw = true;
    }
  }
  EXPECT_TRUE(saw);
}

TEST(RaftReplication, SlowFollowerSyncDoesNotResetThePipeline) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(3);
  c.node(2).auto_persist = false;
  propose_ok(c, l, "x");
  c.settle();
  c.advance(160ms);  // one heartbeat round overtakes the append ack
  c.persist_all(2);
  c.settle();
  size_t appends_of_x = 0;
  for (const Append* a : c.appends_with_entries(l, 2))
    appends_of_x += a->entries.back().data == "x";
  EXPECT_EQ(appends_of_x, 1u) << "an fsync slower than a heartbeat caused a resend";
}

TEST(RaftReplication, LostAppendIsRetransmitted) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(3);
  bool dropped = false;
  c.set_drop([&](const Message& m) {
    if (!dropped && m.to == 2 && m.type() == MessageType::kAppend) return dropped = true;
    return false;
  });
  Index x = propose_ok(c, l, "x");
  c.settle();
  ASSERT_TRUE(dropped);
  EXPECT_LT(c.raft(l).commit_index(), x);
  c.advance(600ms);
  EXPECT_GE(c.raft(l).commit_index(), x);
}

TEST(RaftReplication, UnreadableStorageStallsApplyWithoutCrashingOrSpinning) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.crash(3);
  for (int i = 0; i < 10; ++i)
    propose_ok(c, l, "v" + std::to_string(i));
  c.advance(100ms);
  c.start_node(3);  // its log is on "disk" only; reading it fails
  c.node(3).disk->set_fail_reads(true);
  c.advance(1s);  // must neither crash nor spin on has_ready()
  // Replaying the committed log to the state machine needs the disk.
  EXPECT_TRUE(c.node(3).applied.empty());
  c.node(3).disk->set_fail_reads(false);
  c.advance(1s);
  EXPECT_EQ(c.node(3).disk->log(), c.node(l).disk->log());
  EXPECT_EQ(c.node(3).applied.size(), c.raft(l).commit_index());
}

// --- leases ----------------------------------------------------------------------------

TEST(RaftLease, LeaseReadIsServedWithoutRoundTrip) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  ASSERT_TRUE(c.raft(l).lease_valid(c.now()));
  size_t rounds = count_sent(c, l, MessageType::kHeartbeat);
  ASSERT_TRUE(c.raft(l).read(ReadMode::kLease, 1, c.now()).ok());
  c.settle();
  const ReadResult* r = find_read(c, l, 1);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->granted());
  EXPECT_TRUE(r->via_lease);
  EXPECT_EQ(r->index, c.raft(l).commit_index());
  EXPECT_EQ(count_sent(c, l, MessageType::kHeartbeat), rounds);
}

// The old leader keeps believing it leads (no check-quorum) while the others
// elect a new leader and commit: its lease must have ended before the new
// leader's first commit, and it must not serve a lease read after.
void run_stale_leader_scenario(bool unsafe_skip_clock_check, bool* stale_read_granted) {
  TestCluster c(3, [&](Config& cfg) {
    cfg.check_quorum = false;
    cfg.unsafe_lease_read_skips_clock_check_for_testing = unsafe_skip_clock_check;
  });
  NodeId old = stable_leader(c, 1);
  TimePoint old_lease_until = c.raft(old).status().lease_until;
  c.isolate(old);
  NodeId l = kNoNode;
  for (int i = 0; i < 500 && l == kNoNode; ++i) {
    c.advance(10ms);
    for (NodeId id : {2, 3}) {
      if (c.raft(id).is_leader()) l = id;
    }
  }
  ASSERT_NE(l, kNoNode);
  EXPECT_GE(c.raft(l).status().leader_wait_until, old_lease_until)
      << "new leader may commit while the old lease holds";
  Index w = propose_ok(c, l, "new-write");
  while (c.raft(l).commit_index() < w)
    c.advance(10ms);
  EXPECT_GE(c.now(), old_lease_until);
  ASSERT_TRUE(c.raft(old).is_leader());
  EXPECT_FALSE(c.raft(old).lease_valid(c.now()) && !unsafe_skip_clock_check);
  ASSERT_TRUE(c.raft(old).read(ReadMode::kLease, 99, c.now()).ok());
  c.advance(100ms);
  const ReadResult* r = find_read(c, old, 99);
  *stale_read_granted = r != nullptr && r->granted();
  c.heal();
  c.advance(500ms);
  EXPECT_FALSE(c.raft(old).is_leader());
}

TEST(RaftLease, StaleLeaderCannotServeLeaseRead) {
  bool granted = true;
  run_stale_leader_scenario(false, &granted);
  EXPECT_FALSE(granted) << "a deposed leader served a lease read after a newer write committed";
}

TEST(RaftLease, UnsafeClockSkipKnobReallyBreaksLeaseReads) {
  // The simulator relies on this knob to prove its checkers can fail.
  bool granted = false;
  run_stale_leader_scenario(true, &granted);
  EXPECT_TRUE(granted);
}

TEST(RaftLease, NewLeaderWaitsOutRemainingPromise) {
  TestCluster c(3);
  NodeId old = stable_leader(c, 1);
  TimePoint old_lease_until = c.raft(old).status().lease_until;
  TimePoint crash_at = c.now();
  c.crash(old);
  NodeId l = c.wait_for_leader(2s);
  ASSERT_NE(l, kNoNode);
  EXPECT_LT(c.now() - crash_at, 1500ms) << "elections must stay fast";
  TimePoint wait_until = c.raft(l).status().leader_wait_until;
  EXPECT_GE(wait_until, old_lease_until);
  EXPECT_GE(wait_until, crash_at + 1800ms);
  Index w = propose_ok(c, l, "w");
  ASSERT_TRUE(c.raft(l).read(ReadMode::kLease, 5, c.now()).ok());
  while (c.now() + 10ms < wait_until) {
    c.advance(10ms);
    EXPECT_LT(c.raft(l).commit_index(), w) << "committed before the promise ran out";
    EXPECT_FALSE(c.raft(l).lease_valid(c.now()));
    EXPECT_EQ(find_read(c, l, 5), nullptr);
  }
  c.advance(200ms);
  EXPECT_GE(c.raft(l).commit_index(), w);
  const ReadResult* r = find_read(c, l, 5);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->granted());
  EXPECT_GE(r->index, w - 1);
  // Failover for the defaults: about lease + drift + margin after the crash.
  EXPECT_LT(c.now() - crash_at, 2600ms);
}

TEST(RaftLease, UnsafeSkipWaitKnobCommitsInsideTheOldLease) {
  TestCluster c(3, [](Config& cfg) { cfg.unsafe_skip_new_leader_lease_wait_for_testing = true; });
  NodeId old = stable_leader(c, 1);
  TimePoint old_lease_until = c.raft(old).status().lease_until;
  c.crash(old);
  NodeId l = c.wait_for_leader(2s);
  ASSERT_NE(l, kNoNode);
  Index w = propose_ok(c, l, "w");
  c.advance(50ms);
  EXPECT_GE(c.raft(l).commit_index(), w);
  EXPECT_LT(c.now(), old_lease_until) << "the knob must really break the wait";
}

TEST(RaftLease, RestartedVoterStartsWithFullPromise) {
  TestCluster c(3);
  NodeId l = stable_leader(c, 1);
  c.crash(3);
  c.advance(5s);
  TimePoint restart = c.now();
  c.start_node(3);
  c.node(3).sent.clear();
  Duration w = c.raft(3).config().promise_window();
  EXPECT_EQ(c.raft(3).status().promise_until, restart + w);
  // Node 3 hears nothing from the leader, which then dies; node 2 campaigns
  // and node 3's vote must carry the promise it assumed at restart.
  c.set_drop([](const Message& m) { return m.to == 3 && m.from == 1; });
  c.crash(l);
  c.advance(50ms);
  c.set_drop(nullptr);
  c.raft(2).campaign(c.now());
  c.settle();
  bool saw = false;
  for (const Message& m : c.node(3).sent) {
    if (auto* v = std::get_if<VoteReply>(&m.body); v && !v->pre_vote && v->granted) {
      EXPECT_GE(v->promise_remaining_ns, (restart + w - c.now()).count());
      saw = true;
    }
  }
  EXPECT_TRUE(saw);
  ASSERT_TRUE(c.raft(2).is_leader());
  EXPECT_GE(c.raft(2).status().leader_wait_until, restart + w);
}

// Clocks at the drift bound, in the worst direction: the old leader's clock
// slow (its lease lasts longest in real time), the others fast (their
// promises and the new leader's wait are shortest in real time). Returns how
// much later (real time) the new leader may first commit than the old lease
// ends; negative means overlap.
Duration drift_slack(uint32_t configured_ppm, int64_t actual_ppm) {
  TestCluster c(3, [&](Config& cfg) {
    cfg.check_quorum = false;
    cfg.lease_margin_ms = 0;  // nothing but the drift widening protects the lease
    cfg.max_clock_drift_ppm = configured_ppm;
  });
  c.set_drift_ppm(1, -actual_ppm);
  c.set_drift_ppm(2, actual_ppm);
  c.set_drift_ppm(3, actual_ppm);
  c.elect(1);
  c.advance(3s);
  EXPECT_TRUE(c.raft(1).is_leader());
  TimePoint lease_end = c.real_time_of(1, c.raft(1).status().lease_until);
  c.isolate(1);
  NodeId l = kNoNode;
  for (int i = 0; i < 300 && l == kNoNode; ++i) {
    c.advance(10ms);
    for (NodeId id : {NodeId{2}, NodeId{3}}) {
      if (c.raft(id).is_leader()) l = id;
    }
  }
  EXPECT_NE(l, kNoNode);
  if (l == kNoNode) return Duration(0);
  TimePoint first_commit = c.real_time_of(l, c.raft(l).status().leader_wait_until);
  return first_commit - lease_end;
}

TEST(RaftLease, NewLeaderWaitCoversOldLeaseAtMaximumDrift) {
  Duration slack = drift_slack(1000, 1000);
  EXPECT_GE(slack, Duration(-1000)) << "overlap of " << -slack.count() << " ns";  // 1 us rounding
}

TEST(RaftLease, IgnoringDriftWouldLetLeasesOverlap) {
  // The same clocks with a core told there is no drift: the check above must
  // be able to fail.
  EXPECT_LT(drift_slack(0, 1000), Duration(0));
}

TEST(RaftLease, TransferEndsLeaseBeforeTimeoutNow) {
  TestCluster c(3);
  NodeId l = stable_leader(c, 1);
  ASSERT_TRUE(c.raft(l).lease_valid(c.now()));
  ASSERT_TRUE(c.raft(l).transfer_leadership(2, c.now()).ok());
  // The target is caught up, so TimeoutNow is already queued: the lease must
  // already be over.
  Ready ready;
  c.raft(l).take_ready(ready);
  bool timeout_now = false;
  for (const OutMessage& m : ready.messages)
    timeout_now |= m.msg.type() == MessageType::kTimeoutNow;
  ASSERT_TRUE(timeout_now);
  EXPECT_FALSE(c.raft(l).lease_valid(c.now()));
  ASSERT_TRUE(c.raft(l).read(ReadMode::kLease, 3, c.now()).ok());
  for (OutMessage& m : ready.messages)
    c.wire().push_back(std::move(m.msg));
  c.settle();
  ASSERT_TRUE(c.raft(2).is_leader());
  const ReadResult* r = find_read(c, l, 3);
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(r->granted()) << "old leader served a lease read after TimeoutNow";
  // Planned handover: no lease wait, the new leader commits at once.
  Index w = propose_ok(c, 2, "w");
  c.settle();
  EXPECT_GE(c.raft(2).commit_index(), w);
}

TEST(RaftLease, TransferHandsOverUnfinishedWait) {
  TestCluster c(3);
  NodeId old = stable_leader(c, 1);
  c.crash(old);
  NodeId l = c.wait_for_leader(2s);
  ASSERT_NE(l, kNoNode);
  TimePoint wait_until = c.raft(l).status().leader_wait_until;
  ASSERT_GT(wait_until, c.now() + 500ms);
  NodeId target = l == 2 ? 3 : 2;
  c.advance(50ms);
  ASSERT_TRUE(c.raft(l).transfer_leadership(target, c.now()).ok());
  c.settle();
  ASSERT_TRUE(c.raft(target).is_leader());
  EXPECT_GE(c.raft(target).status().leader_wait_until, wait_until);
}

// --- read-index and stale reads ------------------------------------------------------------

TEST(RaftRead, ReadIndexBatchesReadsThatArriveDuringARound) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  size_t hb = count_sent(c, l, MessageType::kHeartbeat);
  ASSERT_TRUE(c.raft(l).read(ReadMode::kReadIndex, 1, c.now()).ok());
  // Reads arriving after round 1 was sent cannot use it; they share the next.
  for (uint64_t id = 2; id <= 11; ++id) {
    ASSERT_TRUE(c.raft(l).read(ReadMode::kReadIndex, id, c.now()).ok());
  }
  c.settle();
  for (uint64_t id = 1; id <= 11; ++id) {
    const ReadResult* r = find_read(c, l, id);
    ASSERT_NE(r, nullptr) << id;
    EXPECT_TRUE(r->granted());
    EXPECT_FALSE(r->via_lease);
  }
  EXPECT_EQ(count_sent(c, l, MessageType::kHeartbeat) - hb, 4u) << "expected exactly two rounds";
}

TEST(RaftRead, ReadIndexIgnoresARoundSentBeforeTheReadArrived) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.set_now(c.now() + 200ms);
  Ready before, after, out;
  c.raft(l).tick(c.now());  // a heartbeat round leaves...
  c.raft(l).take_ready(before);
  ASSERT_TRUE(c.raft(l).read(ReadMode::kReadIndex, 7, c.now()).ok());  // ...then the read arrives
  c.raft(l).take_ready(after);
  auto deliver = [&](Ready& from) {
    for (OutMessage& m : from.messages) {
      if (m.msg.type() != MessageType::kHeartbeat) continue;
      NodeId f = m.msg.to;
      c.raft(f).step(m.msg, c.now());
      Ready fr;
      c.raft(f).take_ready(fr);
      for (OutMessage& reply : fr.messages)
        c.raft(l).step(reply.msg, c.now());
    }
    c.raft(l).take_ready(out);
    for (const ReadResult& r : out.reads) {
      if (r.request_id == 7) return r.granted();
    }
    return false;
  };
  EXPECT_FALSE(deliver(before)) << "confirmed by a round sent before the read arrived";
  EXPECT_TRUE(deliver(after));
}

TEST(RaftRead, ReadIndexWaitsForCurrentTermCommit) {
  TestCluster c(3);
  NodeId old = stable_leader(c, 1);
  c.crash(old);
  NodeId l = c.wait_for_leader(2s);
  ASSERT_NE(l, kNoNode);
  Index term_start = c.raft(l).last_index();
  ASSERT_LT(c.raft(l).commit_index(), term_start);
  ASSERT_TRUE(c.raft(l).read(ReadMode::kReadIndex, 1, c.now()).ok());
  c.settle();
  EXPECT_EQ(find_read(c, l, 1), nullptr) << "read answered before the term's no-op committed";
  c.advance(2500ms);
  const ReadResult* r = find_read(c, l, 1);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->granted());
  EXPECT_GE(r->index, term_start);
}

TEST(RaftRead, ReadWaitsForStateMachineToApplyReadIndex) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.node(l).auto_apply = false;
  Index w = propose_ok(c, l, "w");
  c.settle();
  ASSERT_GE(c.raft(l).commit_index(), w);
  ASSERT_TRUE(c.raft(l).read(ReadMode::kLease, 1, c.now()).ok());
  c.settle();
  EXPECT_EQ(find_read(c, l, 1), nullptr) << "read granted before the write it must see was applied";
  c.apply_all(l);
  c.settle();
  const ReadResult* r = find_read(c, l, 1);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->granted());
  EXPECT_GE(r->index, w);
}

TEST(RaftRead, StaleReadIsServedAnywhereWithNoGuarantee) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(3);
  propose_ok(c, l, "w");
  c.advance(100ms);
  ASSERT_TRUE(c.raft(3).read(ReadMode::kStaleNoGuarantee, 1, c.now()).ok());
  c.settle();
  const ReadResult* r = find_read(c, 3, 1);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->granted());
  EXPECT_EQ(r->index, c.raft(3).applied_index());
  EXPECT_LT(r->index, c.raft(l).commit_index()) << "the isolated replica is behind, as allowed";
}

TEST(RaftRead, LinearizableReadOnFollowerIsRejectedWithLeaderHint) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  auto st = c.raft(2).read(ReadMode::kLease, 1, c.now());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kNotLeader);
  EXPECT_EQ(st.error().hint(), l);
}

TEST(RaftRead, PendingReadsFailWhenLeadershipIsLost) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(l);
  ASSERT_TRUE(c.raft(l).read(ReadMode::kReadIndex, 1, c.now()).ok());
  c.advance(800ms);
  const ReadResult* r = find_read(c, l, 1);
  ASSERT_NE(r, nullptr);
  ASSERT_FALSE(r->granted());
  EXPECT_EQ(r->error->kind(), base::ErrorKind::kNotLeader);
}

// --- leadership transfer -------------------------------------------------------------------

TEST(RaftTransfer, TransferCatchesUpTargetThenHandsOver) {
  TestCluster c(3);
  NodeId l = stable_leader(c, 1);
  c.set_drop([](const Message& m) { return m.to == 3 && m.type() == MessageType::kAppend; });
  for (int i = 0; i < 20; ++i)
    propose_ok(c, l, "v");
  c.settle();
  ASSERT_LT(c.raft(3).last_index(), c.raft(l).last_index());
  c.set_drop(nullptr);
  ASSERT_TRUE(c.raft(l).transfer_leadership(3, c.now()).ok());
  auto busy = c.raft(l).propose("during", 1, c.now(), kFar);
  if (!c.raft(3).is_leader()) {
    ASSERT_FALSE(busy.ok());
    EXPECT_EQ(busy.error().kind(), base::ErrorKind::kBusy);
  }
  c.settle();
  c.advance(200ms);
  ASSERT_TRUE(c.raft(3).is_leader());
  EXPECT_FALSE(c.raft(l).is_leader());
  Index w = propose_ok(c, 3, "w");
  c.settle();
  EXPECT_GE(c.raft(3).commit_index(), w);
}

TEST(RaftTransfer, DuplicateTimeoutNowStartsNoSecondElection) {
  TestCluster c(3);
  NodeId l = stable_leader(c, 1);
  ASSERT_TRUE(c.raft(l).transfer_leadership(2, c.now()).ok());
  c.settle();
  ASSERT_TRUE(c.raft(2).is_leader());
  Term term = c.raft(2).term();
  Message dup;
  for (const Message& m : c.node(l).sent) {
    if (m.type() == MessageType::kTimeoutNow) dup = m;
  }
  ASSERT_EQ(dup.type(), MessageType::kTimeoutNow);
  c.raft(2).step(dup, c.now());
  c.raft(3).step(Message{1, 1, 3, dup.term, dup.body}, c.now());
  c.settle();
  EXPECT_TRUE(c.raft(2).is_leader());
  EXPECT_EQ(c.raft(2).term(), term);
  EXPECT_EQ(c.raft(3).role(), Role::kFollower);
}

// --- proposal errors and backpressure ---------------------------------------------------------

TEST(RaftPropose, FollowerRejectsWithLeaderHint) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  auto r = c.raft(2).propose("x", 1, c.now(), kFar);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kNotLeader);
  EXPECT_EQ(r.error().hint(), l);
  EXPECT_FALSE(r.error().may_have_taken_effect());
}

TEST(RaftPropose, UncommittedBytesBoundGivesBusyBeforeAppend) {
  TestCluster c(3, [](Config& cfg) { cfg.uncommitted_bytes_max = 1000; });
  NodeId l = stable_leader(c);
  c.isolate(2);
  c.isolate(3);
  Index last = c.raft(l).last_index();
  int accepted = 0;
  for (; accepted < 100; ++accepted) {
    auto r = c.raft(l).propose(std::string(100, 'x'), accepted, c.now(), kFar);
    if (!r.ok()) {
      EXPECT_EQ(r.error().kind(), base::ErrorKind::kBusy);
      EXPECT_FALSE(r.error().may_have_taken_effect());
      break;
    }
  }
  EXPECT_EQ(accepted, 8);  // 8 x 124 bytes fit in 1000
  EXPECT_EQ(c.raft(l).last_index(), last + accepted) << "a rejected proposal was appended";
}

TEST(RaftPropose, DeadlinePassedBeforeProposeIsTimedOut) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  auto r = c.raft(l).propose("x", 1, c.now(), c.now());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kTimedOut);
}

TEST(RaftPropose, DeadlinePassedAfterAppendIsOutcomeUnknown) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(2);
  c.isolate(3);
  auto r = c.raft(l).propose("x", 5, c.now(), c.now() + 100ms);
  ASSERT_TRUE(r.ok());
  c.advance(200ms);
  ASSERT_EQ(c.node(l).proposals.size(), 1u);
  const ProposalResult& p = c.node(l).proposals[0];
  EXPECT_EQ(p.proposal_id, 5u);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error->kind(), base::ErrorKind::kOutcomeUnknown);
}

TEST(RaftPropose, LeaderWithoutQuorumFailsFast) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(l);
  // The clock moves past the check-quorum window before the next tick.
  c.set_now(c.now() + 700ms);
  auto r = c.raft(l).propose("x", 1, c.now(), kFar);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kNoQuorum);
}

TEST(RaftPropose, StepDownTurnsPendingProposalsIntoOutcomeUnknown) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.isolate(l);
  Index x = propose_ok(c, l, "x", 9);
  c.advance(800ms);
  ASSERT_FALSE(c.raft(l).is_leader());
  ASSERT_EQ(c.node(l).proposals.size(), 1u);
  EXPECT_EQ(c.node(l).proposals[0].index, x);
  EXPECT_EQ(c.node(l).proposals[0].error->kind(), base::ErrorKind::kOutcomeUnknown);
}

}  // namespace
}  // namespace nori::raft
