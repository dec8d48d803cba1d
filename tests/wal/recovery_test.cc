// Recovery and the engine over the simulated disk: each test is named after
// the damage or event it proves handled.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "runtime/base/bytes.h"
#include "tests/wal/model.h"
#include "tests/wal/sim_harness.h"
#include "wal/sim_wal.h"

namespace nori::wal {
namespace {

using base::ErrorKind;
using testing::apply_op;
using testing::crash_reopen_check;
using testing::Harness;
using testing::ModelState;
using testing::Op;

TEST(WalRecoveryTest, InterleavedGroupsRecoverExactly) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(7);
  for (int i = 0; i < 3000; ++i) {
    const uint64_t g = 1 + rng() % 16;
    if (rng() % 10 == 0) {
      ASSERT_TRUE(h.hard_state(g, HardState{1 + rng() % 5, rng() % 3, rng() % 100}).ok());
    } else {
      auto st = h.append_random(rng, g);
      if (!st.ok()) {
        ASSERT_EQ(st.error().kind(), ErrorKind::kBusy) << st.error().to_string();
        ASSERT_TRUE(h.wal->flush_all().ok());
        ASSERT_TRUE(h.append_random(rng, g).ok());
      }
    }
    if (rng() % 8 == 0) h.wal->issue(/*hold_small=*/rng() % 2 == 0);
    if (rng() % 3 == 0) h.wal->complete_one(rng);
  }
  ASSERT_TRUE(h.wal->flush_all().ok());
  EXPECT_GT(h.e().stats().rotations, 5u) << "the test should cross segments";
  const ModelState want = h.model_after(h.ops.size());
  EXPECT_EQ(h.disk_state(h.e().groups()), want) << "live index disagrees with the model";
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.base, want);
  EXPECT_FALSE(h.wal->recovery().torn_tail);
}

TEST(WalRecoveryTest, SmallTailWaitsForTheWriteInFlightAndLosesNothing) {
  Harness h;
  h.opts.write_hold_bytes = 4096;
  ASSERT_TRUE(h.open().ok());
  ASSERT_TRUE(h.append(1, {1}, {"a"}).ok());
  h.wal->issue(true);
  ASSERT_EQ(h.wal->in_flight(), 1u) << "nothing was in flight: the first write goes at once";
  ASSERT_TRUE(h.append(1, {1}, {"b"}).ok());
  h.wal->issue(true);
  EXPECT_EQ(h.wal->in_flight(), 1u) << "a small tail went out beside the write in flight";
  EXPECT_GT(h.e().stats().held_writes, 0u);
  h.wal->issue(false);  // without the hold it would have
  EXPECT_EQ(h.wal->in_flight(), 2u);
  std::mt19937_64 rng(3);
  while (h.wal->complete_one(rng)) {
  }
  ASSERT_TRUE(h.append(1, {1}, {"c"}).ok());
  h.wal->issue(true);
  ASSERT_EQ(h.wal->in_flight(), 1u);
  // At least write_hold_bytes waiting: they overlap the write in flight.
  ASSERT_TRUE(h.append(1, {1}, {std::string(5000, 'x')}).ok());
  h.wal->issue(true);
  EXPECT_EQ(h.wal->in_flight(), 2u) << "a large tail waited for the write in flight";
  ASSERT_TRUE(h.wal->flush_all().ok());
  const ModelState want = h.model_after(h.ops.size());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.base, want);
}

