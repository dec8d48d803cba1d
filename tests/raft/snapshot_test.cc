// Snapshots in the Raft core, driven by the TestCluster's snapshot "files"
// (the state machine is the applied entries; a snapshot encodes them):
// triggers, compaction, metadata, transfer to a far-behind follower in
// chunks, resumption, ignoring stale snapshots, and a crash at every step of
// the install order. Each test is named after the failure it prevents.
#include <gtest/gtest.h>

#include "raft/membership.h"
#include "tests/raft/test_cluster.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

constexpr TimePoint kFar = TimePoint::max();

void small_snapshots(Config& cfg) {
  cfg.snapshot_entries_max = 20;
  cfg.snapshot_keep_entries = 5;
  cfg.snapshot_timeout_ms = 400;
}

NodeId stable_leader(TestCluster& c, NodeId id = 1) {
  c.elect(id);
  c.advance(3s);
  EXPECT_TRUE(c.raft(id).is_leader());
  return id;
}

bool run_until(TestCluster& c, const std::function<bool()>& pred, Duration limit = 10s) {
  TimePoint end = c.now() + limit;
  while (!pred()) {
    if (c.now() >= end) return false;
    c.advance(10ms);
  }
  return true;
}

Index write_n(TestCluster& c, NodeId l, int n, const std::string& tag = "v") {
  Index last = 0;
  for (int i = 0; i < n; ++i) {
    auto r = c.raft(l).propose(tag + std::to_string(i), 0, c.local(l), kFar);
    EXPECT_TRUE(r.ok());
    last = *r;
    c.settle();
  }
  EXPECT_TRUE(run_until(c, [&] { return c.raft(l).commit_index() >= last; }));
  c.advance(200ms);
  return last;
}

// Node `id` applied exactly what the leader applied, in the same order.
void expect_same_state(TestCluster& c, NodeId id, NodeId leader) {
  const auto& a = c.node(id).applied;
  const auto& b = c.node(leader).applied;
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a.back().index, b.back().index);
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(a[i], b[i]) << "node " << id << " entry " << a[i].index;
  }
}

TEST(RaftSnapshot, LogGrowthTriggersSnapshotAndCompactionKeepsEntriesBehindIt) {
  TestCluster c(3, small_snapshots);
  NodeId l = stable_leader(c);
  write_n(c, l, 30);
  for (NodeId id : {1, 2, 3}) {
    auto& n = c.node(id);
    ASSERT_GE(n.snapshots_taken, 1u) << "node " << id;
    SnapshotMeta meta = n.disk->snapshot_meta();
    EXPECT_GE(meta.index, 20u);
    EXPECT_EQ(meta.term, c.raft(id).term());
    EXPECT_EQ(meta.membership.voters, (std::vector<NodeId>{1, 2, 3}));
    // Compacted, keeping snapshot_keep_entries entries at or below it.
    EXPECT_EQ(n.disk->first_index(), meta.index + 1 - 5);
    EXPECT_EQ(c.raft(id).snapshot(), meta);
  }
}

TEST(RaftSnapshot, TriggerSnapshotAsksBelowTheThresholds) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  write_n(c, l, 3);
  EXPECT_EQ(c.node(2).snapshots_taken, 0u);
  c.raft(2).trigger_snapshot();
  c.settle();
  EXPECT_EQ(c.node(2).snapshots_taken, 1u);
  EXPECT_EQ(c.node(2).disk->snapshot_meta().index, c.raft(2).applied_index());
}

TEST(RaftSnapshot, SnapshotMetaCarriesTheConfigurationAtItsIndex) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.add_node(4);
  auto idx = c.raft(l).add_learner(4, c.local(l));
  ASSERT_TRUE(idx.ok());
  write_n(c, l, 2);
  c.raft(2).trigger_snapshot();
  c.settle();
  SnapshotMeta meta = c.node(2).disk->snapshot_meta();
  ASSERT_GT(meta.index, *idx);
  EXPECT_EQ(meta.membership.learners, std::vector<NodeId>{4});
}

