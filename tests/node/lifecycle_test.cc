// Group lifecycle and node-wide membership end to end, in real raft::Node
// objects (real WALs, snapshot files, loopback TCP, one process): a removed
// group is gone for good (not recovered, its files deleted), an id created
// again starts empty, removal fails the calls waiting on the group, an
// unforced removal of a live replica is refused, and add_node / remove_node
// change every group even where another node leads. Each test is named after
// the failure it proves handled.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "raft/node/node.h"
#include "raft/node/node_control.h"
#include "runtime/base/bytes.h"
#include "tests/node/list_snapshot.h"
#include "tests/node/node_test_util.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using base::ErrorKind;
using nori::testing::free_port_block;
using testing::fresh_dir;
using testing::node_config;

constexpr size_t kSlots = 4;  // nodes 1..3 bootstrap, 4 may join

// Per node, per group: the commands applied; a snapshot is that list.
struct Machines {
  std::mutex mu;
  std::map<GroupId, std::vector<std::pair<Index, std::string>>> state;
};

class Cluster {
 public:
  Cluster(const std::string& name, std::vector<GroupId> groups)
      : root_(fresh_dir(name)), groups_(std::move(groups)) {
    const uint16_t base = free_port_block(kSlots);
    for (size_t i = 0; i < kSlots; ++i) {
      addrs_.push_back({static_cast<NodeId>(i + 1), "127.0.0.1", static_cast<uint16_t>(base + i)});
      machines_.push_back(std::make_unique<Machines>());
    }
    nodes_.resize(kSlots);
  }
  ~Cluster() {
    for (auto& n : nodes_)
      n.reset();
    std::filesystem::remove_all(root_);
  }

  std::string dir(size_t i) const { return root_ + "/n" + std::to_string(i + 1); }
  RaftConfig config(size_t i, const std::vector<NodeId>& peers, bool join = false) const {
    std::vector<PeerAddress> list;
    for (NodeId id : peers)
      list.push_back(addrs_[id - 1]);
    RaftConfig c = node_config(static_cast<NodeId>(i + 1), list, dir(i), groups_);
    c.join = join;
    c.snapshot_keep_entries = 2;
    c.snapshot_timeout_ms = 400;
    c.member_change_timeout_ms = 20'000;
    return c;
  }
  std::string address(size_t i) const {
    return fmt::format("{}:{}", addrs_[i].host, addrs_[i].port);
  }
  void start(size_t i, RaftConfig cfg) {
    Machines* m = machines_[i].get();
    {
      std::lock_guard lk(m->mu);
      m->state.clear();  // in memory: the node replays its log
    }
    NodeCallbacks cb;
    cb.group_hooks = [m](GroupId g) {
      GroupHooks h;
      h.apply = [m, g](Index idx, std::string_view data) {
        std::lock_guard lk(m->mu);
        m->state[g].emplace_back(idx, std::string(data));
      };
      h.capture_snapshot = [m, g]() -> base::Result<std::unique_ptr<SnapshotView>> {
        std::lock_guard lk(m->mu);
        return std::unique_ptr<SnapshotView>(std::make_unique<testing::ListView>(m->state[g]));
      };
      h.restore_snapshot = [m, g](snapshot::SnapshotSource& src) -> base::Status {
        NORI_ASSIGN_OR_RETURN(testing::AppliedList s, testing::read_list_snapshot(src, 4096));
        std::lock_guard lk(m->mu);
        m->state[g] = std::move(s);
        return {};
      };
      return h;
    };
    auto n = Node::open(std::move(cfg), std::move(cb));
    ASSERT_TRUE(n.ok()) << n.error().to_string();
    nodes_[i] = std::move(n).value();
  }
  void start_bootstrap() {
    for (size_t i = 0; i < 3; ++i)
      start(i, config(i, {1, 2, 3}));
  }
  void stop(size_t i) { nodes_[i].reset(); }
  bool up(size_t i) const { return nodes_[i] != nullptr; }
  Node& node(size_t i) { return *nodes_[i]; }

