// The Raft core over a storage that reads old entries asynchronously
// (raft/storage.h, "Asynchronous reads"): entries() answers kUnavailable and
// starts one fetch; the driver completes it later and calls
// Raft::entries_fetched(). MemoryStorage's delayed-read mode models it.
// Each test is named after the failure it proves handled.
#include <gtest/gtest.h>

#include <set>

#include "raft/raft.h"
#include "tests/raft/test_cluster.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

constexpr TimePoint kFar = TimePoint::max();
// Small enough that the leader's cache drops most of a 200-entry backlog.
constexpr uint64_t kSmallCacheBytes = 1000;

NodeId stable_leader(TestCluster& c, NodeId id = 1) {
  c.elect(id);
  EXPECT_TRUE(c.raft(id).is_leader());
  c.advance(3s);
  EXPECT_TRUE(c.raft(id).is_leader());
  return id;
}

void propose_many(TestCluster& c, NodeId id, int n) {
  for (int i = 0; i < n; ++i) {
    auto r = c.raft(id).propose(std::string(50, static_cast<char>('a' + i % 26)), 0, c.now(), kFar);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    if (i % 20 == 0) c.settle();
  }
  c.settle();
}

// Completes `id`'s pending fetch (if any), re-drives its Raft and lets the
// cluster settle, the way the node's driver does when a read completes.
// Returns false if no fetch was pending.
bool complete_one_fetch(TestCluster& c, NodeId id) {
  if (!c.node(id).disk->complete_fetch()) return false;
  c.raft(id).entries_fetched(c.local(id));
  c.settle();
  return true;
}

enum class LeaderReads { kDelayed, kFailing };

// Node 3 is down while leader 1 commits 200 entries (its small cache keeps
// few of them), then restarts while the leader's disk delays or fails every
// read. No time has passed since the restart. Returns the leader.
NodeId restart_lagging_follower(TestCluster& c, LeaderReads reads) {
  NodeId l = stable_leader(c);
  c.crash(3);
  propose_many(c, l, 200);
  if (reads == LeaderReads::kDelayed) {
    c.node(l).disk->set_delay_reads(true);
  } else {
    c.node(l).disk->set_fail_reads(true);
  }
  c.start_node(3);
  return l;
}

TEST(RaftAsyncFetch, LaggingFollowerCatchesUpOnlyAfterFetchCompletes) {
  TestCluster c(3, [](Config& cfg) { cfg.log_cache_bytes_max = kSmallCacheBytes; });
  NodeId l = restart_lagging_follower(c, LeaderReads::kDelayed);
  ASSERT_GT(c.raft(l).commit_index(), c.node(3).disk->last_index() + 100);
  c.node(l).sent.clear();
  // Heartbeat replies keep asking; the storage has one fetch under way and
  // nothing old can be sent before it completes.
  c.advance(1s);
  EXPECT_TRUE(c.node(l).disk->fetch_pending());
  EXPECT_EQ(c.node(l).disk->fetches_started(), 1u) << "a second fetch started while one ran";
  EXPECT_TRUE(c.appends_with_entries(l, 3).empty()) << "entries sent before they were read";
  EXPECT_LT(c.raft(3).last_index(), c.raft(l).last_index());
  // Each completed fetch moves the follower forward at once, with no tick.
  int fetches = 0;
  while (complete_one_fetch(c, l)) {
    ASSERT_LT(++fetches, 1000) << "catch-up does not converge";
  }
  EXPECT_GT(fetches, 0);
  EXPECT_EQ(c.node(3).disk->log(), c.node(l).disk->log());
  EXPECT_EQ(c.raft(3).commit_index(), c.raft(l).commit_index());
}

