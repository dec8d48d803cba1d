// reset_group (a snapshot installed over a group's log) over the simulated
// disk: the two outcomes, appends after it, crashes at every step of making it
// durable, torn reset records, and reclamation of the segments it makes
// unneeded (and of its own). Each test is named after the failure it proves
// handled.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "tests/wal/model.h"
#include "tests/wal/sim_harness.h"
#include "wal/recovery.h"
#include "wal/sim_wal.h"

namespace nori::wal {
namespace {

using base::ErrorKind;
using testing::append_n;
using testing::apply_op;
using testing::crash_reopen_check;
using testing::Harness;
using testing::ModelState;
using testing::Op;

// The state recovery finds on a disk image (payloads read from that image).
ModelState state_on(const SimDisk& disk, const GroupMap& groups) {
  std::map<uint64_t, std::string> files;
  return testing::state_of(groups, [&](const EntryLoc& l) {
    auto it = files.find(l.seq);
    if (it == files.end()) it = files.emplace(l.seq, disk.read(segment_file_name(l.seq))).first;
    return it->second.substr(l.offset, l.len);
  });
}

// Records of `kind` in the live segments of the disk.
size_t count_records(const SimDisk& disk, RecordKind kind) {
  SimSegmentSource src(disk);
  auto r = recover(src);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  if (!r) return 0;
  size_t n = 0;
  for (const auto& s : r->segments) {
    const std::string bytes = disk.read(s.name);
    scan_records(bytes, s.header.log_id, s.header.seq, s.end, [&](const RecordView& rec) {
      n += rec.kind == static_cast<uint8_t>(kind);
      return true;
    });
  }
  return n;
}

// Recovers a copy of the disk and returns the length of the prefix of h.ops
// whose state it holds (ASSERTs that there is one, and that it covers every
// op durable at `durable`).
size_t recovered_prefix(const Harness& h, const SimDisk& image, Position durable) {
  SimSegmentSource src(image);
  auto r = recover(src);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  if (!r) return SIZE_MAX;
  const ModelState got = state_on(image, r->groups);
  size_t acked = 0;
  while (acked < h.pos.size() && h.pos[acked] <= durable)
    ++acked;
  ModelState s = h.base;
  for (size_t i = 0; i < acked; ++i)
    apply_op(s, h.ops[i]);
  size_t p = acked;
  while (testing::normalized(s) != got && p < h.ops.size())
    apply_op(s, h.ops[p++]);
  EXPECT_EQ(testing::normalized(s), got)
      << "recovered state is not the state after any prefix including the " << acked
      << " durable ops";
  return testing::normalized(s) == got ? p : SIZE_MAX;
}

TEST(WalResetTest, ResetToMatchingTermKeepsLaterEntries) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  append_n(h, 1, 10, 1);
  append_n(h, 1, 10, 2);
  ASSERT_TRUE(h.reset(1, 15, 2).ok());
  auto check = [&](const GroupLog* g) {
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->first_index(), 16u);
    EXPECT_EQ(g->last_index(), 20u);
    EXPECT_EQ(g->entry_count(), 5u);
    EXPECT_EQ(g->compact_index(), 15u);
    EXPECT_EQ(g->compact_term(), 2u);
    EXPECT_EQ(g->term(15), std::optional<uint64_t>(2));
    EXPECT_EQ(g->term(16), std::optional<uint64_t>(2));
    EXPECT_EQ(g->entry(15), nullptr);
  };
  check(h.e().group(1));
  // Resetting again to the start point itself is a match too: nothing goes.
  ASSERT_TRUE(h.reset(1, 15, 2).ok());
  check(h.e().group(1));
  ASSERT_TRUE(h.wal->flush_all().ok());
  EXPECT_EQ(h.disk_state(h.e().groups()), h.model_after(h.ops.size()));
  EXPECT_EQ(count_records(h.disk, RecordKind::kReset), 0u)
      << "a matching reset is a compaction mark";
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  check(h.e().group(1));
  EXPECT_EQ(h.base.at(1).entries.at(16).second.substr(0, 9), "g1i16t2:.");
}

