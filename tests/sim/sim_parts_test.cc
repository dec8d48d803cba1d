// Tests of the simulator's parts: the disk model, clocks, randomness, the KV
// command encoding, the clients' routing, and every safety checker on hand-made violations (a
// checker that cannot fail is not a checker).
#include <gtest/gtest.h>

#include <optional>
#include <set>

#include "tests/sim/checkers.h"
#include "tests/sim/client_router.h"
#include "tests/sim/clock.h"
#include "tests/sim/kv.h"
#include "tests/sim/rng.h"
#include "tests/sim/scheduler.h"
#include "tests/sim/storage.h"

namespace nori::sim {
namespace {

raft::Entry entry(raft::Index i, raft::Term t, std::string data = "x") {
  return raft::Entry{t, i, raft::EntryType::kNormal, std::move(data)};
}

TEST(SimStorage, CrashLosesWritesNotYetDurable) {
  SimStorage s;
  s.write_hard_state({1, 1, 0});
  s.write_entries(std::nullopt, {entry(1, 1), entry(2, 1)});
  EXPECT_EQ(s.complete_hard_state(), (raft::HardState{1, 1, 0}));
  auto [idx, term] = s.complete_entries();
  EXPECT_EQ(idx, 2u);
  EXPECT_EQ(term, 1u);
  s.write_hard_state({2, 3, 0});
  s.write_entries(std::nullopt, {entry(3, 2)});
  EXPECT_EQ(s.written_log().size(), 3u);
  EXPECT_EQ(s.crash(), 2u);
  EXPECT_EQ(s.hard_state(), (raft::HardState{1, 1, 0}));
  EXPECT_EQ(s.last_index(), 2u);
  EXPECT_EQ(s.written_log().size(), 2u);
  EXPECT_EQ(s.durable_entries_seq(), s.issued_entries_seq());
}

TEST(SimStorage, HardStateMayOvertakeQueuedEntries) {
  SimStorage s;
  s.write_entries(std::nullopt, {entry(1, 1)});
  s.write_hard_state({5, 2, 0});
  s.complete_hard_state();
  EXPECT_EQ(s.durable_hard_state_seq(), 1u);
  EXPECT_EQ(s.durable_entries_seq(), 0u);
  EXPECT_EQ(s.last_index(), 0u);  // the entry is not durable yet
  s.crash();
  EXPECT_EQ(s.hard_state().term, 5u);
  EXPECT_EQ(s.last_index(), 0u);
}

TEST(SimStorage, TruncationTakesEffectWhenDurable) {
  SimStorage s;
  s.write_entries(std::nullopt, {entry(1, 1), entry(2, 1), entry(3, 1)});
  s.complete_entries();
  s.write_entries(2, {entry(2, 2, "y")});
  EXPECT_EQ(s.written_log().size(), 2u);
  EXPECT_EQ(s.last_index(), 3u);  // durable view unchanged until completion
  s.complete_entries();
  EXPECT_EQ(s.last_index(), 2u);
  EXPECT_EQ(*s.term(2), 2u);
  std::vector<raft::Entry> out;
  ASSERT_TRUE(s.entries(1, 3, 1 << 20, out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].data, "y");
  EXPECT_FALSE(s.term(3).ok());
  EXPECT_FALSE(s.entries(2, 5, 1 << 20, out).ok());
}

TEST(SimStorage, EntriesStopAtTheByteBoundButReturnOne) {
  SimStorage s;
  s.write_entries(std::nullopt, {entry(1, 1, std::string(100, 'a')), entry(2, 1)});
  s.complete_entries();
  std::vector<raft::Entry> out;
  ASSERT_TRUE(s.entries(1, 3, 10, out).ok());
  EXPECT_EQ(out.size(), 1u);
}

TEST(SimClock, DriftChangesKeepTheClockContinuousAndMonotonic) {
  SimClock c(-200 * kMillisecond, 900);
  base::TimePoint prev = c.local(0);
  for (SimTime t = 0; t < 10 * kSecond; t += 7 * kMillisecond) {
    if (t % (1000 * kMillisecond) < 7 * kMillisecond)
      c.set_drift(t, (t / kSecond) % 2 ? -900 : 900);
    base::TimePoint now = c.local(t);
    EXPECT_GE(now, prev);
    prev = now;
  }
  // Over 10 s at |drift| <= 900 ppm, the local clock advanced 10 s +- 9 ms.
  const int64_t advanced = base::to_ns(c.local(10 * kSecond)) - base::to_ns(c.local(0)) + 0;
  EXPECT_NEAR(static_cast<double>(advanced), 10.0 * kSecond, 9.0 * kMillisecond);
}

TEST(SimClock, RealAtInvertsLocal) {
  SimClock c(150 * kMillisecond, -700);
  c.set_drift(3 * kSecond, 650);
  for (SimTime t = 3 * kSecond; t < 6 * kSecond; t += 333'333'333) {
    base::TimePoint target = c.local(t);
    SimTime back = c.real_at(target, 3 * kSecond);
    EXPECT_GE(c.local(back), target);
    EXPECT_LE(back, t);
    EXPECT_LT(c.local(back - 1), target);
  }
}

TEST(Rng, SameSeedSameStreamDifferentSeedDifferentStream) {
  Rng a(7), b(7), c(8);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
  }
  EXPECT_TRUE(differs);
  for (int i = 0; i < 1000; ++i) {
    int64_t v = a.uniform(-3, 3);
    EXPECT_GE(v, -3);
    EXPECT_LE(v, 3);
  }
}

TEST(Scheduler, SameInstantEventsRunInScheduleOrder) {
  Scheduler s;
  std::string order;
  s.at(10, [&] { order += 'a'; });
  s.at(5, [&] { order += 'b'; });
  s.at(10, [&] { order += 'c'; });
  s.at(10, [&] { s.after(0, [&] { order += 'd'; }); });
  EXPECT_FALSE(s.run_until(100));
  EXPECT_EQ(order, "bacd");
  EXPECT_EQ(s.now(), 100);
}

TEST(KvCommand, RoundTripsAndRejectsGarbage) {
  KvCommand c{KvOp::kAppend, 3, 99, "key", std::string("v\0l", 3)};
  auto back = decode_command(encode(c));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->op, KvOp::kAppend);
  EXPECT_EQ(back->client, 3u);
  EXPECT_EQ(back->seq, 99u);
  EXPECT_EQ(back->key, "key");
  EXPECT_EQ(back->value, c.value);
  std::string enc = encode(c);
  EXPECT_FALSE(decode_command(enc.substr(0, enc.size() - 1)).ok());
  EXPECT_FALSE(decode_command(enc + "z").ok());
  EXPECT_FALSE(decode_command("").ok());
  KvStore kv;
  kv.apply(c);
  kv.apply(c);
  EXPECT_EQ(kv.get("key").size(), 6u);
  EXPECT_EQ(kv.get("missing"), "");
}

