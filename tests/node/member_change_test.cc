// Membership change end to end in real raft::Node objects (real WALs,
// snapshot files and loopback TCP, in one process): a new node joins with no
// bootstrap voters and learns everything (configuration, the other members'
// addresses) from the leader's log or snapshot; removal closes the removed
// node out; the leader hands over before its own removal; one change at a
// time; addresses survive a restart of every node. Each test is named after
// the failure it proves handled.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "raft/node/node.h"
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

constexpr GroupId kGroup = 1;
constexpr size_t kSlots = 5;  // nodes 1..3 bootstrap, 4 and 5 may join

// The state machine: the list of (index, data) applied; a snapshot is that
// list. Shared with the test thread under the mutex.
struct Machine {
  std::mutex mu;
  std::vector<std::pair<Index, std::string>> state;
  size_t restores = 0;
};

base::Status restore_into(Machine& m, snapshot::SnapshotSource& src) {
  NORI_ASSIGN_OR_RETURN(testing::AppliedList s, testing::read_list_snapshot(src));
  std::lock_guard lk(m.mu);
  m.state = std::move(s);
  ++m.restores;
  return {};
}

// Up to kSlots nodes of group 1 (with snapshot hooks). Nodes 1..3 bootstrap
// the group; a joining node (join = true) lists only what the test gives it.
class MemberCluster {
 public:
  explicit MemberCluster(const std::string& name) : root_(fresh_dir(name)) {
    const uint16_t base = free_port_block(kSlots);
    for (size_t i = 0; i < kSlots; ++i) {
      addrs_.push_back({static_cast<NodeId>(i + 1), "127.0.0.1", static_cast<uint16_t>(base + i)});
      machines_.push_back(std::make_unique<Machine>());
    }
    nodes_.resize(kSlots);
  }
  ~MemberCluster() {
    for (auto& n : nodes_)
      n.reset();
    std::filesystem::remove_all(root_);
  }

  // Node i (0-based, id i + 1) with `peers` (ids) as its peer list.
  RaftConfig config(size_t i, const std::vector<NodeId>& peers, bool join) const {
    std::vector<PeerAddress> list;
    for (NodeId id : peers)
      list.push_back(addrs_[id - 1]);
    RaftConfig c = node_config(static_cast<NodeId>(i + 1), list,
                               root_ + "/n" + std::to_string(i + 1), {kGroup});
    c.join = join;
    c.snapshot_keep_entries = 5;
    c.snapshot_chunk_bytes = 4096;
    c.snapshot_timeout_ms = 400;
    c.member_change_timeout_ms = 15'000;
    return c;
  }
  std::string address(size_t i) const {
    return fmt::format("{}:{}", addrs_[i].host, addrs_[i].port);
  }

  void start(size_t i, RaftConfig cfg) {
    Machine* m = machines_[i].get();
    {
      std::lock_guard lk(m->mu);
      m->state.clear();  // in memory: starts empty, the node replays or restores
    }
    NodeCallbacks cb;
    cb.group_hooks = [m](GroupId) {
      GroupHooks h;
      h.apply = [m](Index idx, std::string_view data) {
        std::lock_guard lk(m->mu);
        m->state.emplace_back(idx, std::string(data));
      };
      h.capture_snapshot = [m]() -> base::Result<std::unique_ptr<SnapshotView>> {
        std::lock_guard lk(m->mu);
        return std::unique_ptr<SnapshotView>(std::make_unique<testing::ListView>(m->state));
      };
      h.restore_snapshot = [m](snapshot::SnapshotSource& src) { return restore_into(*m, src); };
      return h;
    };
    auto n = Node::open(std::move(cfg), std::move(cb));
    ASSERT_TRUE(n.ok()) << n.error().to_string();
    nodes_[i] = std::move(n).value();
  }
  void start_bootstrap(size_t count = 3) {
    for (size_t i = 0; i < count; ++i)
      start(i, config(i, {1, 2, 3}, false));
  }
  void stop(size_t i) { nodes_[i].reset(); }
  bool up(size_t i) const { return nodes_[i] != nullptr; }
  Node& node(size_t i) { return *nodes_[i]; }

