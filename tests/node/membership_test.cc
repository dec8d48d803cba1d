// Membership change through raft::Node: a new node joins (join = true, then
// add_member on the leader), learns the configuration and the other
// members' addresses from the log, becomes a voter, and a removed voter no
// longer counts. Real WALs and loopback TCP, four Nodes in one process.
#include <gtest/gtest.h>

#include "tests/node/node_test_util.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::fresh_dir;
using testing::node_config;

constexpr GroupId kGroup = 1;

struct Member {
  std::unique_ptr<Node> node;
  std::unique_ptr<testing::Applied> applied = std::make_unique<testing::Applied>();
};

class Members {
 public:
  explicit Members(const std::string& name) : root_(fresh_dir(name)) {
    const uint16_t base = nori::testing::free_port_block(4);
    for (NodeId id = 1; id <= 4; ++id)
      addrs_.push_back({id, "127.0.0.1", static_cast<uint16_t>(base + id - 1)});
    m_.resize(4);
  }
  ~Members() {
    for (auto& m : m_)
      m.node.reset();
    std::filesystem::remove_all(root_);
  }
  // Nodes 1-3 bootstrap the cluster; node 4 joins (it knows everyone).
  void start(size_t i) {
    std::vector<PeerAddress> peers(addrs_.begin(), addrs_.begin() + 3);
    if (i == 3) peers = addrs_;
    RaftConfig c = node_config(i + 1, peers, root_ + "/n" + std::to_string(i + 1), {kGroup});
    if (i == 3) {
      c.join = true;
      c.bootstrap = false;
    }
    testing::Applied* a = m_[i].applied.get();
    NodeCallbacks cb;
    cb.group_hooks = [a](GroupId g) {
      GroupHooks h;
      h.apply = [a, g](Index idx, std::string_view data) {
        std::lock_guard lk(a->mu);
        a->log[g].emplace_back(idx, std::string(data));
      };
      return h;
    };
    auto n = Node::open(c, std::move(cb));
    NORI_ASSERT(n.ok(), "{}", n.error().to_string());
    m_[i].node = std::move(n).value();
  }
  void stop(size_t i) { m_[i].node.reset(); }
  Node& node(size_t i) { return *m_[i].node; }
  std::string addr(size_t i) const { return addrs_[i].host + ":" + std::to_string(addrs_[i].port); }
  int wait_leader() {
    auto end = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < end) {
      for (size_t i = 0; i < m_.size(); ++i) {
        if (m_[i].node && m_[i].node->is_leader(kGroup)) return static_cast<int>(i);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  base::Result<Index> propose(size_t i, std::string data) {
    Node& n = node(i);
    return n.run(kGroup, [&n, data]() { return n.propose(kGroup, data); });
  }
  std::vector<std::pair<Index, std::string>> applied(size_t i) {
    std::lock_guard lk(m_[i].applied->mu);
    return m_[i].applied->log[kGroup];
  }
  bool wait_same(size_t i, size_t j) {
    auto end = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < end) {
      auto a = applied(i), b = applied(j);
      if (!a.empty() && a == b) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // Calls fn on node i until it returns something other than kBusy (a change
  // or the leader's first commit in progress); that result.
  template <typename F>
  base::Status until_not_busy(size_t i, F fn) {
    auto end = std::chrono::steady_clock::now() + 15s;
    base::Status st;
    while (std::chrono::steady_clock::now() < end) {
      Node& n = node(i);
      st = n.run(kGroup, [&n, &fn]() { return fn(n); });
      if (st.ok() || st.error().kind() != base::ErrorKind::kBusy) return st;
      std::this_thread::sleep_for(20ms);
    }
    return st;
  }

 private:
  std::string root_;
  std::vector<PeerAddress> addrs_;
  std::vector<Member> m_;
};

TEST(NodeMembership, JoinedNodeBecomesAVoterAndARemovedVoterNoLongerCounts) {
  Members c("member-join");
  for (size_t i = 0; i < 3; ++i)
    c.start(i);
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  for (int k = 0; k < 10; ++k)
    ASSERT_TRUE(c.propose(static_cast<size_t>(l), "a" + std::to_string(k)).ok());
  const size_t L = static_cast<size_t>(l);

  c.start(3);  // join = true: no configuration until the leader admits it
  EXPECT_FALSE(c.node(3).is_leader(kGroup));
  const std::string a4 = c.addr(3);
  auto st = c.until_not_busy(L, [a4](Node& n) { return n.add_member(kGroup, 4, a4); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  // One change at a time: a second one while this runs is refused clearly.
  {
    Node& n = c.node(L);
    auto again = n.run(kGroup, [&n]() { return n.add_member(kGroup, 4, "127.0.0.1:1"); });
    ASSERT_FALSE(again.ok());
  }
  ASSERT_TRUE(c.propose(L, "b").ok());
  ASSERT_TRUE(c.wait_same(3, L)) << "the joined node did not catch up";

  // Remove a voter that is neither the leader nor node 4, once the add is
  // done (kBusy until then), and wait until it is out of the configuration.
  const size_t r = L == 0 ? 1 : 0;
  const size_t o = 3 - r - L;  // the other original voter
  st = c.until_not_busy(L, [r](Node& n) { return n.remove_member(kGroup, r + 1); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  st = c.until_not_busy(L, [r](Node& n) { return n.remove_member(kGroup, r + 1); });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kInvalidArgument) << st.error().to_string();

  // Voters are now {L, o, 4}: with r and o down, L and 4 are a majority.
  // (Had 4 stayed a learner or r stayed a voter, nothing would commit.)
  c.stop(r);
  c.stop(o);
  base::Result<Index> idx = base::Error(base::ErrorKind::kTimedOut, "not tried");
  auto end = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < end) {
    int leader = c.wait_leader();
    if (leader >= 0) {
      idx = c.propose(static_cast<size_t>(leader), "c");
      if (idx.ok()) break;
    }
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  ASSERT_TRUE(c.wait_same(3, L));
}

TEST(NodeMembership, AddMemberRejectsAnAddressThatIsNotHostPort) {
  Members c("member-badaddr");
  for (size_t i = 0; i < 3; ++i)
    c.start(i);
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  Node& n = c.node(static_cast<size_t>(l));
  auto st = n.run(kGroup, [&n]() { return n.add_member(kGroup, 4, "no-port"); });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kInvalidArgument);
  // A follower answers kNotLeader with the leader as hint.
  const size_t f = l == 0 ? 1 : 0;
  Node& fn = c.node(f);
  st = fn.run(kGroup, [&fn]() { return fn.add_member(kGroup, 4, "127.0.0.1:7"); });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kNotLeader);
  EXPECT_EQ(st.error().hint(), static_cast<uint64_t>(l + 1));
}

}  // namespace
}  // namespace nori::raft