// --- the checkers must be able to fail --------------------------------------

TEST(SafetyChecker, TwoLeadersInOneTermAreCaught) {
  SafetyChecker c;
  c.on_leader(1, 5, 2, 0);
  c.on_leader(1, 5, 2, 10);
  c.on_leader(2, 5, 3, 10);  // another group: fine
  EXPECT_EQ(c.violation_count(), 0u);
  c.on_leader(1, 5, 3, 20);
  EXPECT_EQ(c.violation_count(), 1u);
  EXPECT_NE(c.violations()[0].find("two leaders"), std::string::npos);
}

TEST(SafetyChecker, DivergentAppliedEntriesAreCaught) {
  SafetyChecker c;
  c.on_apply(1, 1, entry(1, 1, "a"), 0, 0);
  c.on_apply(1, 2, entry(1, 1, "a"), 0, 0);
  c.on_apply(1, 1, entry(2, 1, "b"), 0, 0);
  EXPECT_EQ(c.violation_count(), 0u);
  c.on_apply(1, 2, entry(2, 1, "c"), 0, 0);
  EXPECT_EQ(c.violation_count(), 1u);
  // After a restart a replica replays from 1: fine; skipping ahead is not.
  c.on_restart(1, 1);
  c.on_apply(1, 1, entry(1, 1, "a"), 0, 0);
  EXPECT_EQ(c.violation_count(), 1u);
  c.on_apply(1, 1, entry(3, 1, "d"), 0, 0);
  EXPECT_EQ(c.violation_count(), 2u);
}

raft::SnapshotMeta snap(raft::Index i, raft::Term t) {
  return raft::SnapshotMeta{i, t, raft::Membership{.voters = {1, 2, 3}}};
}