TEST(RaftSnapshot, FarBehindFollowerCatchesUpBySnapshot) {
  TestCluster c(3, small_snapshots);
  c.set_snapshot_chunk_bytes(64);  // many chunks
  NodeId l = stable_leader(c);
  c.crash(3);
  write_n(c, l, 60);
  ASSERT_GT(c.node(l).disk->first_index(), c.raft(l).commit_index() - 20);
  c.start_node(3);
  ASSERT_TRUE(run_until(c, [&] { return c.raft(3).applied_index() == c.raft(l).applied_index(); }));
  EXPECT_EQ(c.node(3).installs, 1u);
  expect_same_state(c, 3, l);
  // And it keeps replicating from the log afterwards.
  Index w = write_n(c, l, 3, "after");
  ASSERT_TRUE(run_until(c, [&] { return c.raft(3).applied_index() >= w; }));
  expect_same_state(c, 3, l);
}

TEST(RaftSnapshot, InterruptedTransferResumesFromTheAcknowledgedOffset) {
  TestCluster c(3, small_snapshots);
  c.set_snapshot_chunk_bytes(32);
  NodeId l = stable_leader(c);
  c.crash(3);
  write_n(c, l, 60);
  // Lose one chunk in the middle of the transfer, once.
  bool dropped = false;
  c.set_drop([&](const Message& m) {
    auto* box = std::get_if<SnapshotChunkMsg>(&m.body);
    const SnapshotChunk* ch = box ? &**box : nullptr;
    if (ch == nullptr || dropped || ch->offset < 5 * 32) return false;
    dropped = true;
    return true;
  });
  c.start_node(3);
  ASSERT_TRUE(run_until(c, [&] { return c.node(3).installs == 1; }));
  EXPECT_TRUE(dropped);
  size_t from_zero = 0;
  for (const Message& m : c.node(l).sent) {
    if (auto* ch = std::get_if<SnapshotChunkMsg>(&m.body)) from_zero += (*ch)->offset == 0;
  }
  EXPECT_EQ(from_zero, 1u) << "the transfer restarted from 0 instead of resuming";
  expect_same_state(c, 3, l);
}

TEST(RaftSnapshot, SnapshotAtOrBelowCommitIsIgnored) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  write_n(c, l, 5);
  Index commit = c.raft(2).commit_index();
  Membership m{.voters = {1, 2, 3}};
  c.raft(2).step(Message{1, l, 2, c.raft(2).term(),
                         SnapshotChunk{.index = commit,
                                       .index_term = c.raft(2).term(),
                                       .offset = 0,
                                       .total_bytes = 3,
                                       .last = true,
                                       .membership = m.encode(),
                                       .data = "abc"}},
                 c.local(2));
  Ready r;
  c.raft(2).take_ready(r);
  EXPECT_TRUE(!r.snapshot || r.snapshot->chunks.empty())
      << "a snapshot at the commit index was accepted";
  bool done = false;
  for (const OutMessage& om : r.messages) {
    if (auto* rep = std::get_if<SnapshotReply>(&om.msg.body)) done = rep->done;
  }
  EXPECT_TRUE(done);
}

// The driver's install spans disk writes, and a replica can win an election
// meanwhile (a candidate whose vote requests went out before the install
// began). The install finishing on a leader used to abort the process; it
// steps down instead, keeps its log, and the group goes on.
TEST(RaftSnapshot, InstallFinishingOnALeaderStepsDownInsteadOfCrashing) {
  TestCluster c(3, small_snapshots);
  NodeId l = stable_leader(c);
  Index last = write_n(c, l, 3);
  ASSERT_EQ(c.raft(l).commit_index(), last);
  SnapshotMeta meta{.index = last, .term = c.raft(l).term(), .membership = c.raft(l).membership()};
  c.raft(l).snapshot_installed(meta, c.local(l));
  EXPECT_FALSE(c.raft(l).is_leader());
  EXPECT_GE(c.raft(l).last_index(), last) << "the log continuing the snapshot is kept";
  // The group elects again and keeps committing on every replica.
  NodeId next = 0;
  ASSERT_TRUE(run_until(c, [&] {
    for (NodeId id : {1, 2, 3})
      if (c.raft(id).is_leader()) next = id;
    return next != 0;
  }));
  Index more = write_n(c, next, 2, "after");
  ASSERT_TRUE(run_until(c, [&] {
    for (NodeId id : {1, 2, 3})
      if (c.node(id).applied.empty() || c.node(id).applied.back().index < more) return false;
    return true;
  }));
  for (NodeId id : {1, 2, 3})
    expect_same_state(c, id, next);
}