TEST(WalResetTest, ResetToConflictingTermDropsWholeLog) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  append_n(h, 1, 20, 1);  // term mismatch inside the log
  append_n(h, 2, 5, 1);   // index beyond the last entry
  append_n(h, 3, 20, 1);  // index below the start point
  ASSERT_TRUE(h.compact(3, 10, 1).ok());
  append_n(h, 4, 20, 1);  // start point with another term
  ASSERT_TRUE(h.compact(4, 10, 1).ok());
  ASSERT_TRUE(h.hard_state(1, HardState{3, 2, 12}).ok());
  ASSERT_TRUE(h.reset(1, 15, 3).ok());
  ASSERT_TRUE(h.reset(2, 100, 4).ok());
  ASSERT_TRUE(h.reset(3, 5, 7).ok());
  ASSERT_TRUE(h.reset(4, 10, 2).ok());
  struct Want {
    uint64_t g, index, term;
  };
  const Want wants[] = {{1, 15, 3}, {2, 100, 4}, {3, 5, 7}, {4, 10, 2}};
  auto check = [&](const char* when) {
    for (const Want& w : wants) {
      SCOPED_TRACE(fmt::format("{}: group {}", when, w.g));
      const GroupLog* g = h.e().group(w.g);
      ASSERT_NE(g, nullptr);
      EXPECT_EQ(g->entry_count(), 0u);
      EXPECT_EQ(g->first_index(), w.index + 1);
      EXPECT_EQ(g->last_index(), w.index);
      EXPECT_EQ(g->compact_index(), w.index);
      EXPECT_EQ(g->compact_term(), w.term);
      EXPECT_EQ(g->term(w.index), std::optional<uint64_t>(w.term));
      EXPECT_EQ(g->term(w.index - 1), std::nullopt);
      EXPECT_EQ(g->term(w.index + 1), std::nullopt);
    }
    EXPECT_EQ(h.e().group(1)->hard_state(), (HardState{3, 2, 12})) << "a reset keeps the vote";
  };
  check("live");
  ASSERT_TRUE(h.wal->flush_all().ok());
  EXPECT_EQ(h.disk_state(h.e().groups()), h.model_after(h.ops.size()));
  EXPECT_EQ(count_records(h.disk, RecordKind::kReset), 4u);
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  check("recovered");
  // The start point bounds truncation and compaction as any compaction does.
  auto t = h.e().truncate_suffix(1, 14);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(h.truncate(1, 15).ok());
  EXPECT_TRUE(h.compact(1, 12, 1).ok());
  EXPECT_EQ(h.e().group(1)->compact_index(), 15u) << "a lower mark changes nothing";
  EXPECT_EQ(h.e().group(1)->compact_term(), 3u);
  // Out-of-range resets are refused and change nothing.
  for (auto [i, t2] : {std::pair<uint64_t, uint64_t>{0, 1}, {5, 0}, {UINT64_MAX, 1}}) {
    auto r = h.e().reset_group(1, i, t2);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind(), ErrorKind::kInvalidArgument);
  }
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  check("after refused calls");
}