  int wait_leader(GroupId g, std::chrono::milliseconds within = 10s) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      for (size_t i = 0; i < kSlots; ++i) {
        if (up(i) && nodes_[i]->is_leader(g)) return static_cast<int>(i);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  base::Result<Index> propose(size_t i, GroupId g, std::string data) {
    Node& n = node(i);
    return n.run(g, [&n, g, data]() { return n.propose(g, data); });
  }
  Index write(GroupId g, const std::string& data) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      int l = wait_leader(g);
      if (l < 0) break;
      auto r = propose(static_cast<size_t>(l), g, data);
      if (r.ok()) return *r;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "could not write " << data << " to group " << g;
    return 0;
  }
  base::Status remove_group(size_t i, GroupId g, bool force = false) {
    Node& n = node(i);
    return n.run(g, [&n, g, force]() { return n.remove_group(g, force); });
  }
  base::Status create_group(size_t i, GroupId g) {
    Node& n = node(i);
    return n.run(g, [&n, g]() { return n.create_group(g); });
  }
  Membership membership(size_t i, GroupId g) {
    Node& n = node(i);
    auto m = n.run(g, [&n, g]() { return n.membership(g); });
    EXPECT_TRUE(m.ok()) << m.error().to_string();
    return m.ok() ? *m : Membership{};
  }
  // Moves each group's leadership to `want(g)` (retrying while elections run).
  void place_leaders(const std::function<size_t(GroupId)>& want) {
    for (GroupId g : groups_) {
      const size_t target = want(g);
      for (int attempt = 0; attempt < 100 && wait_leader(g) != static_cast<int>(target);
           ++attempt) {
        int l = wait_leader(g);
        ASSERT_GE(l, 0);
        Node& n = node(static_cast<size_t>(l));
        const NodeId to = static_cast<NodeId>(target + 1);
        (void)n.run(g, [&n, g, to]() { return n.transfer_leader(g, to); });
        std::this_thread::sleep_for(50ms);
      }
      ASSERT_EQ(wait_leader(g), static_cast<int>(target)) << "group " << g;
    }
  }
  std::vector<std::pair<Index, std::string>> state(size_t i, GroupId g) {
    std::lock_guard lk(machines_[i]->mu);
    return machines_[i]->state[g];
  }
  bool has_applied(size_t i, GroupId g, const std::string& data,
                   std::chrono::milliseconds within = 15s) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      for (const auto& [idx, d] : state(i, g)) {
        if (d == data) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  const std::vector<GroupId>& groups() const { return groups_; }

 private:
  std::string root_;
  std::vector<GroupId> groups_;
  std::vector<PeerAddress> addrs_;
  std::vector<std::unique_ptr<Machines>> machines_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

bool snapshot_dir_exists(const std::string& node_dir, GroupId g) {
  return std::filesystem::exists(fmt::format("{}/snapshots/{}", node_dir, g));
}

bool has_snapshot_file(const std::string& node_dir, GroupId g) {
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator(fmt::format("{}/snapshots/{}", node_dir, g), ec)) {
    if (e.path().extension() == ".snap") return true;
  }
  return false;
}

// Node-control messages come from peers: every length and value is checked,
// and anything malformed is refused, never trusted.
TEST(NodeControl, MessagesRoundTripAndMalformedOnesAreRefused) {
  MemberRequestMsg req{77, 5, true, 1, 4, "127.0.0.1:7000"};
  const std::string rb = encode_member_request(req);
  ASSERT_EQ(*node_control_kind(rb), NodeControlKind::kMemberRequest);
  auto r = decode_member_request(rb);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->request_id, 77u);
  EXPECT_EQ(r->group, 5u);
  EXPECT_TRUE(r->adding);
  EXPECT_EQ(r->wait, 1);
  EXPECT_EQ(r->node, 4u);
  EXPECT_EQ(r->address, "127.0.0.1:7000");
  const std::string pb =
      encode_member_reply({9, base::Error(ErrorKind::kNotLeader, "not the leader", /*hint=*/3)});
  auto p = decode_member_reply(pb);
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  ASSERT_FALSE(p->status.ok());
  EXPECT_EQ(p->status.error().kind(), ErrorKind::kNotLeader);
  EXPECT_EQ(p->status.error().hint(), 3u);
  EXPECT_EQ(p->status.error().message(), "not the leader");
  auto okr = decode_member_reply(encode_member_reply({10, base::Status{}}));
  ASSERT_TRUE(okr.ok());
  EXPECT_TRUE(okr->status.ok());
  // Every truncation of either message is refused.
  for (size_t n = 0; n < rb.size(); ++n)
    EXPECT_FALSE(decode_member_request(rb.substr(0, n)).ok()) << n;
  for (size_t n = 0; n < pb.size(); ++n)
    EXPECT_FALSE(decode_member_reply(pb.substr(0, n)).ok()) << n;
  EXPECT_FALSE(decode_member_request(rb + "x").ok()) << "trailing bytes";
  // Values out of range: the wait mode (byte 18), the error kind (byte 10).
  std::string bad = rb;
  bad[18] = 7;
  EXPECT_FALSE(decode_member_request(bad).ok());
  bad = pb;
  bad[10] = static_cast<char>(200);
  EXPECT_FALSE(decode_member_reply(bad).ok());
  EXPECT_FALSE(node_control_kind("").ok());
  EXPECT_FALSE(node_control_kind(std::string(1, '\x09')).ok());
  // An address longer than the bound is refused on decode.
  std::string longer;
  base::ByteWriter w(longer);
  w.u8(static_cast<uint8_t>(NodeControlKind::kMemberRequest));
  w.u64(1);
  w.u64(1);
  w.u8(1);
  w.u8(0);
  w.u64(4);
  w.length_prefixed(std::string(kAddressBytesMax + 1, 'a'));
  auto lr = decode_member_request(longer);
  ASSERT_FALSE(lr.ok());
  EXPECT_EQ(lr.error().kind(), ErrorKind::kProtocol);
}

