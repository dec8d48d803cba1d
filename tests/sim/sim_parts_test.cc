// Tests of the simulator's parts: the disk model, clocks, randomness, the KV
// command encoding, and every safety checker on hand-made violations (a
// checker that cannot fail is not a checker).
#include <gtest/gtest.h>

#include "tests/sim/checkers.h"
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

}  // namespace
}  // namespace nori::sim