TEST(WalResetTest, AppendAfterResetContinuesAtIndexPlusOne) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  append_n(h, 1, 10, 1);
  ASSERT_TRUE(h.reset(1, 50, 3).ok());
  for (uint64_t bad : {uint64_t{11}, uint64_t{50}, uint64_t{52}}) {
    const std::string_view p = "x";
    const uint64_t term = 3;
    auto r = h.e().append_entries(1, bad, std::span(&term, 1), std::span(&p, 1));
    ASSERT_FALSE(r.ok()) << "append at " << bad;
    EXPECT_EQ(r.error().kind(), ErrorKind::kInvalidArgument);
  }
  ASSERT_TRUE(h.append(1, {3}, {"after-reset-51"}).ok());
  EXPECT_EQ(h.e().group(1)->first_index(), 51u);
  EXPECT_EQ(h.e().group(1)->last_index(), 51u);
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  ASSERT_TRUE(h.append(1, {3}, {"after-restart-52"}).ok());
  // A group that never existed starts after the reset point too.
  ASSERT_TRUE(h.reset(9, 1000, 2).ok());
  ASSERT_TRUE(h.append(9, {2}, {"g9-1001"}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  const GroupLog* g = h.e().group(1);
  EXPECT_EQ(g->first_index(), 51u);
  EXPECT_EQ(g->last_index(), 52u);
  EXPECT_EQ(g->term(50), std::optional<uint64_t>(3));
  EXPECT_EQ(h.base.at(1).entries.at(51).second, "after-reset-51");
  EXPECT_EQ(h.base.at(1).entries.at(52).second, "after-restart-52");
  EXPECT_EQ(h.e().group(9)->first_index(), 1001u);
  EXPECT_EQ(h.base.at(9).entries.at(1001).second, "g9-1001");
}

// A crash at every step of making a reset durable (appended in memory, each
// write issued, each write completed), each with several subsets of the
// unsynced blocks surviving: before the reset is durable recovery finds the
// old log or the new one, once it is durable always the new one, never a mix
// (the state is always that of a prefix of the operations).
TEST(WalResetTest, ResetSurvivesCrashBeforeAndAfterItIsDurable) {
  size_t saw_old = 0, saw_new = 0, images = 0;
  for (bool matching : {false, true}) {
    for (uint64_t seed = 1; seed <= 6; ++seed) {
      SCOPED_TRACE(fmt::format("matching={} seed={}", matching, seed));
      Harness h;
      ASSERT_TRUE(h.open().ok());
      std::mt19937_64 rng(seed);
      append_n(h, 1, 30, 1, 600);
      append_n(h, 2, 10, 1, 600);
      ASSERT_TRUE(h.wal->flush_all().ok());
      h.base = h.model_after(h.ops.size());
      h.ops.clear();
      h.pos.clear();
      // Unsynced work before and after the reset, in several writes.
      append_n(h, 2, 8, 1, 1500);
      h.wal->issue();
      append_n(h, 1, 3, 1, 1500);
      const size_t reset_op = h.ops.size();
      if (matching) {
        ASSERT_TRUE(h.reset(1, 20, 1).ok());
      } else {
        ASSERT_TRUE(h.reset(1, 20, 2).ok());
      }
      const Position reset_pos = h.pos.back();
      append_n(h, 1, 2, 2, 1500);
      append_n(h, 2, 4, 1, 1500);
      auto crash_here = [&] {
        for (int k = 0; k < 4; ++k) {
          SimDisk image = h.disk;
          std::mt19937_64 crng(seed * 100 + k);
          if (k == 0) {
            image.crash_with([](const std::string&, uint64_t) { return false; });
          } else if (k == 1) {
            image.crash_with([](const std::string&, uint64_t) { return true; });
          } else {
            image.crash(crng);
          }
          const size_t p = recovered_prefix(h, image, h.e().durable_position());
          ASSERT_NE(p, SIZE_MAX);
          ++images;
          if (p > reset_op) {
            ++saw_new;
            if (!matching) {
              const ModelState s = testing::normalized([&] {
                ModelState m = h.base;
                for (size_t i = 0; i < p; ++i)
                  apply_op(m, h.ops[i]);
                return m;
              }());
              EXPECT_EQ(s.at(1).compact, 20u);
              EXPECT_EQ(s.at(1).compact_term, 2u);
              EXPECT_TRUE(s.at(1).entries.empty() || s.at(1).entries.begin()->first == 21u)
                  << "no entry of the old log may survive a conflicting reset";
            }
          } else {
            ++saw_old;
            EXPECT_LT(h.e().durable_position(), reset_pos)
                << "the reset was durable but recovery lost it";
          }
        }
      };
      crash_here();  // appended, nothing issued
      for (int step = 0; step < 64; ++step) {
        h.wal->issue();
        crash_here();  // issued
        if (!h.wal->complete_one(rng)) break;
        crash_here();  // one more write completed
      }
      ASSERT_EQ(h.e().durable_position(), h.e().append_position());
      EXPECT_EQ(recovered_prefix(h, h.disk, h.e().durable_position()), h.ops.size());
    }
  }
  EXPECT_GT(saw_old, 10u) << "crashes before the reset was durable";
  EXPECT_GT(saw_new, 10u) << "crashes after it";
  EXPECT_GT(images, 100u);
}

// The reset record is lost with its block, or its bytes are damaged (a torn
// sector), or a later block of the same interrupted write survives while its
// own is lost: recovery drops it (and everything after it) and the old log
// comes back whole.
TEST(WalResetTest, TornResetRecordIsDropped) {
  enum Damage { kBlockLost, kBodyByteFlipped, kLaterBlockKept };
  for (Damage damage : {kBlockLost, kBodyByteFlipped, kLaterBlockKept}) {
    SCOPED_TRACE(fmt::format("damage {}", static_cast<int>(damage)));
    Harness h;
    ASSERT_TRUE(h.open().ok());
    append_n(h, 1, 12, 1, 300);
    ASSERT_TRUE(h.wal->flush_all().ok());
    const Position acked = h.e().durable_position();
    const std::string seg = segment_file_name(h.e().active_seq());
    uint64_t reset_off = 0;  // the reset goes right after the last durable write
    {
      SimSegmentSource src(h.disk);
      auto r = recover(src);
      ASSERT_TRUE(r.ok());
      reset_off = r->segments.back().end;
    }
    ASSERT_EQ(reset_off % kBlockBytes, 0u);
    ASSERT_TRUE(h.reset(1, 6, 4).ok());
    h.wal->issue();
    ASSERT_EQ(h.wal->in_flight(), 1u) << "one block: the reset and its padding";
    if (damage == kLaterBlockKept) {
      // A second write in flight, starting at the next block boundary.
      append_n(h, 1, 3, 4, 3000);
      h.wal->issue();
      ASSERT_EQ(h.wal->in_flight(), 2u);
    }
    const uint64_t reset_block = reset_off / kBlockBytes;
    if (damage == kBodyByteFlipped) {
      h.disk.crash_with([](const std::string&, uint64_t) { return true; });
      h.disk.mutable_bytes(seg)[reset_off + kRecordHeaderBytes + 9] ^= 0x20;
    } else {
      h.disk.crash_with([&](const std::string& name, uint64_t block) {
        return damage == kLaterBlockKept && name == seg && block > reset_block;
      });
    }
    size_t prefix = 0;
    crash_reopen_check(h, acked, nullptr, &prefix);
    EXPECT_EQ(prefix, 12u) << "the reset and what followed it must be gone";
    const GroupLog* g = h.e().group(1);
    EXPECT_EQ(g->first_index(), 1u);
    EXPECT_EQ(g->last_index(), 12u);
    EXPECT_EQ(g->compact_index(), 0u);
    if (damage == kLaterBlockKept) EXPECT_TRUE(h.wal->recovery().torn_tail);
    // The log goes on from the old state.
    ASSERT_TRUE(h.reset(1, 6, 4).ok());
    ASSERT_TRUE(h.wal->flush_all().ok());
    crash_reopen_check(h, h.e().durable_position(), nullptr);
    EXPECT_EQ(h.e().group(1)->first_index(), 7u);
  }
}

// Fills segments with group `busy` (which compacts what it wrote, so it pins
// nothing) until the active segment is past `seq`.
void advance_past(Harness& h, uint64_t busy, uint64_t seq) {
  while (h.e().active_seq() <= seq) {
    append_n(h, busy, 4, 1, 1500);
    const GroupLog* g = h.e().group(busy);
    ASSERT_TRUE(h.compact(busy, g->last_index(), 1).ok());
    h.wal->issue();
  }
  ASSERT_TRUE(h.wal->flush_all().ok());
}

// Checkpoints, then removes the segments nothing needs one at a time, oldest
// first, recovering the disk after each removal (a crash in the middle of
// reclamation), then really reclaims.
void reclaim_with_crash_at_every_unlink(Harness& h) {
  ASSERT_TRUE(h.e().checkpoint_before(h.e().oldest_entry_seq()).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  const uint64_t keep_from = h.e().first_needed_seq();
  std::vector<uint64_t> drop;
  for (uint64_t s : h.e().live_segments()) {
    if (s < keep_from) drop.push_back(s);
  }
  const ModelState want = h.model_after(h.ops.size());
  for (size_t k = 0; k <= drop.size(); ++k) {
    SCOPED_TRACE(fmt::format("{} of {} segments dropped", k, drop.size()));
    SimDisk image = h.disk;
    for (size_t j = 0; j < k; ++j)
      ASSERT_TRUE(image.unlink(segment_file_name(drop[j])).ok());
    SimSegmentSource src(image);
    auto r = recover(src);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(state_on(image, r->groups), want);
  }
  ASSERT_TRUE(h.wal->reclaim().ok());
}

TEST(WalResetTest, ResetIsCarriedForwardWhenItsSegmentIsReclaimed) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  ASSERT_TRUE(h.hard_state(1, HardState{4, 1, 30}).ok());
  while (h.e().live_segments().size() < 3)
    append_n(h, 1, 4, 1, 1500);
  const uint64_t last_old = h.e().group(1)->last_index();
  ASSERT_TRUE(h.reset(1, 40, 5).ok());
  const uint64_t reset_seq = h.e().active_seq();
  advance_past(h, 2, reset_seq + 1);
  // A newer hard state in the active segment: only the start point itself
  // asks for a checkpoint now.
  ASSERT_TRUE(h.hard_state(1, HardState{4, 1, 35}).ok());
  reclaim_with_crash_at_every_unlink(h);
  ASSERT_GT(h.e().live_segments().front(), reset_seq)
      << "the reset's segment and the older ones holding the dropped entries must go";
  EXPECT_GE(count_records(h.disk, RecordKind::kCheckpoint), 1u);
  EXPECT_EQ(count_records(h.disk, RecordKind::kReset), 0u);
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  const GroupLog* g = h.e().group(1);
  EXPECT_EQ(g->entry_count(), 0u);
  EXPECT_EQ(g->first_index(), 41u);
  EXPECT_EQ(g->compact_index(), 40u);
  EXPECT_EQ(g->compact_term(), 5u);
  EXPECT_EQ(g->hard_state(), (HardState{4, 1, 35}));
  EXPECT_GT(last_old, 40u);
  // And appends after the reset, recovered without the reset's segment.
  ASSERT_TRUE(h.append(1, {5}, {"41"}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.base.at(1).entries.begin()->first, 41u);
}

// A conflicting reset releases the segments that held the dropped entries:
// the group stops pinning them and they are reclaimed.
TEST(WalResetTest, ResetUnpinsTheSegmentsOfDroppedEntries) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  while (h.e().live_segments().size() < 3)
    append_n(h, 1, 4, 1, 1500);
  advance_past(h, 2, h.e().active_seq());
  ASSERT_TRUE(h.wal->reclaim().ok());
  const size_t pinned_live = h.e().live_segments().size();
  EXPECT_GE(pinned_live, 3u);
  EXPECT_EQ(h.e().pinning_groups(), std::vector<uint64_t>{1});
  ASSERT_TRUE(h.reset(1, 5000, 2).ok());
  EXPECT_TRUE(h.e().pinning_groups().empty());
  reclaim_with_crash_at_every_unlink(h);
  EXPECT_LT(h.e().live_segments().size(), pinned_live);
  EXPECT_EQ(h.e().live_segments().front(), h.e().active_seq());
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.e().group(1)->first_index(), 5001u);
}