  int wait_leader(std::chrono::milliseconds within = 10s) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      for (size_t i = 0; i < kSlots; ++i) {
        if (up(i) && nodes_[i]->is_leader(kGroup)) return static_cast<int>(i);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

  base::Result<Index> propose(size_t i, std::string data) {
    Node& n = node(i);
    return n.run(kGroup, [&n, data]() { return n.propose(kGroup, data); });
  }
  // Proposes through whoever leads (retries while there is none).
  Index write(const std::string& data) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      int l = wait_leader();
      if (l < 0) break;
      auto r = propose(static_cast<size_t>(l), data);
      if (r.ok()) return *r;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "could not write " << data;
    return 0;
  }
  base::Status add_member(size_t on, size_t joining) {
    Node& n = node(on);
    const NodeId id = static_cast<NodeId>(joining + 1);
    std::string addr = address(joining);
    return n.run(kGroup, [&n, id, addr]() {
      return n.add_member(kGroup, id, addr, Node::MemberWait::kComplete);
    });
  }
  base::Status remove_member(size_t on, NodeId id) {
    Node& n = node(on);
    return n.run(kGroup,
                 [&n, id]() { return n.remove_member(kGroup, id, Node::MemberWait::kComplete); });
  }
  // Retries a change on whoever leads while the answer is "not leader" or
  // "busy" (a new leader has not committed its no-op yet).
  base::Status change_on_leader(const std::function<base::Status(size_t)>& change) {
    base::Status st = base::err(ErrorKind::kNotLeader, "no leader");
    for (int attempt = 0; attempt < 300; ++attempt) {
      int l = wait_leader();
      if (l < 0) return st;
      st = change(static_cast<size_t>(l));
      if (st.ok() ||
          (st.error().kind() != ErrorKind::kNotLeader && st.error().kind() != ErrorKind::kBusy)) {
        return st;
      }
      std::this_thread::sleep_for(20ms);
    }
    return st;
  }
  Membership membership(size_t i) {
    Node& n = node(i);
    auto m = n.run(kGroup, [&n]() { return n.membership(kGroup); });
    EXPECT_TRUE(m.ok()) << m.error().to_string();
    return m.ok() ? *m : Membership{};
  }

  std::vector<std::pair<Index, std::string>> state(size_t i) {
    std::lock_guard lk(machines_[i]->mu);
    return machines_[i]->state;
  }
  size_t restores(size_t i) {
    std::lock_guard lk(machines_[i]->mu);
    return machines_[i]->restores;
  }
  bool has_applied(size_t i, Index index, std::chrono::milliseconds within = 15s) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      auto s = state(i);
      if (!s.empty() && s.back().first >= index) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // Node i applied exactly node j's commands up to index `upto`, in order.
  void expect_same_state(size_t i, size_t j, Index upto) {
    auto a = state(i), b = state(j);
    auto cut = [upto](std::vector<std::pair<Index, std::string>>& v) {
      while (!v.empty() && v.back().first > upto)
        v.pop_back();
    };
    cut(a);
    cut(b);
    EXPECT_EQ(a, b) << "node " << i + 1 << " vs node " << j + 1;
  }