TEST(RaftAsyncFetch, FetchedEntriesAreSentOnceAndInOrder) {
  TestCluster c(3, [](Config& cfg) { cfg.log_cache_bytes_max = kSmallCacheBytes; });
  NodeId l = restart_lagging_follower(c, LeaderReads::kDelayed);
  c.advance(1s);  // the follower's position is known; a fetch is pending
  ASSERT_TRUE(c.node(l).disk->fetch_pending());
  c.node(l).sent.clear();
  while (c.node(l).disk->complete_fetch()) {
    // A late duplicate of the completion must not send anything twice.
    c.raft(l).entries_fetched(c.local(l));
    c.raft(l).entries_fetched(c.local(l));
    c.settle();
  }
  ASSERT_EQ(c.raft(3).last_index(), c.raft(l).last_index());
  std::set<Index> seen;
  Index last = 0;
  for (const Append* a : c.appends_with_entries(l, 3)) {
    for (const Entry& e : a->entries) {
      EXPECT_TRUE(seen.insert(e.index).second) << "entry " << e.index << " sent twice";
      EXPECT_EQ(e.index, last + 1 == 1 ? e.index : last + 1) << "sends out of order";
      last = e.index;
    }
  }
  EXPECT_EQ(last, c.raft(l).last_index());
}

TEST(RaftAsyncFetch, FetchCompletingAfterStepDownSendsNothing) {
  TestCluster c(3, [](Config& cfg) { cfg.log_cache_bytes_max = kSmallCacheBytes; });
  NodeId l = restart_lagging_follower(c, LeaderReads::kDelayed);
  c.advance(1s);
  ASSERT_TRUE(c.node(l).disk->fetch_pending());
  // The leader is cut off: the others elect a new one in a higher term and
  // the old leader steps down (check quorum) before its read completes.
  const Term old_term = c.raft(l).term();
  c.isolate(l);
  c.advance(3s);
  ASSERT_FALSE(c.raft(l).is_leader());
  NodeId nl = c.leader();
  ASSERT_NE(nl, l);
  ASSERT_GT(c.raft(nl).term(), old_term);
  c.node(l).sent.clear();
  ASSERT_TRUE(c.node(l).disk->complete_fetch());
  c.raft(l).entries_fetched(c.local(l));
  c.settle();
  EXPECT_TRUE(c.appends_with_entries(l, 3).empty()) << "a deposed leader used a stale fetch";
  EXPECT_EQ(count_if(c.node(l).sent.begin(), c.node(l).sent.end(),
                     [](const Message& m) { return m.type() == MessageType::kAppend; }),
            0);
}

TEST(RaftAsyncFetch, RestartAppliesCommittedEntriesOnlyAfterFetchCompletes) {
  TestCluster c(3);
  NodeId l = stable_leader(c);
  c.crash(3);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(c.raft(l).propose("v" + std::to_string(i), 0, c.now(), kFar).ok());
  }
  c.advance(100ms);
  c.heal();
  c.start_node(3);  // construction reads synchronously (raft/storage.h)
  c.node(3).disk->set_delay_reads(true);
  c.advance(1s);  // its log is on "disk": applying needs a fetch
  EXPECT_TRUE(c.node(3).applied.empty()) << "applied entries that were never read";
  ASSERT_TRUE(c.node(3).disk->fetch_pending());
  // Completing the fetch is enough: no tick needed to resume applying.
  int fetches = 0;
  while (complete_one_fetch(c, 3)) {
    ASSERT_LT(++fetches, 100);
  }
  EXPECT_GT(fetches, 0);
  EXPECT_EQ(c.node(3).applied.size(), c.raft(l).commit_index());
  for (size_t i = 0; i < c.node(3).applied.size(); ++i) {
    EXPECT_EQ(c.node(3).applied[i].index, i + 1) << "applied out of order";
  }
}

TEST(RaftAsyncFetch, ReadErrorStillRetriesAtTheNextTrigger) {
  // kIo (not kUnavailable) keeps the old behaviour: no re-drive is expected,
  // the next heartbeat reply / tick retries.
  TestCluster c(3, [](Config& cfg) { cfg.log_cache_bytes_max = kSmallCacheBytes; });
  NodeId l = restart_lagging_follower(c, LeaderReads::kFailing);
  c.advance(1s);
  EXPECT_LT(c.raft(3).last_index(), c.raft(l).last_index());
  c.node(l).disk->set_fail_reads(false);
  c.advance(3s);
  EXPECT_EQ(c.node(3).disk->log(), c.node(l).disk->log());
}

}  // namespace
}  // namespace nori::raft