TEST(SimStorage, CompactionDropsThePrefixWhenDurable) {
  SimStorage s;
  s.write_entries(std::nullopt, {entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)});
  s.complete_entries();
  s.put_file(SnapshotFile{snap(3, 2), "state", 1});
  s.set_taken_snapshot(snap(3, 2));
  EXPECT_EQ(s.snapshot_meta().index, 3u);
  s.write_compaction(3);
  EXPECT_EQ(s.written_log().front().index, 3u);  // the core reads none of it any more
  EXPECT_EQ(s.first_index(), 1u);                // durable only once the record is
  s.complete_entries();
  EXPECT_EQ(s.first_index(), 3u);
  EXPECT_EQ(*s.term(2), 1u);  // term(first_index() - 1) still answers
  EXPECT_FALSE(s.term(1).ok());
  std::vector<raft::Entry> out;
  EXPECT_FALSE(s.entries(2, 4, 1 << 20, out).ok());
  EXPECT_TRUE(s.entries(3, 5, 1 << 20, out).ok());
  EXPECT_EQ(out.size(), 2u);
}

TEST(SimStorage, ResetKeepsTheSuffixOnlyIfItMatchesTheSnapshot) {
  SimStorage keep;
  keep.write_entries(std::nullopt, {entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)});
  keep.complete_entries();
  keep.write_reset(snap(2, 1));
  keep.complete_entries();
  EXPECT_EQ(keep.snapshot_meta().index, 2u);
  EXPECT_EQ(keep.first_index(), 3u);
  EXPECT_EQ(keep.last_index(), 4u);

  SimStorage drop;
  drop.write_entries(std::nullopt, {entry(1, 1), entry(2, 1), entry(3, 1)});
  drop.complete_entries();
  drop.write_reset(snap(3, 2));  // entry 3 has another term: everything goes
  auto [idx, term] = drop.complete_entries();
  EXPECT_EQ(idx, 3u);
  EXPECT_EQ(term, 2u);
  EXPECT_EQ(drop.first_index(), 4u);
  EXPECT_EQ(drop.last_index(), 3u);
  // Appends queued behind the reset at or below its index are covered by
  // the snapshot; the rest continue it.
  drop.write_entries(2, {entry(2, 2), entry(3, 2), entry(4, 2)});
  drop.complete_entries();
  EXPECT_EQ(drop.first_index(), 4u);
  EXPECT_EQ(drop.last_index(), 4u);
}

TEST(SimStorage, CrashBeforeTheResetRecordIsDurableKeepsTheOldLog) {
  SimStorage s;
  s.write_entries(std::nullopt, {entry(1, 1), entry(2, 1)});
  s.complete_entries();
  s.put_file(SnapshotFile{snap(9, 3), "new", 2});  // install step 1
  s.write_reset(snap(9, 3));                       // step 2, in flight
  EXPECT_EQ(s.written_snapshot().index, 9u);
  EXPECT_EQ(s.crash(), 1u);
  EXPECT_EQ(s.snapshot_meta().index, 0u);  // old state: the log as it was
  EXPECT_EQ(s.last_index(), 2u);
  ASSERT_NE(s.file(9), nullptr);  // the file survives (removed as superseded later)
  s.remove_superseded_files({});
  EXPECT_NE(s.file(9), nullptr);  // not superseded: newer than the durable snapshot
}

TEST(KvStore, SnapshotStateRoundTrips) {
  KvStore kv;
  kv.apply(KvCommand{KvOp::kPut, 1, 1, "a", "x"});
  kv.apply(KvCommand{KvOp::kAppend, 1, 2, "b", "y;"});
  auto back = KvStore::decode_state(kv.encode_state());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, kv);
  std::string bad = kv.encode_state();
  bad.pop_back();
  EXPECT_FALSE(KvStore::decode_state(bad).ok());
}

