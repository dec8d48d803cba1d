// Quiescence through the real driver (CoreHost: tick wheel, liveness pings,
// WAL, loopback TCP): many idle groups in three in-process nodes go quiet,
// the traffic drops to the per-core liveness pings, a proposal wakes one
// group, and the groups led by a stopped node elect new leaders. Counts, not
// timings, are asserted (the windows only give the counters time to move).
#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>

#include "tests/node/node_test_util.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

constexpr size_t kGroups = 120;

std::vector<GroupId> group_ids() {
  std::vector<GroupId> out;
  for (GroupId g = 1; g <= kGroups; ++g)
    out.push_back(g);
  return out;
}

// Sum of every sample of `name` (any labels) in a Prometheus text.
double metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) != 0 || line.size() <= name.size()) continue;
    const char next = line[name.size()];
    if (next != ' ' && next != '{') continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

double quiesced_groups(TestCluster& c) {
  double n = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c.up(i)) n += metric(c.node(i).metrics_text(), "raft_quiesced_groups");
  }
  return n;
}

bool wait_quiesced(TestCluster& c, double want, std::chrono::seconds within) {
  auto end = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < end) {
    if (quiesced_groups(c) >= want) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

uint64_t bytes_sent(TestCluster& c) {
  uint64_t n = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c.up(i)) n += c.node(i).metrics_snapshot().net_bytes_sent;
  }
  return n;
}

// Bytes per second all nodes send over `window` (normalized by the time
// that really passed between the two counter reads).
uint64_t idle_bytes_per_s(TestCluster& c, std::chrono::milliseconds window) {
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t before = bytes_sent(c);
  std::this_thread::sleep_for(window);
  const uint64_t after = bytes_sent(c);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<uint64_t>(static_cast<double>(after - before) / s);
}

void wait_all_leaders(TestCluster& c) {
  for (GroupId g : group_ids())
    ASSERT_GE(c.wait_leader(g, 20s), 0) << "group " << g;
}

TEST(NodeQuiesce, IdleGroupsStopHeartbeatingAndTrafficDropsToLivenessPings) {
  // The same cluster shape twice: quiescence off, then on; the idle traffic
  // of the second is the liveness pings (a few bytes per peer per
  // heartbeat), that of the first grows with the number of groups.
  uint64_t ticking = 0, quiet = 0;
  {
    TestCluster c("quiesce-off", 3, group_ids());
    for (size_t i = 0; i < 3; ++i) {
      RaftConfig cfg = c.config(i);
      cfg.quiesce = false;
      c.stop(i);
      c.start(i, cfg);
    }
    wait_all_leaders(c);
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(quiesced_groups(c), 0);
    ticking = idle_bytes_per_s(c, 1000ms);
  }
  {
    TestCluster c("quiesce-on", 3, group_ids());
    wait_all_leaders(c);
    // Every replica of every group: 3 x kGroups.
    ASSERT_TRUE(wait_quiesced(c, 3.0 * kGroups, 20s))
        << "quiesced replicas: " << quiesced_groups(c);
    quiet = idle_bytes_per_s(c, 1000ms);
    EXPECT_EQ(quiesced_groups(c), 3.0 * kGroups) << "a group woke while idle";
    double pings = 0;
    for (size_t i = 0; i < 3; ++i)
      pings += metric(c.node(i).metrics_text(), "raft_liveness_pings_total");
    EXPECT_GT(pings, 0);
  }
  std::printf("idle bytes/s sent by 3 nodes, %zu groups: ticking %llu, quiesced %llu\n", kGroups,
              static_cast<unsigned long long>(ticking), static_cast<unsigned long long>(quiet));
  // Quiet: what is left is the liveness pings, one heartbeat message with
  // one entry (~46 bytes with its frame) per peer per heartbeat_ms and core;
  // a slow machine sends fewer, never more. 64 bytes each is the budget.
  const uint64_t pings_max = 3 * 2 * (1000 / testing::node_config(1, {}, "", {}).heartbeat_ms + 2);
  EXPECT_LE(quiet, pings_max * 64) << "more than liveness pings while every group is quiet";
  // Ticking: 120 groups heartbeating every 50 ms to 2 peers, and replies:
  // ~18x the pings here at rest (half that on a loaded machine under ASan);
  // the gap grows with the number of groups.
  EXPECT_GT(ticking, 4 * quiet) << "idle bytes/s: ticking " << ticking << ", quiesced " << quiet;
}

TEST(NodeQuiesce, ProposalWakesQuiescedGroupOnEveryNode) {
  TestCluster c("quiesce-wake", 3, group_ids());
  wait_all_leaders(c);
  ASSERT_TRUE(wait_quiesced(c, 3.0 * kGroups, 20s));
  const GroupId g = 7;
  int l = c.wait_leader(g);
  ASSERT_GE(l, 0);
  auto idx = c.propose(static_cast<size_t>(l), g, "wake up");
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  // Applied on every replica (followers learn the commit from the woken
  // leader's rounds), then the group goes quiet again.
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.wait_applied(i, g, 1)) << "node " << i;
    EXPECT_EQ(c.applied(i, g).back().second, "wake up");
  }
  ASSERT_TRUE(c.read(static_cast<size_t>(l), g, ReadMode::kLease).ok());
  EXPECT_TRUE(wait_quiesced(c, 3.0 * kGroups, 20s));
}

TEST(NodeQuiesce, QuiescedFollowersElectWhenLeaderNodeStops) {
  TestCluster c("quiesce-fail", 3, group_ids());
  wait_all_leaders(c);
  ASSERT_TRUE(wait_quiesced(c, 3.0 * kGroups, 20s));
  std::vector<GroupId> led;
  for (GroupId g : group_ids()) {
    if (c.node(0).is_leader(g)) led.push_back(g);
  }
  ASSERT_FALSE(led.empty());
  c.stop(0);
  // Nodes 2 and 3 stop hearing node 1: its groups wake and elect.
  for (GroupId g : led) {
    int nl = c.wait_leader(g, 20s);
    ASSERT_GT(nl, 0) << "group " << g << " has no new leader";
  }
  auto idx = c.propose(static_cast<size_t>(c.wait_leader(led[0])), led[0], "after");
  EXPECT_TRUE(idx.ok()) << idx.error().to_string();
}

}  // namespace
}  // namespace nori::raft