TEST(WalRecoveryTest, HardStateSurvivesRestart) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  ASSERT_TRUE(h.hard_state(3, HardState{5, 2, 0}).ok());
  ASSERT_TRUE(h.hard_state(4, HardState{1, 1, 0}).ok());
  ASSERT_TRUE(h.hard_state(3, HardState{6, 0, 0}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  ASSERT_NE(h.e().group(3), nullptr);
  EXPECT_EQ(h.e().group(3)->hard_state(), (HardState{6, 0, 0}));
  EXPECT_EQ(h.e().group(4)->hard_state(), (HardState{1, 1, 0}));
}

TEST(WalRecoveryTest, SuffixTruncationAndCompactionSurviveRestart) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(3);
  for (int i = 0; i < 12; ++i)
    ASSERT_TRUE(h.append_random(rng, 1).ok());
  const uint64_t last = h.e().group(1)->last_index();
  ASSERT_TRUE(h.truncate(1, last - 5).ok());
  ASSERT_TRUE(h.append(1, {2, 2}, {"new-a", "new-b"}).ok());
  ASSERT_TRUE(h.compact(1, 10, 1).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  const GroupLog* g = h.e().group(1);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->last_index(), last - 5 + 2);
  EXPECT_EQ(g->first_index(), 11u);
  EXPECT_EQ(g->compact_index(), 10u);
  EXPECT_EQ(g->term(10), std::optional<uint64_t>(1));
  EXPECT_EQ(g->term(last - 3), std::optional<uint64_t>(2));
  EXPECT_EQ(h.base.at(1).entries.at(last - 4).second, "new-a");
  // Appends continue after the restart, into a new segment.
  ASSERT_TRUE(h.append(1, {2}, {"after"}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.base.at(1).entries.at(last - 2).second, "after");
}

TEST(WalRecoveryTest, TornTailIsTruncated) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    Harness h;
    ASSERT_TRUE(h.open().ok());
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 100; ++i)
      ASSERT_TRUE(h.append_random(rng, 1 + i % 3).ok());
    ASSERT_TRUE(h.wal->flush_all().ok());
    const Position acked = h.e().durable_position();
    // More appends, issued but not all completed when the power fails.
    for (int i = 0; i < 60; ++i) {
      auto st = h.append_random(rng, 1 + i % 3, 2000);
      if (!st.ok()) break;
      if (i % 10 == 0) h.wal->issue();
      if (i % 15 == 0) h.wal->complete_one(rng);
    }
    h.wal->issue();
    ASSERT_GT(h.disk.dirty_blocks(), 0u);
    crash_reopen_check(h, std::max(acked, h.e().durable_position()), &rng);
  }
}

TEST(WalRecoveryTest, ValidRecordsAfterALostWriteAreDropped) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(11);
  ASSERT_TRUE(h.append_random(rng, 1).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  const Position acked = h.e().durable_position();
  // Two writes in flight; the second completes (its blocks are durable), the
  // first is lost entirely at the crash.
  ASSERT_TRUE(h.append(1, {1}, {"first-write"}).ok());
  h.wal->issue();
  ASSERT_TRUE(h.append(1, {1}, {"second-write"}).ok());
  h.wal->issue();
  ASSERT_EQ(h.wal->in_flight(), 2u);
  // complete_one picks by rng: drive it until the second write is durable.
  // Both writes are in one chunk; make the second durable by hand.
  const std::string seg = segment_file_name(h.e().active_seq());
  std::string bytes = h.disk.read(seg);
  ASSERT_TRUE(h.disk.sync_range(seg, 0, bytes.size()).ok());
  EXPECT_EQ(h.disk.dirty_blocks(), 0u);
  // Now lose the first write's block: zero it on "disk" (the durable image).
  std::string& img = h.disk.mutable_bytes(seg);
  RecoveryResult scan;
  {
    SimSegmentSource src(h.disk);
    auto r = recover(src);
    ASSERT_TRUE(r.ok());
    scan = std::move(*r);
  }
  const uint64_t end = scan.segments.back().end;
  ASSERT_EQ(end % kBlockBytes, 0u);
  // The two in-flight writes are the last two blocks before `end`.
  std::fill(img.begin() + static_cast<std::ptrdiff_t>(end - 2 * kBlockBytes),
            img.begin() + static_cast<std::ptrdiff_t>(end - kBlockBytes), '\0');
  size_t prefix = 0;
  crash_reopen_check(h, acked, nullptr, &prefix);
  EXPECT_EQ(prefix, 1u) << "the second write's record must be dropped with the first";
  EXPECT_TRUE(h.wal->recovery().torn_tail);
}

TEST(WalRecoveryTest, ZeroedTailIsTruncated) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(5);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(h.append_random(rng, 1).ok());
    ASSERT_TRUE(h.wal->flush_all().ok());  // one write per append
  }
  const std::string seg = segment_file_name(h.e().active_seq());
  std::string& img = h.disk.mutable_bytes(seg);
  SimSegmentSource src(h.disk);
  auto r = recover(src);
  ASSERT_TRUE(r.ok());
  const uint64_t end = r->segments.back().end;
  // The last write (one block) reads back as zeros.
  std::fill(img.begin() + static_cast<std::ptrdiff_t>(end - kBlockBytes),
            img.begin() + static_cast<std::ptrdiff_t>(end), '\0');
  size_t prefix = 0;
  crash_reopen_check(h, 0, nullptr, &prefix);
  EXPECT_EQ(prefix, 29u) << "only the zeroed last append is gone";
}