TEST(SafetyChecker, RestoredStateThatDiffersFromTheCommittedLogIsCaught) {
  SafetyChecker c;
  auto put = [](raft::Index i, std::string key, std::string value) {
    return raft::Entry{1, i, raft::EntryType::kNormal,
                       encode(KvCommand{KvOp::kPut, 7, i, std::move(key), std::move(value)})};
  };
  c.on_apply(1, 1, put(1, "k", "v1"), 1, 0);
  c.on_apply(1, 1, put(2, "k", "v2"), 1, 0);
  c.on_apply(1, 1, put(3, "j", "w"), 1, 0);
  KvStore at2;
  at2.apply(KvCommand{KvOp::kPut, 7, 1, "k", "v2"});
  c.on_restore(1, 2, 2, at2, "install", 0);
  EXPECT_EQ(c.violation_count(), 0u);
  c.on_apply(1, 2, put(3, "j", "w"), 0, 0);  // applies on from the snapshot
  EXPECT_EQ(c.violation_count(), 0u);
  // A mix: the state at 1 restored under index 2.
  KvStore at1;
  at1.apply(KvCommand{KvOp::kPut, 7, 1, "k", "v1"});
  c.on_restore(1, 3, 2, at1, "restart recovery", 0);
  EXPECT_EQ(c.violation_count(), 1u);
  EXPECT_NE(c.violations()[0].find("state machine contents"), std::string::npos);
  // A state at an index nobody applied.
  c.check_state(1, 3, 9, at1, "end of run", 0);
  EXPECT_EQ(c.violation_count(), 2u);
}

TEST(SafetyChecker, CompactedLogsAreComparedWhereTheyOverlap) {
  SafetyChecker c;
  std::vector<raft::Entry> a = {entry(5, 1, "p"), entry(6, 2), entry(7, 2)};
  std::vector<raft::Entry> b = {entry(6, 2), entry(7, 3)};
  std::vector<raft::Entry> bad = {entry(6, 2, "q"), entry(7, 2)};
  c.check_log_matching(1, {{1, &a}, {2, &b}}, "durable", 0);
  EXPECT_EQ(c.violation_count(), 0u);
  c.check_log_matching(1, {{1, &a}, {3, &bad}}, "durable", 0);
  EXPECT_EQ(c.violation_count(), 1u);
}

TEST(SafetyChecker, LeaderWhoseSnapshotDoesNotCoverACommittedEntryIsCaught) {
  SafetyChecker c;
  c.on_apply(1, 1, entry(1, 1, "a"), 1, 0);
  c.on_apply(1, 1, entry(2, 1, "b"), 1, 0);
  c.on_apply(1, 1, entry(3, 1, "c"), 1, 0);
  std::vector<raft::Entry> after = {entry(3, 1, "c")};
  c.check_leader_completeness(1, 2, 2, after, 0, /*snap_index=*/2, /*snap_term=*/1);
  EXPECT_EQ(c.violation_count(), 0u);
  std::vector<raft::Entry> none;
  c.check_leader_completeness(1, 2, 2, none, 0, 3, 1);  // all in the snapshot
  EXPECT_EQ(c.violation_count(), 0u);
  c.check_leader_completeness(1, 3, 2, none, 0, 3, 2);  // wrong term at the snapshot
  EXPECT_EQ(c.violation_count(), 1u);
  std::vector<raft::Entry> gap = {entry(3, 1, "c")};
  c.check_leader_completeness(1, 3, 2, gap, 0, 1, 1);  // entry 2 neither logged nor covered
  EXPECT_EQ(c.violation_count(), 2u);
}

TEST(SafetyChecker, LogMatchingViolationIsCaught) {
  SafetyChecker c;
  std::vector<raft::Entry> a = {entry(1, 1), entry(2, 1, "p"), entry(3, 2)};
  std::vector<raft::Entry> b = {entry(1, 1), entry(2, 1, "p"), entry(3, 3)};
  std::vector<raft::Entry> bad = {entry(1, 1), entry(2, 1, "q"), entry(3, 2)};
  c.check_log_matching(1, {{1, &a}, {2, &b}}, "written", 0);
  EXPECT_EQ(c.violation_count(), 0u);  // a conflicting tail is allowed
  c.check_log_matching(1, {{1, &a}, {3, &bad}}, "written", 0);
  EXPECT_EQ(c.violation_count(), 1u);  // same term at 3, different at 2
}

TEST(SafetyChecker, LeaderMissingACommittedEntryIsCaught) {
  SafetyChecker c;
  c.on_apply(1, 1, entry(1, 1, "a"), /*leader_term=*/1, 0);  // committed in term 1
  c.on_apply(1, 1, entry(2, 1, "b"), /*leader_term=*/3, 0);  // committed in term 3
  c.on_apply(1, 2, entry(1, 1, "a"), 0, 0);
  std::vector<raft::Entry> complete = {entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 4)};
  std::vector<raft::Entry> lacking = {entry(1, 1, "a")};
  c.check_leader_completeness(1, 2, 4, complete, 0);
  EXPECT_EQ(c.violation_count(), 0u);
  // A late leader of term 2 (delayed votes) need not hold what term 3
  // committed...
  c.check_leader_completeness(1, 3, 2, lacking, 0);
  EXPECT_EQ(c.violation_count(), 0u);
  // ...but a leader of term 4 must.
  c.check_leader_completeness(1, 3, 4, lacking, 0);
  EXPECT_EQ(c.violation_count(), 1u);
  std::vector<raft::Entry> empty;
  c.check_leader_completeness(1, 3, 2, empty, 0);  // lacks entry 1, committed in term 1
  EXPECT_EQ(c.violation_count(), 2u);
}