// A one-node cluster: the node is the group's only member, so an unforced
// removal is allowed.
TEST(NodeLifecycle, RemovedGroupIsNotRecoveredAfterRestart) {
  Cluster c("lifecycle-restart", {1, 2});
  c.start(0, c.config(0, {1}));
  for (int k = 0; k < 10; ++k) {
    ASSERT_GT(c.write(1, "g1-" + std::to_string(k)), 0u);
    ASSERT_GT(c.write(2, "g2-" + std::to_string(k)), 0u);
  }
  // A snapshot file exists for group 1, so its log is compacted behind it.
  {
    Node& n = c.node(0);
    ASSERT_TRUE(n.run(1, [&n]() { return n.trigger_snapshot(1); }).ok());
    auto end = std::chrono::steady_clock::now() + 10s;
    while (!has_snapshot_file(c.dir(0), 1) && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(has_snapshot_file(c.dir(0), 1));
  }
  base::Status st = c.remove_group(0, 1);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  EXPECT_FALSE(c.node(0).has_group(1));
  EXPECT_FALSE(snapshot_dir_exists(c.dir(0), 1)) << "its snapshot files are deleted";
  auto gone = c.propose(0, 1, "after");
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().kind(), ErrorKind::kNotFound);
  ASSERT_GT(c.write(2, "g2-after"), 0u) << "the other group goes on";

  // Restart without group 1 in the configuration: the WAL still holds its
  // old records, but the durable remove record voids them.
  c.stop(0);
  RaftConfig cfg = c.config(0, {1});
  cfg.groups = {2};
  c.start(0, cfg);
  EXPECT_FALSE(c.node(0).has_group(1)) << "a removed group came back after a restart";
  ASSERT_TRUE(c.node(0).has_group(2));
  EXPECT_TRUE(c.has_applied(0, 2, "g2-after")) << "group 2 recovered its log";
  EXPECT_TRUE(c.state(0, 1).empty()) << "nothing of group 1 was replayed";
}

// An application that keeps listing a retired group in RaftConfig::groups
// must not get it back, empty, at the next restart: only create_group does
// that.
TEST(NodeLifecycle, RemovedGroupListedInConfigIsNotCreatedAgainAtRestart) {
  Cluster c("lifecycle-listed", {1, 2});
  c.start(0, c.config(0, {1}));
  ASSERT_GT(c.write(1, "g1"), 0u);
  ASSERT_GT(c.write(2, "g2"), 0u);
  ASSERT_TRUE(c.remove_group(0, 1).ok());
  c.stop(0);
  c.start(0, c.config(0, {1}));  // groups = {1, 2} still
  EXPECT_FALSE(c.node(0).has_group(1)) << "a removed group came back from the config";
  EXPECT_TRUE(c.node(0).has_group(2));
  // create_group takes it off the removed list: from then on it is an
  // ordinary group again, recovered from the WAL.
  base::Status st = c.create_group(0, 1);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  ASSERT_GT(c.write(1, "g1-again"), 0u);
  c.stop(0);
  c.start(0, c.config(0, {1}));
  EXPECT_TRUE(c.node(0).has_group(1));
  EXPECT_TRUE(c.has_applied(0, 1, "g1-again"));
}