TEST(WalRecoveryTest, BitFlipInSealedSegmentIsReported) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(9);
  while (h.e().live_segments().size() < 4) {
    auto st = h.append_random(rng, 1 + rng() % 4, 1000);
    if (!st.ok()) ASSERT_TRUE(h.wal->flush_all().ok());
    h.wal->issue();
    while (h.wal->complete_one(rng)) {
    }
  }
  ASSERT_TRUE(h.wal->flush_all().ok());
  const uint64_t victim = h.e().live_segments().front();
  const std::string name = segment_file_name(victim);
  h.disk.mutable_bytes(name)[kSegmentHeaderBytes + 200] ^= 0x04;
  h.wal.reset();
  SimSegmentSource src(h.disk);
  auto r = recover(src);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kCorruption);
  EXPECT_NE(r.error().message().find(name), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("offset"), std::string::npos) << r.error().message();
}

TEST(WalRecoveryTest, BitFlipFarBeforeTheTailIsReported) {
  Harness h;
  h.opts.segment_bytes = 1 << 20;  // one segment, much larger than the window
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(13);
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(h.append_random(rng, 1, 1000).ok());
    if (i % 20 == 0) ASSERT_TRUE(h.wal->flush_all().ok());
  }
  ASSERT_TRUE(h.wal->flush_all().ok());
  ASSERT_EQ(h.e().live_segments().size(), 1u);
  const std::string name = segment_file_name(h.e().active_seq());
  h.disk.mutable_bytes(name)[kSegmentHeaderBytes + 5000] ^= 0x01;
  SimSegmentSource src(h.disk);
  auto r = recover(src);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kCorruption);
  EXPECT_NE(r.error().message().find("window"), std::string::npos) << r.error().message();
}

TEST(WalRecoveryTest, StaleBytesInPreallocatedRegionAreIgnored) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(17);
  // Fill several segments, compact everything, reclaim: old segments become
  // free files full of valid-looking records of their old seq.
  for (int round = 0; round < 3; ++round) {
    while (h.e().live_segments().size() < 4) {
      auto st = h.append_random(rng, 1 + rng() % 3, 1500);
      if (!st.ok()) ASSERT_TRUE(h.wal->flush_all().ok());
      h.wal->issue();
      while (h.wal->complete_one(rng)) {
      }
    }
    for (uint64_t g = 1; g <= 3; ++g) {
      const GroupLog* gl = h.e().group(g);
      ASSERT_TRUE(h.compact(g, gl->last_index(), *gl->term(gl->last_index())).ok());
    }
    ASSERT_TRUE(h.wal->reclaim().ok());
    EXPECT_LE(h.e().live_segments().size(), 2u);
  }
  ASSERT_TRUE(h.append(1, {9}, {"fresh"}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  size_t free_files = 0;
  for (const auto& n : h.disk.list())
    free_files += n.rfind("free-", 0) == 0;
  EXPECT_GT(free_files, 0u);
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_FALSE(h.wal->recovery().torn_tail);
  // The recycled segment in use holds stale records of an older seq past its tail.
  ASSERT_TRUE(h.append(1, {9}, {"fresh-2"}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.base.at(1).entries.rbegin()->second.second, "fresh-2");
}

TEST(WalRecoveryTest, TruncatedSegmentHeaderIsReported) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  ASSERT_TRUE(h.append(1, {1}, {"x"}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  const std::string name = segment_file_name(h.e().active_seq());
  h.disk.mutable_bytes(name).resize(40);
  SimSegmentSource src(h.disk);
  auto r = recover(src);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kCorruption);
  EXPECT_NE(r.error().message().find(name), std::string::npos);
}

TEST(WalRecoveryTest, TruncatedTempSegmentIsDeleted) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  ASSERT_TRUE(h.append(1, {1}, {"x"}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  const std::string tmp = temp_file_name(h.e().active_seq() + 5);
  ASSERT_TRUE(h.disk.create(tmp, 40).ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_FALSE(h.disk.exists(tmp));
  EXPECT_GT(h.e().active_seq(), h.e().live_segments().front());
}

// Writes a hand-made record of `kind` after the log's last write.
void inject_record(Harness& h, uint8_t kind) {
  ASSERT_TRUE(h.wal->flush_all().ok());
  const uint64_t seq = h.e().active_seq();
  const std::string name = segment_file_name(seq);
  SimSegmentSource src(h.disk);
  auto r = recover(src);
  ASSERT_TRUE(r.ok());
  const uint64_t end = r->segments.back().end;
  std::string& img = h.disk.mutable_bytes(name);
  std::string rec(kBlockBytes, '\0');
  const uint32_t body = 24;
  seal_record(std::span<char>(rec.data(), record_span(body)), static_cast<RecordKind>(kind), body,
              RecordPlace{h.e().log_id(), seq, end});
  encode_padding(std::span<char>(rec.data() + record_span(body), kBlockBytes - record_span(body)),
                 RecordPlace{h.e().log_id(), seq, end + record_span(body)});
  img.replace(end, kBlockBytes, rec);
}

TEST(WalRecoveryTest, UnknownOptionalRecordKindIsSkipped) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  ASSERT_TRUE(h.append(1, {1}, {"before"}).ok());
  inject_record(h, 0x90);
  h.wal.reset();
  SimSegmentSource src(h.disk);
  auto r = recover(src);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->groups.at(1).last_index(), 1u);
  EXPECT_EQ(r->segments.back().records, 5u) << "open, entries, padding, optional, padding";
}

TEST(WalRecoveryTest, UnknownRequiredRecordKindIsReported) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  ASSERT_TRUE(h.append(1, {1}, {"before"}).ok());
  inject_record(h, 0x30);
  h.wal.reset();
  SimSegmentSource src(h.disk);
  auto r = recover(src);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kCorruption);
  EXPECT_NE(r.error().message().find("unknown required"), std::string::npos);
}