TEST(SafetyChecker, OverlappingLeaseReadsOfTwoNodesAreCaught) {
  SafetyChecker ok;
  ok.on_lease_read(1, 1, 3, 100);
  ok.on_lease_read(1, 1, 3, 200);
  ok.on_lease_read(1, 2, 4, 201);
  ok.on_lease_read(2, 3, 4, 150);  // another group
  ok.on_lease_read(1, 1, 5, 300);  // node 1 again, later term
  ok.finish();
  EXPECT_EQ(ok.violation_count(), 0u);

  SafetyChecker bad;
  bad.on_lease_read(1, 1, 3, 100);
  bad.on_lease_read(1, 2, 4, 150);  // node 2 starts while node 1 still grants
  bad.on_lease_read(1, 1, 3, 200);
  bad.finish();
  EXPECT_EQ(bad.violation_count(), 1u);
  EXPECT_NE(bad.violations()[0].find("lease exclusion"), std::string::npos);
}

// --- client routing (client_router.h) ---------------------------------------

using Route = ClientRouter::Route;

TEST(ClientRouter, LeaderThatServedIsKeptAcrossOperationsAndProbeTimeouts) {
  ClientRouter r({1, 2, 3}, 0);
  r.on_reply(2, /*served=*/true, false, 0);
  EXPECT_EQ(r.next(9).node, 2u);
  EXPECT_EQ(r.next(9).route, Route::kLeader);
  // A probe to some other id went unanswered: the leader is not forgotten.
  r.on_silent(7);
  EXPECT_EQ(r.next(9).node, 2u);
  // A stale read served by a follower says nothing about who leads.
  r.on_reply(3, /*served=*/false, false, 0);
  EXPECT_EQ(r.next(9).node, 2u);
}

TEST(ClientRouter, SilentLeaderIsLeftForTheNextMemberNotARandomId) {
  ClientRouter r({1, 2, 3}, 0);
  r.on_view(40, {4, 8}, /*from_leader=*/true);
  r.on_reply(4, true, false, 0);
  r.on_silent(4);  // the leader did not answer in time
  EXPECT_EQ(r.leader(), 0u);
  for (int i = 0; i < 3; ++i) {
    const ClientRouter::Target t = r.next(9);
    EXPECT_EQ(t.route, Route::kMember);
    EXPECT_EQ(t.node, 8u) << "the other member, not the silent leader again";
  }
}

TEST(ClientRouter, NotLeaderHintIsFollowedAndBusyKeepsTheLeader) {
  ClientRouter r({1, 2, 3}, 0);
  r.on_reply(1, false, /*not_leader=*/true, /*hint=*/3);
  EXPECT_EQ(r.next(3).node, 3u);
  // Busy or no quorum from the leader: retry there, it may still lead.
  r.on_reply(3, false, /*not_leader=*/false, 0);
  EXPECT_EQ(r.next(3).node, 3u);
  // The leader itself says it does not lead and names no one: move on.
  r.on_reply(3, false, true, 0);
  EXPECT_EQ(r.leader(), 0u);
  EXPECT_EQ(r.next(3).route, Route::kMember);
  // A node naming itself is no hint.
  r.on_reply(2, false, true, 2);
  EXPECT_EQ(r.leader(), 0u);
  // A refusal from another node without a hint keeps a known leader.
  r.on_reply(1, true, false, 0);
  r.on_reply(3, false, true, 0);
  EXPECT_EQ(r.next(3).node, 1u);
}