// A matching reset keeps the entries after its index; the segment holding
// the entry at the index itself may be reclaimed. Recovery must not decide
// again whether the log matched (it no longer holds that entry): the later
// entries survive.
TEST(WalResetTest, MatchingResetKeepsEntriesWhenTheEntryAtItsIndexIsReclaimed) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  while (h.e().live_segments().size() < 3)
    append_n(h, 1, 4, 1, 1500);
  const GroupLog* g = h.e().group(1);
  // The last entry of the oldest segment.
  uint64_t idx = g->first_index();
  while (g->entry(idx + 1)->seq == g->entry(idx)->seq)
    ++idx;
  const uint64_t last = g->last_index();
  ASSERT_TRUE(h.reset(1, idx, 1).ok());
  reclaim_with_crash_at_every_unlink(h);
  ASSERT_GT(h.e().live_segments().front(), h.e().group(1)->entry(idx + 1)->seq - 1);
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  g = h.e().group(1);
  EXPECT_EQ(g->first_index(), idx + 1);
  EXPECT_EQ(g->last_index(), last);
  EXPECT_EQ(g->compact_index(), idx);
}

// A compaction mark (or a matching reset) below the start point changes
// nothing, and must not move which segment carries the start point: the
// segment holding the real one would be reclaimed and recovery would find
// the lower point.
TEST(WalResetTest, LowerMarkDoesNotLoseTheStartPoint) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  append_n(h, 1, 30, 1, 1500);
  ASSERT_TRUE(h.compact(1, 30, 1).ok());
  advance_past(h, 2, h.e().active_seq() + 1);
  ASSERT_TRUE(h.compact(1, 10, 1).ok());
  reclaim_with_crash_at_every_unlink(h);
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.e().group(1)->compact_index(), 30u);
  // A conflicting reset may lower the start point; a later, lower mark
  // still changes nothing.
  ASSERT_TRUE(h.reset(1, 12, 2).ok());
  EXPECT_EQ(h.e().group(1)->compact_index(), 12u);
  advance_past(h, 2, h.e().active_seq() + 1);
  ASSERT_TRUE(h.compact(1, 11, 2).ok());
  reclaim_with_crash_at_every_unlink(h);
  crash_reopen_check(h, h.e().durable_position(), nullptr);
  EXPECT_EQ(h.e().group(1)->compact_index(), 12u);
  EXPECT_EQ(h.e().group(1)->compact_term(), 2u);
  EXPECT_EQ(h.e().group(1)->first_index(), 13u);
}