TEST(WalRecoveryTest, DiskFullFailsAppendsAndRecoversWhenSpaceReturns) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(21);
  ASSERT_TRUE(h.append_random(rng, 1).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  // No room for another segment file.
  h.disk.set_space_bytes(h.disk.used_bytes());
  h.wal->issue();
  base::Status last;
  int accepted = 0;
  for (int i = 0; i < 2000 && last.ok(); ++i) {
    last = h.append_random(rng, 1, 1000);
    if (last.ok()) ++accepted;
    if (!last.ok() && last.error().kind() == ErrorKind::kBusy) {
      ASSERT_TRUE(h.wal->flush_all().ok());
      last = {};
    }
  }
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(last.error().kind(), ErrorKind::kNoSpace) << last.error().to_string();
  EXPECT_NE(last.error().message().find("no space"), std::string::npos);
  // Everything accepted is still made durable.
  ASSERT_TRUE(h.wal->flush_all().ok());
  EXPECT_EQ(h.e().durable_position(), h.e().append_position());
  // Space returns: the next issue prepares the segment, appends work again.
  h.disk.set_space_bytes(UINT64_MAX);
  h.wal->issue();
  ASSERT_TRUE(h.append_random(rng, 1, 1000).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_GT(accepted, 0);
}

TEST(WalRecoveryTest, FailedWriteStopsTheLog) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  ASSERT_TRUE(h.wal->flush_all().ok());  // segments prepared ahead
  ASSERT_TRUE(h.append(1, {1}, {"x"}).ok());
  h.disk.fail_write_after(0);
  h.wal->issue();
  EXPECT_TRUE(h.wal->failed());
  EXPECT_EQ(h.wal->failure()->kind(), ErrorKind::kIo);
  EXPECT_EQ(h.e().durable_position(), 0u) << "nothing may be reported durable";
}

TEST(WalRecoveryTest, ReclaimKeepsWhatGroupsNeedAndDropsTheRest) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(23);
  // Group 1 is busy, group 2 appends once and never compacts: it pins.
  ASSERT_TRUE(h.append(2, {1}, {"pinned"}).ok());
  ASSERT_TRUE(h.hard_state(2, HardState{1, 2, 1}).ok());
  while (h.e().live_segments().size() < 5) {
    auto st = h.append_random(rng, 1, 1500);
    if (!st.ok()) ASSERT_TRUE(h.wal->flush_all().ok());
    h.wal->issue();
    while (h.wal->complete_one(rng)) {
    }
  }
  const GroupLog* g1 = h.e().group(1);
  ASSERT_TRUE(h.compact(1, g1->last_index(), *g1->term(g1->last_index())).ok());
  ASSERT_TRUE(h.wal->reclaim().ok());
  EXPECT_EQ(h.e().live_segments().size(), 5u) << "group 2 pins the oldest segment";
  EXPECT_EQ(h.e().pinning_groups(), std::vector<uint64_t>{2});
  // Group 2 snapshots: now everything old can go; its hard state moves forward.
  ASSERT_TRUE(h.compact(2, 1, 1).ok());
  ASSERT_TRUE(h.wal->reclaim().ok());
  EXPECT_EQ(h.e().live_segments().size(), 1u);
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.e().group(2)->hard_state(), (HardState{1, 2, 1}));
  EXPECT_EQ(h.e().group(2)->compact_index(), 1u);
}

