// LogEngine::remove_group (raft::Node::remove_group: a group retired from a
// core) over the simulated disk: a removed group is not recovered, a removal
// that never became durable leaves the group as it was, a group created again
// under the same id starts empty (also after a restart, with the old records
// still on disk before the remove record), and the removed group stops
// pinning segments. Each test is named after the failure it proves handled.
#include <gtest/gtest.h>

#include <random>

#include "tests/wal/sim_harness.h"
#include "wal/recovery.h"
#include "wal/sim_wal.h"

namespace nori::wal {
namespace {

using base::ErrorKind;
using testing::append_n;
using testing::Harness;

base::Result<Position> remove_retrying(Harness& h, uint64_t g) {
  auto r = h.e().remove_group(g);
  if (!r.ok() && r.error().kind() == ErrorKind::kBusy) {
    if (auto st = h.wal->flush_all(); !st.ok()) return st.error();
    r = h.e().remove_group(g);
  }
  return r;
}

void reopen(Harness& h) {
  h.wal.reset();
  auto st = h.open();
  ASSERT_TRUE(st.ok()) << st.error().to_string();
}

TEST(WalRemoveGroupTest, RemovedGroupIsNotRecoveredAfterRestart) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  append_n(h, 1, 20, 1);
  append_n(h, 2, 5, 1);
  ASSERT_TRUE(h.hard_state(1, HardState{3, 1, 15}).ok());
  ASSERT_TRUE(h.compact(1, 10, 1).ok());
  auto pos = remove_retrying(h, 1);
  ASSERT_TRUE(pos.ok()) << pos.error().to_string();
  EXPECT_EQ(h.e().group(1), nullptr) << "forgotten at once";
  ASSERT_TRUE(h.wal->flush_all().ok());
  ASSERT_GE(h.e().durable_position(), *pos);
  reopen(h);
  EXPECT_EQ(h.e().group(1), nullptr) << "a durable removal is not undone by recovery";
  ASSERT_NE(h.e().group(2), nullptr);
  EXPECT_EQ(h.e().group(2)->last_index(), 5u) << "other groups keep their log";
}

TEST(WalRemoveGroupTest, RemovalLostInCrashLeavesGroupAsItWas) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  append_n(h, 1, 12, 2);
  ASSERT_TRUE(h.hard_state(1, HardState{2, 1, 12}).ok());
  ASSERT_TRUE(h.wal->flush_all().ok());
  auto pos = remove_retrying(h, 1);
  ASSERT_TRUE(pos.ok());
  // Power fails before the remove record's write is even issued.
  std::mt19937_64 rng(7);
  h.disk.crash(rng);
  reopen(h);
  const GroupLog* g = h.e().group(1);
  ASSERT_NE(g, nullptr) << "a removal that was never durable did not happen";
  EXPECT_EQ(g->last_index(), 12u);
  EXPECT_EQ(g->hard_state(), (HardState{2, 1, 12}));
}

TEST(WalRemoveGroupTest, RecreatedGroupStartsEmptyAcrossRestart) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  append_n(h, 1, 30, 4);
  ASSERT_TRUE(h.hard_state(1, HardState{4, 2, 30}).ok());
  ASSERT_TRUE(h.reset(1, 40, 4).ok());  // a start point the new log must not inherit
  ASSERT_TRUE(remove_retrying(h, 1).ok());
  // Created again: index 1, term 1, as a brand-new group would.
  ASSERT_TRUE(h.append(1, {1}, {"new-life-1"}).ok());
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    const GroupLog* g = h.e().group(1);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->first_index(), 1u);
    EXPECT_EQ(g->last_index(), 1u);
    EXPECT_EQ(g->compact_index(), 0u);
    EXPECT_EQ(g->compact_term(), 0u);
    EXPECT_FALSE(g->has_hard_state()) << "the old vote must not come back";
    EXPECT_EQ(g->term(1), std::optional<uint64_t>(1));
  };
  check("live");
  ASSERT_TRUE(h.wal->flush_all().ok());
  reopen(h);
  check("recovered: old records replayed, voided by the remove record");
  const GroupLog* g = h.e().group(1);
  ASSERT_NE(g, nullptr);
  const std::string seg = h.disk.read(segment_file_name(g->entry(1)->seq));
  EXPECT_EQ(seg.substr(g->entry(1)->offset, g->entry(1)->len), "new-life-1");
}

TEST(WalRemoveGroupTest, RemovedGroupStopsPinningSegments) {
  Harness h;
  ASSERT_TRUE(h.open().ok());
  // Group 1 fills several segments; group 2 keeps writing after it is gone.
  append_n(h, 1, 400, 1, 1000);
  ASSERT_TRUE(h.wal->flush_all().ok());
  ASSERT_TRUE(h.wal->reclaim().ok());
  const size_t live_before = h.e().live_segments().size();
  ASSERT_GE(live_before, 3u) << "the test needs group 1 to span segments";
  ASSERT_TRUE(remove_retrying(h, 1).ok());
  append_n(h, 2, 300, 1, 1000);  // rotates past the remove record's segment too
  ASSERT_TRUE(h.wal->flush_all().ok());
  ASSERT_TRUE(h.wal->reclaim().ok());
  const uint64_t oldest = h.e().live_segments().front();
  EXPECT_GE(oldest, h.e().group(2)->entry(1)->seq) << "only group 2's segments stay";
  EXPECT_EQ(h.e().first_needed_seq(), h.e().group(2)->oldest_needed_seq());
  reopen(h);
  EXPECT_EQ(h.e().group(1), nullptr)
      << "with the remove record's segment reclaimed, no older record of the group is left";
  ASSERT_NE(h.e().group(2), nullptr);
  EXPECT_EQ(h.e().group(2)->last_index(), 300u);
}

TEST(WalRemoveGroupTest, MalformedRemoveGroupBodyIsCorruption) {
  char body[kRemoveGroupBodyBytes + 1] = {};
  ASSERT_EQ(encode_remove_group(body, RemoveGroupBody{42}), kRemoveGroupBodyBytes);
  auto ok = decode_remove_group(std::string_view(body, kRemoveGroupBodyBytes));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->group, 42u);
  for (size_t n : {size_t{0}, kRemoveGroupBodyBytes - 1, kRemoveGroupBodyBytes + 1}) {
    auto bad = decode_remove_group(std::string_view(body, n));
    ASSERT_FALSE(bad.ok()) << n;
    EXPECT_EQ(bad.error().kind(), ErrorKind::kCorruption);
  }
  EXPECT_EQ(kind_name(static_cast<uint8_t>(RecordKind::kRemoveGroup)), "remove_group");
  // Required: a reader that does not know it must refuse the log, not
  // resurrect the group by skipping it.
  EXPECT_LT(static_cast<uint8_t>(RecordKind::kRemoveGroup), kFirstOptionalKind);
}

}  // namespace
}  // namespace nori::wal