// Random resets (matching and not) among every other operation, with power
// failures at random moments and reclamation: recovery always finds the state
// after a prefix of the operations that includes every acknowledged one.
TEST(WalResetTest, RandomResetsSurviveCrashesAndReclamation) {
  size_t resets_kept = 0, resets_dropped = 0;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    Harness h;
    std::mt19937_64 rng(seed * 104729);
    ASSERT_TRUE(h.open().ok());
    for (int life = 0; life < 10; ++life) {
      const int steps = 50 + static_cast<int>(rng() % 250);
      for (int s = 0; s < steps; ++s) {
        const uint64_t g = 1 + rng() % 5;
        const GroupLog* gl = h.e().group(g);
        const unsigned what = rng() % 100;
        base::Status st;
        if (what < 68 || gl == nullptr) {
          st = h.append_random(rng, g, 600);
        } else if (what < 76) {
          st = h.hard_state(g, HardState{gl->hard_state().term + rng() % 2, rng() % 3,
                                         gl->hard_state().commit + rng() % 3});
        } else if (what < 82) {
          st = h.truncate(g, std::max(gl->compact_index(), gl->last_index() - rng() % 4));
        } else if (what < 88) {
          const uint64_t upto = gl->compact_index() + rng() % 6;
          if (upto <= gl->last_index()) st = h.compact(g, upto, *gl->term(upto));
        } else if (what < 96) {
          // Around the held log: below the start point, inside, beyond.
          const uint64_t lo = gl->compact_index() > 3 ? gl->compact_index() - 3 : 1;
          const uint64_t idx = lo + rng() % (gl->last_index() + 6 - lo);
          const auto t = gl->term(idx);
          const bool match = t.has_value() && *t > 0 && rng() % 2 == 0;
          const uint64_t term = match ? *t : 1 + rng() % 4;
          const bool kept = gl->term(idx) == std::optional<uint64_t>(term);
          st = h.reset(g, idx, term);
          if (st.ok()) (kept ? resets_kept : resets_dropped)++;
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
      crash_reopen_check(h, h.e().durable_position(), &rng);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  EXPECT_GT(resets_kept, 20u);
  EXPECT_GT(resets_dropped, 20u);
}

}  // namespace
}  // namespace nori::wal