TEST(ClientRouter, StaleConfigurationDoesNotReplaceANewerOne) {
  ClientRouter r({1, 2, 3}, 0);
  r.on_view(50, {4, 5, 6}, false);
  EXPECT_EQ(r.members(), (std::vector<raft::NodeId>{4, 5, 6}));
  r.on_view(30, {1, 2, 3}, false);  // a removed node's old view
  r.on_view(0, {}, false);          // a spare knows no configuration
  EXPECT_EQ(r.members(), (std::vector<raft::NodeId>{4, 5, 6}));
  r.on_view(60, {8, 4, 8}, false);
  EXPECT_EQ(r.members(), (std::vector<raft::NodeId>{4, 8}));
  // A deposed leader's uncommitted entry may carry a higher index than the
  // configuration that committed: a node that just served as leader wins.
  r.on_view(70, {4, 9}, false);
  r.on_view(65, {4, 8}, /*from_leader=*/true);
  EXPECT_EQ(r.members(), (std::vector<raft::NodeId>{4, 8}));
  EXPECT_EQ(r.members_index(), 65u);
}

TEST(ClientRouter, AfterARoundOfSilentMembersEveryIdIsTried) {
  ClientRouter r({1, 2, 3}, 0);
  std::set<raft::NodeId> tried;
  for (int i = 0; i < 3; ++i) {
    const ClientRouter::Target t = r.next(7);
    EXPECT_EQ(t.route, Route::kMember);
    tried.insert(t.node);
    r.on_silent(t.node);
  }
  EXPECT_EQ(tried, (std::set<raft::NodeId>{1, 2, 3}));
  // Every member was silent: the list may be stale, try every other id
  // until any node answers.
  for (int i = 0; i < 4; ++i) {
    const ClientRouter::Target t = r.next(7);
    EXPECT_EQ(t.route, Route::kAnyId);
    EXPECT_TRUE(tried.insert(t.node).second) << t.node << " tried twice";
    r.on_silent(t.node);
  }
  EXPECT_EQ(tried.size(), 7u);
  // All silent (the whole cluster down): it starts over rather than stop.
  const raft::NodeId again = r.next(7).node;
  EXPECT_TRUE(again >= 1 && again <= 7);
  r.on_silent(again);
  r.on_reply(6, false, true, 0);  // an answer, no hint: back to the members
  EXPECT_EQ(r.next(7).route, Route::kMember);
}

TEST(ClientRouter, ClientsStartTheirRotationsAtDifferentMembers) {
  ClientRouter a({1, 2, 3}, 0), b({1, 2, 3}, 1);
  EXPECT_NE(a.next(3).node, b.next(3).node);
}

// The situation of seed 2873 (docs/simulation.md), on the router alone:
// ids 1-9; the group is voters {4,8} led by 4; ids 2, 3, 5, 6, 7 were
// retired by reimages and never answer; 1 is a removed voter that knows no
// leader; 9 is a spare with no configuration. The client last knew leader 7
// and members {1,4,5,7}. It must reach 4 within a round of the members it
// knows, and then stay there.
TEST(ClientRouter, ReachesTheLeaderPastRetiredIdsAndStaysThere) {
  struct Reply {
    bool served, not_leader;
    raft::NodeId hint;
    raft::Index index;
    std::vector<raft::NodeId> members;
  };
  auto cluster = [](raft::NodeId to) -> std::optional<Reply> {
    switch (to) {
      case 4:
        return Reply{true, false, 0, 573, {4, 8}};
      case 8:
        return Reply{false, true, 4, 573, {4, 8}};
      case 1:
        return Reply{false, true, 0, 572, {1, 4, 8}};
      case 9:
        return Reply{false, true, 0, 0, {}};
      default:
        return std::nullopt;  // retired: silent
    }
  };
  for (size_t start = 0; start < 8; ++start) {
    ClientRouter r({1, 2, 3}, start);
    r.on_view(500, {1, 4, 5, 7}, true);
    r.on_reply(7, true, false, 0);
    int attempts = 0, silent = 0;
    bool served = false;
    while (!served) {
      ASSERT_LT(attempts, 6) << "start " << start;
      const raft::NodeId to = r.next(9).node;
      ++attempts;
      const std::optional<Reply> a = cluster(to);
      if (!a) {
        ++silent;
        r.on_silent(to);
        continue;
      }
      r.on_reply(to, a->served, a->not_leader, a->hint);
      r.on_view(a->index, a->members, a->served);
      served = a->served;
    }
    // The old leader 7 and at most member 5, each once.
    EXPECT_LE(silent, 2) << "start " << start;
    EXPECT_EQ(r.members(), (std::vector<raft::NodeId>{4, 8}));
    for (int op = 0; op < 20; ++op)
      EXPECT_EQ(r.next(9).node, 4u);
  }
}

}  // namespace
}  // namespace nori::sim