TEST(RaftSnapshot, ChunkOfAnotherTransferRestartsFromZero) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  Term t = c.raft(2).term();
  Index far = c.raft(2).commit_index() + 100;
  Membership m{.voters = {1, 2, 3}};
  auto chunk = [&](Index index, uint64_t offset) {
    return Message{1, l, 2, t,
                   SnapshotChunk{.index = index,
                                 .index_term = t,
                                 .offset = offset,
                                 .total_bytes = 1000,
                                 .membership = m.encode(),
                                 .data = std::string(10, 'x')}};
  };
  Ready r;
  c.raft(2).step(chunk(far, 0), c.local(2));
  c.raft(2).take_ready(r);
  ASSERT_TRUE(r.snapshot);
  ASSERT_EQ(r.snapshot->chunks.size(), 1u);
  c.raft(2).snapshot_chunk_written(SnapshotMeta{far, t, m}, t, 10, c.local(2));
  // A chunk of a different snapshot (another index) in mid-file.
  c.raft(2).step(chunk(far + 1, 10), c.local(2));
  c.raft(2).take_ready(r);
  EXPECT_TRUE(!r.snapshot || r.snapshot->chunks.empty());
  bool restart = false;
  for (const OutMessage& om : r.messages) {
    if (auto* rep = std::get_if<SnapshotReply>(&om.msg.body)) {
      restart |= !rep->done && rep->next_offset == 0 && rep->index == far + 1;
    }
  }
  EXPECT_TRUE(restart) << "resumed a partial file of another snapshot";
  // The same transfer resumes where it was.
  c.raft(2).step(chunk(far, 10), c.local(2));
  c.raft(2).take_ready(r);
  ASSERT_TRUE(r.snapshot);
  EXPECT_EQ(r.snapshot->chunks.size(), 1u);
}

TEST(RaftSnapshot, CorruptFileIsNotInstalledAndTheTransferRestarts) {
  TestCluster c(3, small_snapshots);
  c.set_snapshot_chunk_bytes(64);
  NodeId l = stable_leader(c);
  c.crash(3);
  write_n(c, l, 60);
  bool flipped = false;
  c.set_drop([&](const Message& m) {
    auto* ch = std::get_if<SnapshotChunkMsg>(&m.body);
    if (ch != nullptr && !flipped && (*ch)->offset == 64) {
      flipped = true;
      const_cast<SnapshotChunk&>(**ch).data[0] ^= 1;  // bit rot on the wire
    }
    return false;
  });
  c.start_node(3);
  ASSERT_TRUE(run_until(c, [&] { return c.node(3).installs == 1; }));
  EXPECT_TRUE(flipped);
  expect_same_state(c, 3, l);
}

// A crash at each step of the install order leaves the follower with either
// its old state or the new one, never a mix, and it then catches up.
TEST(RaftSnapshot, CrashAtEveryInstallStepLeavesOldOrNewState) {
  for (int step = 1; step <= 3; ++step) {
    SCOPED_TRACE(step);
    TestCluster c(3, small_snapshots);
    c.set_snapshot_chunk_bytes(128);
    NodeId l = stable_leader(c);
    write_n(c, l, 3, "old");
    c.crash(3);
    write_n(c, l, 60);
    c.start_node(3);
    c.set_install_fault(step);
    ASSERT_TRUE(run_until(c, [&] { return !c.install_fault_pending(); }));
    c.crash(3);
    c.start_node(3);
    const auto& now_state = c.node(3).applied;
    SnapshotMeta meta = c.node(3).disk->snapshot_meta();
    if (step < 3) {
      // The old state: no snapshot, the old log replayed from its start.
      EXPECT_EQ(meta.index, 0u) << "reset record without a completed install";
      EXPECT_EQ(c.node(3).disk->first_index(), 1u);
      EXPECT_GE(c.node(3).disk->last_index(), 4u) << "the old log is gone";
      EXPECT_TRUE(now_state.empty()) << "applied something not in the old log";
    } else {
      ASSERT_GT(meta.index, 0u);
      ASSERT_FALSE(now_state.empty());
      EXPECT_EQ(now_state.back().index, meta.index) << "state machine not at the snapshot";
      EXPECT_EQ(c.node(3).disk->first_index(), meta.index + 1);
    }
    // Whatever it holds is a prefix of the leader's history.
    for (size_t i = 0; i < now_state.size(); ++i)
      ASSERT_EQ(now_state[i], c.node(l).applied[i]);
    ASSERT_TRUE(
        run_until(c, [&] { return c.raft(3).applied_index() == c.raft(l).applied_index(); }));
    expect_same_state(c, 3, l);
  }
}

}  // namespace
}  // namespace nori::raft