 private:
  std::string root_;
  std::vector<PeerAddress> addrs_;
  std::vector<std::unique_ptr<Machine>> machines_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

std::vector<NodeId> voters_of(const Membership& m) {
  return m.joint() ? std::vector<NodeId>{} : m.voters;
}

TEST(NodeMembership, NewMemberJoinsAsLearnerCatchesUpAndBecomesVoter) {
  MemberCluster c("member-join");
  c.start_bootstrap();
  for (int i = 0; i < 20; ++i)
    c.write("before-" + std::to_string(i));
  // Node 4 starts with no configuration: it never campaigns and learns the
  // group from the leader's log.
  // Its peer list is its contact list (the current members, whose
  // connections it accepts until its log names the members).
  c.start(3, c.config(3, {1, 2, 3, 4}, /*join=*/true));
  EXPECT_FALSE(c.node(3).is_leader(kGroup));
  // Writes keep flowing while the change runs.
  std::atomic<bool> stop{false};
  std::atomic<int> during{0};
  std::thread writer([&] {
    while (!stop.load()) {
      c.write("during-" + std::to_string(during.load()));
      ++during;
    }
  });
  base::Status st = c.change_on_leader([&](size_t l) { return c.add_member(l, 3); });
  std::this_thread::sleep_for(200ms);
  stop = true;
  writer.join();
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  EXPECT_GT(during.load(), 0);
  const int l = c.wait_leader();
  ASSERT_GE(l, 0);
  EXPECT_EQ(voters_of(c.membership(static_cast<size_t>(l))), (std::vector<NodeId>{1, 2, 3, 4}));
  Index last = 0;
  for (int i = 0; i < 10; ++i)
    last = c.write("after-" + std::to_string(i));
  ASSERT_TRUE(c.has_applied(3, last)) << "the new member did not apply every write";
  c.expect_same_state(3, static_cast<size_t>(l), last);
  EXPECT_EQ(c.membership(3), c.membership(static_cast<size_t>(l)));
  // Node 4 now counts: with 4 voters a quorum is 3, so with one of the
  // original followers down every commit needs node 4's acknowledgement.
  size_t down = (static_cast<size_t>(l) + 1) % 3;
  c.stop(down);
  last = c.write("needs-node-4");
  ASSERT_TRUE(c.has_applied(3, last));
}

// The value of an unlabelled metric in Prometheus text (-1 if absent).
double metric(const std::string& text, const std::string& name) {
  size_t pos = 0;
  while ((pos = text.find(name + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') return std::stod(text.substr(pos + name.size() + 1));
    pos += name.size();
  }
  return -1;
}

TEST(NodeMembership, RemovedMemberStopsReceivingAndClusterKeepsCommitting) {
  MemberCluster c("member-remove");
  c.start_bootstrap();
  Index first = c.write("before");
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  // A follower with a lower id than another remaining member: it dials that
  // member, which must refuse it once its removal commits.
  const NodeId victim = l == 0 ? 2 : 1;
  const size_t keeper = victim == 1 ? 2 : 2;  // node 3 stays in both cases
  ASSERT_TRUE(c.has_applied(victim - 1, first));
  base::Status st = c.change_on_leader([&](size_t ld) { return c.remove_member(ld, victim); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  l = c.wait_leader();
  ASSERT_GE(l, 0);
  Membership m = c.membership(static_cast<size_t>(l));
  EXPECT_FALSE(m.contains(victim)) << to_string(m);
  EXPECT_EQ(m.voters.size(), 2u);
  const size_t applied_by_victim = c.state(victim - 1).size();
  Index last = 0;
  for (int i = 0; i < 20; ++i)
    last = c.write("after-" + std::to_string(i));
  for (size_t i = 0; i < 3; ++i) {
    if (i + 1 != victim) ASSERT_TRUE(c.has_applied(i, last)) << "node " << i + 1;
  }
  // Its links were closed and its redials are refused (it is no member of
  // any configuration the others act under).
  auto end = std::chrono::steady_clock::now() + 10s;
  while (metric(c.node(keeper).metrics_text(), "net_refused_connections") <= 0 &&
         std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(metric(c.node(keeper).metrics_text(), "net_refused_connections"), 0)
      << "node 3 still accepts the removed node " << victim;
  auto vs = c.state(victim - 1);
  EXPECT_EQ(vs.size(), applied_by_victim) << "the removed node still receives the log";
  EXPECT_TRUE(vs.empty() || vs.back().first < last);
  EXPECT_FALSE(c.node(victim - 1).is_leader(kGroup));
}

TEST(NodeMembership, RemovingTheLeaderHandsOverFirst) {
  MemberCluster c("member-remove-leader");
  c.start_bootstrap();
  c.write("before");
  const int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const NodeId old_leader = static_cast<NodeId>(l + 1);
  base::Status st = c.remove_member(static_cast<size_t>(l), old_leader);
  ASSERT_FALSE(st.ok());
  ASSERT_EQ(st.error().kind(), ErrorKind::kNotLeader) << st.error().to_string();
  const NodeId target = st.error().hint();
  ASSERT_NE(target, kNoNode);
  ASSERT_NE(target, old_leader);
  // The handover happens; the removal then runs on the new leader.
  st = c.change_on_leader([&](size_t ld) { return c.remove_member(ld, old_leader); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  const int nl = c.wait_leader();
  ASSERT_GE(nl, 0);
  EXPECT_NE(static_cast<NodeId>(nl + 1), old_leader);
  EXPECT_FALSE(c.membership(static_cast<size_t>(nl)).contains(old_leader));
  const Index last = c.write("after");
  for (size_t i = 0; i < 3; ++i) {
    if (i + 1 != old_leader) EXPECT_TRUE(c.has_applied(i, last)) << "node " << i + 1;
  }
  EXPECT_FALSE(c.node(old_leader - 1).is_leader(kGroup));
}

TEST(NodeMembership, SecondChangeWhileOneRunsIsRefused) {
  MemberCluster c("member-one-at-a-time");
  c.start_bootstrap();
  c.write("before");
  const int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const size_t ld = static_cast<size_t>(l);
  // Node 5 never starts: its promotion never happens, the change stays in
  // progress until abandoned.
  base::Status first = base::err(ErrorKind::kInvalidArgument, "not run");
  std::thread adder([&] { first = c.add_member(ld, 4); });
  auto end = std::chrono::steady_clock::now() + 10s;
  while (!c.membership(ld).is_learner(5) && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(c.membership(ld).is_learner(5));
  base::Status second = c.add_member(ld, 3);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().kind(), ErrorKind::kBusy) << second.error().to_string();
  EXPECT_NE(second.error().message().find("in progress"), std::string::npos)
      << second.error().message();
  base::Status removal = c.remove_member(ld, 2);
  ASSERT_FALSE(removal.ok());
  EXPECT_EQ(removal.error().kind(), ErrorKind::kBusy);
  // Abandoning the stuck change ends the first call: it did not happen.
  Node& n = c.node(ld);
  base::Status ab = n.run(kGroup, [&n]() { return n.abandon_member_change(kGroup); });
  ASSERT_TRUE(ab.ok()) << ab.error().to_string();
  adder.join();
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().kind(), ErrorKind::kCancelled) << first.error().to_string();
  EXPECT_FALSE(c.membership(ld).contains(5));
  // And the next change is accepted.
  c.start(3, c.config(3, {1, 2, 3, 4}, /*join=*/true));
  base::Status st = c.change_on_leader([&](size_t x) { return c.add_member(x, 3); });
  EXPECT_TRUE(st.ok()) << st.error().to_string();
}

TEST(NodeMembership, AddedMemberAddressSurvivesRestartOfEveryNode) {
  MemberCluster c("member-restart");
  c.start_bootstrap();
  c.write("before");
  c.start(3, c.config(3, {1, 2, 3, 4}, /*join=*/true));
  base::Status st = c.change_on_leader([&](size_t l) { return c.add_member(l, 3); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  Index w = c.write("added");
  ASSERT_TRUE(c.has_applied(3, w));
  // Half the nodes restart from a snapshot (the configuration comes from
  // its metadata), half from the log's configuration entries.
  for (size_t i : {0u, 3u}) {
    Node& n = c.node(i);
    ASSERT_TRUE(n.run(kGroup, [&n]() { return n.trigger_snapshot(kGroup); }).ok());
  }
  std::this_thread::sleep_for(300ms);
  for (size_t i = 0; i < 4; ++i)
    c.stop(i);
  // Nobody's peer list names node 4's address, and node 4's names nobody
  // else's: every address must come back from the log or the snapshot.
  for (size_t i = 0; i < 3; ++i)
    c.start(i, c.config(i, {1, 2, 3}, false));
  c.start(3, c.config(3, {4}, /*join=*/true));
  EXPECT_EQ(c.membership(3).voters, (std::vector<NodeId>{1, 2, 3, 4}));
  ASSERT_NE(c.membership(0).address_of(4), nullptr);
  EXPECT_EQ(*c.membership(0).address_of(4), c.address(3));
  ASSERT_NE(c.membership(3).address_of(1), nullptr);
  w = c.write("after-restart");
  ASSERT_TRUE(c.has_applied(3, w));
  // Two of the original three down: 4 voters need 3, so node 4 must take
  // part, reached only through the addresses from the log.
  const int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const size_t down = l < 3 ? (static_cast<size_t>(l) + 1) % 3 : 0;
  c.stop(down);
  w = c.write("needs-node-4");
  ASSERT_TRUE(c.has_applied(3, w));
}

// Node `down` (one of the three `bootstrap` nodes) is down while node `added`
// is added and takes over as leader; then `down` restarts with its old peer
// list. Its log does not name `added` and holds no address for it: both are
// only in the configuration entries it missed, which only `added` (the
// leader) would send. Returns once `down` has caught up and takes part in
// commits; every step it cannot pass is a test failure.
void restart_after_missed_add(MemberCluster& c, const std::vector<NodeId>& bootstrap, NodeId down,
                              NodeId added) {
  const size_t d = down - 1, a = added - 1;
  for (NodeId id : bootstrap)
    c.start(id - 1, c.config(id - 1, bootstrap, false));
  Index w = c.write("before");
  ASSERT_TRUE(c.has_applied(d, w));
  c.stop(d);
  // The new member joins with only the live members as contacts; nothing
  // but the configuration entry records its address.
  std::vector<NodeId> contacts{added};
  for (NodeId id : bootstrap) {
    if (id != down) contacts.push_back(id);
  }
  c.start(a, c.config(a, contacts, /*join=*/true));
  base::Status st = c.change_on_leader([&](size_t l) { return c.add_member(l, a); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  // The leader of the add keeps, in its link queue toward `down`, the
  // appends it sent while `down` was away, the entry naming `added` among
  // them: delivered at the reconnection they would teach `down` the new
  // member another way (a leader it knows sending it the entry) and hide
  // the failure, or not, depending on timing. Restarting the other original
  // members, one at a time, drops those queues; a later leader's queue
  // starts at its own last index.
  for (NodeId id : bootstrap) {
    if (id == down) continue;
    c.stop(id - 1);
    c.start(id - 1, c.config(id - 1, bootstrap, false));
    ASSERT_TRUE(c.has_applied(id - 1, w));
    // The configuration records the new member's address through its
    // promotion (a lower id than a voter's once lost it there: raft.cc,
    // propose_membership), or nobody restarted could ever dial it.
    const Membership m = c.membership(id - 1);
    const std::string* addr = m.address_of(added);
    ASSERT_NE(addr, nullptr) << to_string(m);
    EXPECT_EQ(*addr, c.address(a));
  }
  // It leads (planned transfers, retried until it leads through the writes:
  // the restarts above may still be settling).
  bool leads = false;
  for (int attempt = 0; attempt < 10 && !leads; ++attempt) {
    auto end = std::chrono::steady_clock::now() + 5s;
    while (!c.node(a).is_leader(kGroup) && std::chrono::steady_clock::now() < end) {
      const int l = c.wait_leader();
      if (l >= 0 && static_cast<size_t>(l) != a) {
        Node& n = c.node(static_cast<size_t>(l));
        (void)n.run(kGroup, [&n, added]() { return n.transfer_leader(kGroup, added); });
      }
      std::this_thread::sleep_for(100ms);
    }
    for (int i = 0; i < 5; ++i)
      w = c.write("while-down-" + std::to_string(attempt) + "-" + std::to_string(i));
    leads = c.wait_leader() == static_cast<int>(a);
  }
  ASSERT_TRUE(leads) << "node " << added << " never kept the lead";
  // `down` comes back with the peer list it was started with.
  c.start(d, c.config(d, bootstrap, false));
  ASSERT_TRUE(c.has_applied(d, w, 15s))
      << "node " << down << " never caught up: cut off from node " << added << ", its leader";
  c.expect_same_state(d, a, w);
  EXPECT_EQ(c.node(d).leader(kGroup), added);
  std::vector<NodeId> all = bootstrap;
  all.push_back(added);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(c.membership(d).voters, all);
  // Its peers' address books did it, and once its log names the new member
  // nothing is admitted on a book's word any more.
  const std::string text = c.node(d).metrics_text();
  EXPECT_GT(metric(text, "raft_address_books_received_total"), 0);
  EXPECT_EQ(metric(text, "raft_members_introduced"), 0);
  // It takes part: with another original member down, 3 of the 4 voters
  // (the new leader, `down` and one more) must acknowledge every commit.
  ASSERT_EQ(c.wait_leader(), static_cast<int>(a));
  for (NodeId id : bootstrap) {
    if (id != down) {
      c.stop(id - 1);
      break;
    }
  }
  w = c.write("needs-the-restarted-node");
  EXPECT_TRUE(c.has_applied(d, w));
}

// The higher id never dials the lower one (net/transport.h): node 4 leads
// and never dials node 3, and node 3, with no address for node 4 (and node
// 4 in none of its configurations), never dials node 4 either. Without the
// address books nodes 1 and 2 hand node 3 when they connect
// (node_control.h, kAddressBook) node 3 stays a pre-candidate with no
// leader for good (this failed before them: no catch-up in 15 s).
TEST(NodeMembership, RestartedNodeReachesMemberAddedWhileItWasDown) {
  MemberCluster c("member-missed-add");
  restart_after_missed_add(c, {1, 2, 3}, /*down=*/3, /*added=*/4);
}

// The other direction: node 4 leads and dials node 5 (4 < 5) at the address
// its configuration holds, but node 5's accept policy knows only the
// members of its own configurations (1, 2, 5) and refuses node 4 as
// unknown_node, until a member's address book introduces node 4.
TEST(NodeMembership, RestartedNodeAcceptsLowerIdMemberAddedWhileItWasDown) {
  MemberCluster c("member-missed-add-lower");
  restart_after_missed_add(c, {1, 2, 5}, /*down=*/5, /*added=*/4);
}

TEST(NodeMembership, NewMemberFarBehindGetsASnapshot) {
  MemberCluster c("member-snapshot");
  c.start_bootstrap();
  Index last = 0;
  for (int i = 0; i < 60; ++i)
    last = c.write("old-" + std::to_string(i));
  // Snapshots on every node, the log compacted behind them (5 kept): a new
  // member can only start from a snapshot.
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.has_applied(i, last));
    Node& n = c.node(i);
    ASSERT_TRUE(n.run(kGroup, [&n]() { return n.trigger_snapshot(kGroup); }).ok());
  }
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < 10; ++i)
    last = c.write("more-" + std::to_string(i));
  c.start(3, c.config(3, {1, 2, 3, 4}, /*join=*/true));
  base::Status st = c.change_on_leader([&](size_t l) { return c.add_member(l, 3); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  last = c.write("after");
  ASSERT_TRUE(c.has_applied(3, last));
  EXPECT_GE(c.restores(3), 1u) << "caught up without a snapshot: the log was not compacted";
  const int l = c.wait_leader();
  ASSERT_GE(l, 0);
  c.expect_same_state(3, static_cast<size_t>(l), last);
}

TEST(NodeMembership, NodeRestartedWithAnotherJoinSettingIsRefused) {
  // A joined node that took `peers` as bootstrap voters would count itself
  // a voter of a configuration that never had it (with peers = {4} alone it
  // would elect itself); a bootstrapped node set to join would stop voting.
  MemberCluster c("member-join-flag");
  c.start(3, c.config(3, {1, 2, 3, 4}, /*join=*/true));
  c.start(0, c.config(0, {1, 2, 3}, /*join=*/false));
  c.stop(3);
  c.stop(0);
  auto joined_as_bootstrap = Node::open(c.config(3, {4}, /*join=*/false));
  ASSERT_FALSE(joined_as_bootstrap.ok());
  EXPECT_EQ(joined_as_bootstrap.error().kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(joined_as_bootstrap.error().message().find("join"), std::string::npos);
  auto bootstrap_as_joined = Node::open(c.config(0, {1, 2, 3}, /*join=*/true));
  ASSERT_FALSE(bootstrap_as_joined.ok());
  EXPECT_EQ(bootstrap_as_joined.error().kind(), ErrorKind::kInvalidArgument);
  // The recorded way still opens.
  c.start(3, c.config(3, {4}, /*join=*/true));
  EXPECT_TRUE(c.membership(3).voters.empty());
}

TEST(NodeMembership, AddMemberRefusesAnAddressNobodyCouldDial) {
  MemberCluster c("member-bad-address");
  c.start_bootstrap();
  c.write("x");
  const int l = c.wait_leader();
  ASSERT_GE(l, 0);
  Node& n = c.node(static_cast<size_t>(l));
  for (std::string bad :
       {"localhost:7000", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "[::1]:x", ":7000"}) {
    auto st = n.run(kGroup, [&n, bad]() { return n.add_member(kGroup, 9, bad); });
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.error().kind(), ErrorKind::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(c.membership(static_cast<size_t>(l)).contains(9)) << "a refused add changed nothing";
}

}  // namespace
}  // namespace nori::raft