TEST(NodeLifecycle, RecreatedGroupStartsEmpty) {
  Cluster c("lifecycle-recreate", {1});
  c.start(0, c.config(0, {1}));
  Index last = 0;
  for (int k = 0; k < 20; ++k)
    last = c.write(1, "old-" + std::to_string(k));
  ASSERT_GT(last, 20u);
  ASSERT_NE(c.node(0).metrics_text().find("raft_role{group=\"1\"} 2"), std::string::npos);
  ASSERT_TRUE(c.remove_group(0, 1).ok());
  // The removed group leaves /metrics (it was reported as a follower, 0).
  EXPECT_EQ(c.node(0).metrics_text().find("raft_role{group=\"1\"}"), std::string::npos)
      << "a removed group is still reported";
  base::Status st = c.create_group(0, 1);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  const Index first_new = c.write(1, "new-0");
  EXPECT_NE(c.node(0).metrics_text().find("raft_role{group=\"1\"} 2"), std::string::npos);
  EXPECT_LT(first_new, last) << "the new group continued the old log";
  EXPECT_LE(first_new, 3u) << "a new group's first command comes right after its no-op";
  // The application saw the old commands, then only the new group's.
  auto applied = c.state(0, 1);
  ASSERT_FALSE(applied.empty());
  EXPECT_EQ(applied.back().second, "new-0");

  // After a restart the group recovers only its new life.
  c.stop(0);
  c.start(0, c.config(0, {1}));
  ASSERT_TRUE(c.has_applied(0, 1, "new-0"));
  for (const auto& [idx, d] : c.state(0, 1)) {
    EXPECT_EQ(d.rfind("old-", 0), std::string::npos) << "replayed an entry of the removed group";
  }
}

TEST(NodeLifecycle, RemoveGroupFailsItsWaitersWithShuttingDown) {
  Cluster c("lifecycle-waiters", {1});
  // Slow elections: the leader keeps leading (check-quorum steps it down
  // only after an election timeout) while its followers are gone.
  for (size_t i = 0; i < 3; ++i) {
    RaftConfig cfg = c.config(i, {1, 2, 3});
    cfg.election_timeout_min_ms = 1500;
    cfg.election_timeout_max_ms = 2500;
    c.start(i, cfg);
  }
  const int l = c.wait_leader(1);
  ASSERT_GE(l, 0);
  const size_t leader = static_cast<size_t>(l);
  ASSERT_GT(c.write(1, "warm"), 0u);
  // The followers go: a proposal and a read-index on the leader can only wait.
  for (size_t i = 0; i < 3; ++i) {
    if (i != leader) c.stop(i);
  }
  Node& n = c.node(leader);
  std::atomic<bool> proposal_done{false}, read_done{false};
  base::Result<Index> proposal = base::Error(ErrorKind::kCancelled, "not run");
  base::Status read = base::Error(ErrorKind::kCancelled, "not run");
  std::thread p([&] {
    proposal = n.run(1, [&n]() { return n.propose(1, "stuck"); });
    proposal_done = true;
  });
  std::thread r([&] {
    read = n.run(1, [&n]() { return n.read(1, ReadMode::kReadIndex); });
    read_done = true;
  });
  std::this_thread::sleep_for(30ms);
  // Still a member with others (and maybe the leader): refused unforced.
  base::Status refused = c.remove_group(leader, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind(), ErrorKind::kInvalidArgument);
  base::Status st = c.remove_group(leader, 1, /*force=*/true);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  p.join();
  r.join();
  // Accepted before the removal: it may still commit on the other replicas.
  ASSERT_FALSE(proposal.ok());
  EXPECT_EQ(proposal.error().kind(), ErrorKind::kOutcomeUnknown) << proposal.error().to_string();
  EXPECT_NE(proposal.error().message().find("removed"), std::string::npos);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().kind(), ErrorKind::kShuttingDown) << read.error().to_string();
  // A call after the removal: the group is not here.
  auto after = c.propose(leader, 1, "after");
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().kind(), ErrorKind::kNotFound);
  base::Status again = c.remove_group(leader, 1, true);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind(), ErrorKind::kNotFound);
}

TEST(NodeLifecycle, UnforcedRemovalOfALiveReplicaIsRefused) {
  Cluster c("lifecycle-refused", {1});
  c.start_bootstrap();
  const int l = c.wait_leader(1);
  ASSERT_GE(l, 0);
  const size_t follower = (static_cast<size_t>(l) + 1) % 3;
  ASSERT_GT(c.write(1, "a"), 0u);
  base::Status st = c.remove_group(follower, 1);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(st.error().message().find("still a member"), std::string::npos) << st.error().message();
  EXPECT_TRUE(c.node(follower).has_group(1)) << "a refused removal changed nothing";
  ASSERT_GT(c.write(1, "b"), 0u);
  EXPECT_TRUE(c.has_applied(follower, 1, "b"));
}

