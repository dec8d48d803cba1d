// raft::Node over real WALs and real loopback TCP, three nodes in one process.
#include <gtest/gtest.h>

#include <fstream>

#include "raft/node/peer_pins.h"

#include "raft/memory_storage.h"
#include "raft/raft.h"
#include "tests/node/node_test_util.h"

namespace nori::raft {
namespace {

using testing::TestCluster;
using namespace std::chrono_literals;

TEST(RaftConfigTest, ValidateNamesTheBrokenField) {
  RaftConfig c = testing::node_config(1, {{1, "127.0.0.1", 7000}}, "/x", {1});
  EXPECT_TRUE(c.validate().ok());
  RaftConfig bad = c;
  bad.node_id = 2;
  auto st = bad.validate();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kInvalidArgument);
  EXPECT_NE(st.error().message().find("node_id 2 is not listed"), std::string::npos);
  bad = c;
  bad.election_timeout_min_ms = 60;
  st = bad.validate();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("election_timeout_min_ms"), std::string::npos);
  bad = c;
  bad.cluster_secret = "short";
  EXPECT_FALSE(bad.validate().ok());
  bad = c;
  bad.groups = {1, 1};
  EXPECT_FALSE(bad.validate().ok());
}

// The replicas of one group must not run the same election timer sequence:
// if they do, they time out in the same tick, each votes for itself and the
// vote splits again at every timeout (10,000 groups on 3 nodes never elected).
TEST(RaftConfigTest, ReplicasOfAGroupDrawDifferentElectionTimeouts) {
  const std::vector<PeerAddress> peers = {
      {1, "127.0.0.1", 7000}, {2, "127.0.0.1", 7010}, {3, "127.0.0.1", 7020}};
  const TimePoint now = base::BootClock::now();
  int same = 0;
  for (GroupId g = 1; g <= 100; ++g) {
    std::vector<TimePoint> deadlines;
    std::vector<std::unique_ptr<MemoryStorage>> stores;
    for (NodeId id : {NodeId{1}, NodeId{2}, NodeId{3}}) {
      RaftConfig c = testing::node_config(id, peers, "/x", {g});
      stores.push_back(std::make_unique<MemoryStorage>());
      auto r = Raft::create(c.group_config(g, 0), *stores.back(), now);
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      deadlines.push_back((*r)->next_tick());
    }
    if (deadlines[0] == deadlines[1] || deadlines[1] == deadlines[2] ||
        deadlines[0] == deadlines[2])
      ++same;
  }
  // Independent draws over a 300 ms span at ns resolution practically never
  // coincide; identical sequences coincide for every group.
  EXPECT_LE(same, 2);
}

TEST(NodeTest, ProposalsCommitAndApplyInOrderOnEveryNode) {
  TestCluster c("apply", 3, {1, 2});
  for (GroupId g : {GroupId{1}, GroupId{2}}) {
    int l = c.wait_leader(g);
    ASSERT_GE(l, 0);
    Index last = 0;
    for (int k = 0; k < 50; ++k) {
      auto r = c.propose(l, g, fmt::format("g{}-{}", g, k));
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      EXPECT_GT(*r, last);
      last = *r;
    }
    for (size_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(c.wait_applied(i, g, 50)) << "node " << i + 1;
      auto log = c.applied(i, g);
      for (int k = 0; k < 50; ++k)
        EXPECT_EQ(log[k].second, fmt::format("g{}-{}", g, k));
      for (size_t k = 1; k < log.size(); ++k)
        EXPECT_LT(log[k - 1].first, log[k].first);
    }
  }
}

TEST(NodeTest, FollowerProposalFailsWithLeaderHint) {
  TestCluster c("hint", 3, {1});
  int l = c.wait_leader(1);
  ASSERT_GE(l, 0);
  ASSERT_TRUE(c.propose(l, 1, "x").ok());  // everyone knows the leader after a commit
  size_t f = (l + 1) % 3;
  auto end = std::chrono::steady_clock::now() + 5s;
  while (c.node(f).leader(1) == kNoNode && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(5ms);
  auto r = c.propose(f, 1, "y");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kNotLeader);
  EXPECT_EQ(r.error().hint(), static_cast<uint64_t>(l + 1));
  EXPECT_FALSE(r.error().may_have_taken_effect());
}

