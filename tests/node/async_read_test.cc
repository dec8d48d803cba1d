// Old log entries are read through the WAL's io_uring path, not a blocking
// read on the reactor (raft/node/wal_storage.h, raft/storage.h
// "Asynchronous reads"). Each test is named after the failure it proves
// handled.
#include <gtest/gtest.h>

#include "tests/node/node_test_util.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

// Entries of group 1 written while one follower is down: ~300 KiB, far
// beyond the Raft cache below, so after a restart (empty WAL chunk cache)
// every one of them must be read back from the segment files.
constexpr int kBacklog = 300;
constexpr size_t kPayloadBytes = 1024;
constexpr uint64_t kTinyRaftCacheBytes = 4096;

// The value of an unlabelled counter in Prometheus text (0 if absent).
uint64_t counter_value(const std::string& text, const std::string& name) {
  const std::string key = "\n" + name + " ";
  size_t at = text.find(key);
  if (at == std::string::npos) return 0;
  return std::stoull(text.substr(at + key.size()));
}

TEST(NodeAsyncRead, LaggingFollowerCatchesUpFromEvictedEntriesWhileAnotherGroupCommits) {
  TestCluster c("asyncread", 3, {1, 2});
  auto tiny_cache = [&c](size_t i) {
    RaftConfig cfg = c.config(i);
    cfg.log_cache_bytes_max = kTinyRaftCacheBytes;
    return cfg;
  };
  for (size_t i = 0; i < 3; ++i) {
    c.stop(i);
    c.start(i, tiny_cache(i));
  }
  int l = c.wait_leader(1);
  ASSERT_GE(l, 0);
  ASSERT_TRUE(c.propose(l, 1, "first").ok());
  const size_t f = (l + 1) % 3;
  ASSERT_TRUE(c.wait_applied(f, 1, 1));
  c.stop(f);
  for (int k = 0; k < kBacklog; ++k) {
    auto r = c.propose(l, 1, std::string(kPayloadBytes, static_cast<char>('a' + k % 26)));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
  }
  // Every node restarts: the WAL's chunk caches and the Raft caches start
  // empty, so the new leader applies its own log and sends the follower its
  // backlog from the segment files only.
  for (size_t i = 0; i < 3; ++i) {
    if (c.up(i)) c.stop(i);
  }
  for (size_t i = 0; i < 3; ++i) {
    c.wipe_applied(i);
    c.start(i, tiny_cache(i));
  }
  // Group 2 shares the core (cores = 1) and keeps committing meanwhile.
  int l2 = c.wait_leader(2);
  ASSERT_GE(l2, 0);
  int committed2 = 0;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (c.applied(f, 1).size() < kBacklog + 1 && std::chrono::steady_clock::now() < deadline) {
    auto r = c.propose(l2, 2, fmt::format("g2-{}", committed2));
    if (r.ok()) {
      ++committed2;
    } else {
      l2 = std::max(c.wait_leader(2), 0);  // leadership moved: follow it
    }
  }
  ASSERT_EQ(c.applied(f, 1).size(), size_t{kBacklog + 1}) << "the follower did not catch up";
  EXPECT_GT(committed2, 0) << "group 2 stalled while group 1 read its log";
  auto log = c.applied(f, 1);
  EXPECT_EQ(log[0].second, "first");
  for (int k = 0; k < kBacklog; ++k) {
    ASSERT_EQ(log[k + 1].second, std::string(kPayloadBytes, static_cast<char>('a' + k % 26)));
    ASSERT_LT(log[k].first, log[k + 1].first);
  }
  // The backlog came from disk, through the storage's asynchronous fetches
  // (raft_storage_fetches_total; the start-up scan of configuration entries
  // does not count there).
  uint64_t fetches = 0;
  for (size_t i = 0; i < 3; ++i)
    fetches += counter_value(c.node(i).metrics_text(), "raft_storage_fetches_total");
  EXPECT_GT(fetches, 0u) << "no entry was fetched from the WAL";
  // The leader's own replay after the restart applied it too.
  int nl = c.wait_leader(1);
  ASSERT_GE(nl, 0);
  ASSERT_TRUE(c.wait_applied(static_cast<size_t>(nl), 1, kBacklog + 1));
}

}  // namespace
}  // namespace nori::raft