TEST(NodeLifecycle, ReservedGroupIdIsRefused) {
  Cluster c("lifecycle-reserved", {1});
  c.start(0, c.config(0, {1}));
  base::Status st = c.create_group(0, kNodeControlGroup);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), ErrorKind::kInvalidArgument);
  RaftConfig bad = c.config(1, {2});
  bad.groups = {kNodeControlGroup};
  auto n = Node::open(bad);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().kind(), ErrorKind::kInvalidArgument);
}

// Six groups led two by each of nodes 1..3; node 4 is added from node 1,
// which leads only two of them: the other four go through their leaders.
// Then node 3 is removed from every group from node 4, and node 3 can drop
// its replicas without force.
TEST(NodeLifecycle, AddNodeReachesGroupsLedElsewhereAndRemoveNodeTakesItOutOfEveryGroup) {
  const std::vector<GroupId> groups = {1, 2, 3, 4, 5, 6};
  Cluster c("lifecycle-nodes", groups);
  c.start_bootstrap();
  for (GroupId g : groups)
    ASSERT_GT(c.write(g, "before-" + std::to_string(g)), 0u);
  c.place_leaders([](GroupId g) { return static_cast<size_t>(g % 3); });
  int led_by_node1 = 0;
  for (GroupId g : groups)
    led_by_node1 += c.node(0).is_leader(g) ? 1 : 0;
  ASSERT_LT(led_by_node1, static_cast<int>(groups.size())) << "leaders are not spread";

  c.start(3, c.config(3, {1, 2, 3, 4}, /*join=*/true));
  Node& n1 = c.node(0);
  const std::string addr4 = c.address(3);
  Node::NodeChangeReport added = n1.runtime().block_on(
      0, [&n1, addr4]() { return n1.add_node(4, addr4, Node::MemberWait::kComplete); });
  ASSERT_EQ(added.size(), groups.size());
  for (const auto& [g, st] : added)
    EXPECT_TRUE(st.ok()) << "group " << g << ": " << st.error().to_string();
  for (GroupId g : groups) {
    EXPECT_TRUE(c.membership(0, g).is_voter(4)) << "group " << g;
    const std::string w = "with-4-" + std::to_string(g);
    ASSERT_GT(c.write(g, w), 0u);
    EXPECT_TRUE(c.has_applied(3, g, w)) << "node 4 serves group " << g;
  }
  // Adding again is a no-op that reports ok (nothing to do).
  Node::NodeChangeReport again =
      n1.runtime().block_on(0, [&n1, addr4]() { return n1.add_node(4, addr4); });
  for (const auto& [g, st] : again)
    EXPECT_TRUE(st.ok()) << "group " << g << ": " << st.error().to_string();

  Node& n4 = c.node(3);
  Node::NodeChangeReport removed =
      n4.runtime().block_on(0, [&n4]() { return n4.remove_node(3, Node::MemberWait::kComplete); });
  ASSERT_EQ(removed.size(), groups.size());
  for (const auto& [g, st] : removed)
    EXPECT_TRUE(st.ok()) << "group " << g << ": " << st.error().to_string();
  for (GroupId g : groups) {
    const Membership m = c.membership(0, g);
    EXPECT_FALSE(m.contains(3)) << "group " << g << ": " << to_string(m);
    const std::string w = "without-3-" + std::to_string(g);
    ASSERT_GT(c.write(g, w), 0u);
    EXPECT_TRUE(c.has_applied(3, g, w));
  }
  // Node 3 left every configuration: its replicas may go without force,
  // once its own log shows that it left (the leader keeps sending to it
  // until the configuration without it commits).
  for (GroupId g : groups) {
    base::Status st = c.remove_group(2, g);
    for (int k = 0; k < 200 && !st.ok() && st.error().kind() == ErrorKind::kInvalidArgument; ++k) {
      std::this_thread::sleep_for(20ms);
      st = c.remove_group(2, g);
    }
    EXPECT_TRUE(st.ok()) << "group " << g << ": " << st.error().to_string();
  }
  EXPECT_TRUE(c.node(2).groups().empty());
}

}  // namespace
}  // namespace nori::raft