TEST(NodeTest, ReadsInEveryModeAreGrantedOnTheLeader) {
  TestCluster c("reads", 3, {1});
  int l = c.wait_leader(1);
  ASSERT_GE(l, 0);
  ASSERT_TRUE(c.propose(l, 1, "x").ok());
  EXPECT_TRUE(c.read(l, 1, ReadMode::kReadIndex).ok());
  EXPECT_TRUE(c.read(l, 1, ReadMode::kLease).ok());
  EXPECT_TRUE(c.read(l, 1, ReadMode::kStaleNoGuarantee).ok());
  size_t f = (l + 1) % 3;
  EXPECT_TRUE(c.read(f, 1, ReadMode::kStaleNoGuarantee).ok());
  auto st = c.read(f, 1, ReadMode::kReadIndex);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kNotLeader);
}

TEST(NodeTest, RestartedNodeRecoversItsLogAndCatchesUp) {
  TestCluster c("restart", 3, {1});
  int l = c.wait_leader(1);
  ASSERT_GE(l, 0);
  for (int k = 0; k < 20; ++k)
    ASSERT_TRUE(c.propose(l, 1, fmt::format("a{}", k)).ok());
  size_t f = (l + 1) % 3;
  ASSERT_TRUE(c.wait_applied(f, 1, 20));
  const uint64_t inc = c.node(f).incarnation();
  c.stop(f);
  for (int k = 0; k < 20; ++k)
    ASSERT_TRUE(c.propose(l, 1, fmt::format("b{}", k)).ok());  // a majority is still up
  c.wipe_applied(f);
  c.start(f);
  EXPECT_EQ(c.node(f).incarnation(), inc);  // same data directory, same incarnation
  // The restarted node replays its own log (applied = 0) and learns the rest.
  ASSERT_TRUE(c.wait_applied(f, 1, 40));
  auto log = c.applied(f, 1);
  EXPECT_EQ(log[0].second, "a0");
  EXPECT_EQ(log[39].second, "b19");
}

TEST(NodeTest, ProposalsFailFastWithoutAQuorum) {
  TestCluster c("noquorum", 3, {1});
  int l = c.wait_leader(1);
  ASSERT_GE(l, 0);
  ASSERT_TRUE(c.propose(l, 1, "x").ok());
  c.stop((l + 1) % 3);
  c.stop((l + 2) % 3);
  // Check-quorum makes the lone leader step down within an election timeout;
  // from then on a proposal fails at once (not leader / no quorum), never hangs.
  base::Result<Index> r = Index{0};
  auto end = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < end) {
    r = c.propose(l, 1, "y");
    if (!r.ok() && r.error().kind() != base::ErrorKind::kOutcomeUnknown) break;
  }
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kNoQuorum) << r.error().to_string();
  EXPECT_FALSE(r.error().may_have_taken_effect());
}

TEST(NodeTest, WipedDataDirectoryIsRefusedWithoutBootstrap) {
  TestCluster c("wiped", 1, {1});
  RaftConfig cfg = c.config(0);
  c.stop(0);
  cfg.data_dir += "-wiped";
  cfg.bootstrap = false;
  auto n = Node::open(cfg);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().kind(), base::ErrorKind::kInvalidArgument);
  std::filesystem::remove_all(cfg.data_dir);
}

TEST(NodeTest, PeerPinsSurviveARestartAndACorruptFileIsReported) {
  const std::string path = std::filesystem::temp_directory_path() / "nori-peer-pins-test";
  std::filesystem::remove(path);
  {
    PeerPins pins(path);
    ASSERT_TRUE(pins.load().ok());  // no file: nothing pinned
    EXPECT_EQ(pins.of(2), 0u);
    EXPECT_TRUE(*pins.pin(2, 77));
    EXPECT_FALSE(*pins.pin(2, 78));  // first seen wins: a new incarnation is not re-pinned
    EXPECT_TRUE(*pins.pin(3, 99));
    ASSERT_TRUE(pins.unpin(3).ok());
  }
  PeerPins again(path);
  ASSERT_TRUE(again.load().ok());
  EXPECT_EQ(again.of(2), 77u);
  EXPECT_EQ(again.of(3), 0u);
  { std::ofstream(path) << "2 77\nnot a pin\n"; }
  auto st = again.load();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kCorruption);
  std::filesystem::remove(path);
}

TEST(NodeTest, MetricsAreRenderedInPrometheusText) {
  TestCluster c("metrics", 1, {1});
  ASSERT_GE(c.wait_leader(1), 0);
  ASSERT_TRUE(c.propose(0, 1, "x").ok());
  std::string text = c.node(0).metrics_text();
  EXPECT_NE(text.find("raft_commit_ms_bucket"), std::string::npos);
  EXPECT_NE(text.find("raft_role{group=\"1\"} 2"), std::string::npos) << text.substr(0, 2000);
  EXPECT_NE(text.find("raft_elections_total"), std::string::npos);
}

}  // namespace
}  // namespace nori::raft