// Many power failures at random moments, with every kind of operation:
// after each, every acknowledged operation is present and nothing else is
// invented (the state is that of a prefix of the operations).
TEST(WalRecoveryTest, SimulatedCrashesLoseNothingAcknowledged) {
  uint64_t torn_tails = 0, rotations = 0, reclaimed_lives = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    Harness h;
    std::mt19937_64 rng(seed * 7919);
    ASSERT_TRUE(h.open().ok());
    for (int life = 0; life < 12; ++life) {
      const int steps = 50 + static_cast<int>(rng() % 300);
      for (int s = 0; s < steps; ++s) {
        const uint64_t g = 1 + rng() % 6;
        const GroupLog* gl = h.e().group(g);
        const unsigned what = rng() % 100;
        base::Status st;
        if (what < 70 || gl == nullptr) {
          st = h.append_random(rng, g, 600);
        } else if (what < 80) {
          st = h.hard_state(g, HardState{gl->hard_state().term + rng() % 2, rng() % 3,
                                         gl->hard_state().commit + rng() % 3});
        } else if (what < 88) {
          const uint64_t keep = std::max(gl->compact_index(), gl->last_index() - rng() % 4);
          st = h.truncate(g, keep);
        } else if (what < 95) {
          const uint64_t upto = gl->compact_index() + rng() % 6;
          auto t = gl->term(std::min(upto, gl->last_index()));
          if (upto <= gl->last_index() && t) st = h.compact(g, upto, *t);
        } else {
          st = h.wal->reclaim();
        }
        if (!st.ok()) {
          ASSERT_EQ(st.error().kind(), ErrorKind::kBusy) << st.error().to_string();
          h.wal->issue();
          while (h.wal->complete_one(rng)) {
          }
        }
        if (rng() % 4 == 0) h.wal->issue();
        if (rng() % 3 == 0) h.wal->complete_one(rng);
      }
      h.wal->issue();
      rotations += h.e().stats().rotations;
      reclaimed_lives += h.e().live_segments().size() > 0 && h.e().live_segments().front() > 1;
      crash_reopen_check(h, h.e().durable_position(), &rng);
      torn_tails += h.wal->recovery().torn_tail;
    }
  }
  // The run must reach the paths it claims to test.
  EXPECT_GT(torn_tails, 5u) << "crashes that left valid records after damage";
  EXPECT_GT(rotations, 20u);
  EXPECT_GT(reclaimed_lives, 5u);
}

// A new segment's first write waits until every write to the previous one is
// durable: damage before the tail segment can then only be corruption.
TEST(WalRecoveryTest, FirstWriteToANewSegmentWaitsForThePreviousSegment) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  std::mt19937_64 rng(31);
  h.wal->issue();  // prepares the next segment
  const uint64_t first_seq = h.e().active_seq();
  // Fill the active segment with writes left in flight.
  while (h.e().active_seq() == first_seq) {
    auto st = h.append_random(rng, 1, 1500);
    if (!st.ok()) {
      ASSERT_EQ(st.error().kind(), ErrorKind::kBusy);
      h.wal->issue();
      ASSERT_TRUE(h.wal->complete_one(rng));
      continue;
    }
    if (h.e().active_seq() == first_seq) h.wal->issue();
  }
  // The append that rotated is in the new segment; old-segment writes pending.
  h.wal->issue();
  ASSERT_GT(h.wal->in_flight(), 0u);
  bool saw_old_only_with_new_pending = false;
  while (h.wal->in_flight() > 0) {
    const auto& w = h.wal->in_flight_writes();
    for (const auto& req : w) {
      ASSERT_EQ(req.seq, w.front().seq) << "writes to two segments in flight at once";
    }
    if (w.front().seq == first_seq && h.e().has_unwritten()) saw_old_only_with_new_pending = true;
    ASSERT_TRUE(h.wal->complete_one(rng));
    h.wal->issue();
  }
  EXPECT_TRUE(saw_old_only_with_new_pending)
      << "the new segment's write must have waited behind the old segment's";
  EXPECT_EQ(h.e().durable_position(), h.e().append_position());
  EXPECT_GT(h.e().active_seq(), first_seq);
}

}  // namespace
}  // namespace nori::wal
