// Quiescence of idle groups (raft/raft.h, "Quiescence"; docs/node.md): an
// idle leader stops heartbeating, its followers stop their election timers,
// and node-level liveness (a fake here, one view per observing node) stands
// in for the heartbeats. Each test is named after the failure it proves
// handled.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "tests/raft/test_cluster.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

constexpr TimePoint kFar = TimePoint::max();

// What one node's driver believes about the other nodes' liveness.
class FakeLiveness final : public NodeLiveness {
 public:
  bool node_live(NodeId node, TimePoint) const override { return !down_.contains(node); }
  void set_down(NodeId node, bool down) {
    if (down) {
      down_.insert(node);
    } else {
      down_.erase(node);
    }
  }

 private:
  std::set<NodeId> down_;
};

// A 3-node group with quiescence on; views_[i] is node i's liveness view.
class Quiesce : public ::testing::Test {
 protected:
  Quiesce() : c_(3, [this](Config& cfg) { cfg.liveness = &views_[cfg.id]; }) {}

  // Node `id`'s driver loses (or regains) liveness of `node`, and tells its
  // quiesced group as CoreHost does.
  void lose(NodeId observer, NodeId node) {
    views_[observer].set_down(node, true);
    c_.raft(observer).liveness_lost(node, c_.local(observer));
  }

  NodeId settle_leader() {
    c_.elect(1);
    EXPECT_TRUE(c_.raft(1).is_leader());
    c_.advance(3s);  // past the restart promises: the no-op commits
    EXPECT_GE(c_.raft(1).commit_index(), c_.raft(1).last_index());
    return 1;
  }

  // Wakes the group with a proposal and advances just until it is quiet
  // again: the quiesce round was acknowledged moments ago, so by time alone
  // the leader's lease would still be valid.
  void requiesce(NodeId l) {
    ASSERT_TRUE(c_.raft(l).propose("tick", 900, c_.now(), kFar).ok());
    c_.settle();
    ASSERT_FALSE(all_quiesced());
    for (int i = 0; i < 200 && !all_quiesced(); ++i)
      c_.advance(10ms);
    ASSERT_TRUE(all_quiesced());
    // (status().lease_until is already empty here: that is the rule under
    // test, lease_min_round_.)
  }

  bool all_quiesced() {
    for (NodeId id : c_.ids()) {
      if (!c_.node(id).up) continue;
      if (!c_.raft(id).quiesced()) return false;
    }
    return true;
  }

  size_t sent_total() {
    size_t n = 0;
    for (NodeId id : c_.ids())
      n += c_.node(id).sent.size();
    return n;
  }

  size_t sent_of(NodeId id, MessageType type) {
    size_t k = 0;
    for (const Message& m : c_.node(id).sent)
      k += m.type() == type;
    return k;
  }

  const ReadResult* find_read(NodeId id, uint64_t rid) {
    for (const ReadResult& r : c_.node(id).reads) {
      if (r.request_id == rid) return &r;
    }
    return nullptr;
  }

  std::map<NodeId, FakeLiveness> views_;
  TestCluster c_;
};

TEST_F(Quiesce, IdleGroupStopsHeartbeating) {
  NodeId l = settle_leader();
  ASSERT_TRUE(c_.raft(l).propose("x", 1, c_.now(), kFar).ok());
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  const Term term = c_.raft(l).term();
  for (NodeId id : c_.ids())
    EXPECT_EQ(c_.raft(id).next_tick(), TimePoint::max()) << "node " << id << " still has a timer";
  // Many heartbeat intervals (and election timeouts) later: not one message,
  // no election, the same leader.
  const size_t before = sent_total();
  c_.advance(30s);
  EXPECT_EQ(sent_total(), before);
  EXPECT_TRUE(all_quiesced());
  EXPECT_TRUE(c_.raft(l).is_leader());
  for (NodeId id : c_.ids())
    EXPECT_EQ(c_.raft(id).term(), term);
}

TEST_F(Quiesce, WithoutLivenessTheGroupKeepsHeartbeating) {
  // Config::liveness null (the simulator's setting): nothing changes.
  TestCluster plain(3);
  plain.elect(1);
  plain.advance(3s);
  ASSERT_TRUE(plain.raft(1).is_leader());
  const size_t hb = [&] {
    size_t k = 0;
    for (const Message& m : plain.node(1).sent)
      k += m.type() == MessageType::kHeartbeat;
    return k;
  }();
  plain.advance(3s);
  size_t after = 0;
  for (const Message& m : plain.node(1).sent)
    after += m.type() == MessageType::kHeartbeat;
  EXPECT_GE(after - hb, 2u * (3000 / 150) - 2);  // two followers, one round per 150 ms
  EXPECT_FALSE(plain.raft(1).quiesced());
}

TEST_F(Quiesce, BusyGroupDoesNotQuiesce) {
  NodeId l = settle_leader();
  // A proposal every 200 ms: never kQuiesceIdleRounds idle ticks in a row.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(c_.raft(l).propose("p", 100 + i, c_.now(), kFar).ok());
    c_.advance(200ms);
    EXPECT_FALSE(c_.raft(l).quiesced()) << "after proposal " << i;
  }
}

TEST_F(Quiesce, ProposalWakesQuiescedGroup) {
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  auto idx = c_.raft(l).propose("wake", 7, c_.now(), kFar);
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  EXPECT_FALSE(c_.raft(l).quiesced());
  c_.settle();
  // Committed and applied everywhere, without waiting for a timer.
  for (NodeId id : c_.ids()) {
    EXPECT_FALSE(c_.raft(id).quiesced());
    ASSERT_FALSE(c_.node(id).applied.empty());
  }
  EXPECT_EQ(c_.node(l).applied.back().data, "wake");
  c_.advance(200ms);  // followers learn the commit with the next heartbeat
  for (NodeId id : c_.ids())
    EXPECT_EQ(c_.node(id).applied.back().index, *idx) << "node " << id;
  // Idle again: quiet again.
  c_.advance(1s);
  EXPECT_TRUE(all_quiesced());
}

TEST_F(Quiesce, ProposalAfterLongQuiescenceIsNotRefusedForNoQuorum) {
  // Check-quorum must not read "no reply for a minute" as "no quorum": the
  // peers' nodes stayed live.
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  c_.advance(60s);
  auto idx = c_.raft(l).propose("late", 8, c_.now(), kFar);
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  c_.advance(100ms);
  EXPECT_TRUE(c_.raft(l).is_leader());
  EXPECT_GE(c_.raft(l).commit_index(), *idx);
}

TEST_F(Quiesce, QuiescedFollowerCampaignsWhenLeaderNodeDies) {
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  const Term term = c_.raft(l).term();
  c_.crash(l);
  // Nobody tells the followers yet: they stay quiet (no liveness loss).
  c_.advance(5s);
  EXPECT_EQ(c_.raft(2).term(), term);
  EXPECT_TRUE(c_.raft(2).quiesced() && c_.raft(3).quiesced());
  // Their drivers notice the silent node.
  lose(2, l);
  lose(3, l);
  EXPECT_FALSE(c_.raft(2).quiesced());
  EXPECT_FALSE(c_.raft(3).quiesced());
  NodeId nl = c_.wait_for_leader(2s);
  ASSERT_TRUE(nl == 2 || nl == 3) << nl;
  EXPECT_GT(c_.raft(nl).term(), term);
  // And it can commit (after the promise wait of the old lease).
  c_.advance(3s);
  ASSERT_TRUE(c_.raft(nl).propose("after", 9, c_.now(), kFar).ok());
  c_.advance(100ms);
  EXPECT_EQ(c_.node(nl).applied.back().data, "after");
}

TEST_F(Quiesce, LivenessLossOfAnotherNodeDoesNotWakeFollower) {
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  lose(2, 3);  // node 2 stops hearing node 3, but its leader is node 1
  EXPECT_TRUE(c_.raft(2).quiesced());
  EXPECT_TRUE(c_.raft(l).quiesced());
}

TEST_F(Quiesce, QuiescedLeaderStepsDownWhenItsQuorumNodesGoSilent) {
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  c_.isolate(l);
  lose(l, 2);
  EXPECT_FALSE(c_.raft(l).quiesced()) << "a peer's node went silent: the leader wakes";
  lose(l, 3);
  // Node 3 was still live when the leader woke (counted as heard then);
  // node 2 was not. Check-quorum steps the leader down once the window has
  // passed without a reply, as for a leader that never quiesced.
  const TimePoint woke = c_.now();
  while (c_.raft(l).is_leader() && c_.now() < woke + 2s)
    c_.advance(10ms);
  EXPECT_FALSE(c_.raft(l).is_leader());
  EXPECT_LE(c_.now() - woke, std::chrono::milliseconds(c_.raft(l).config().election_timeout_max_ms +
                                                       c_.raft(l).config().heartbeat_ms + 10));
}

TEST_F(Quiesce, LeaseReadOnQuiescedLeaderRenewsFirst) {
  NodeId l = settle_leader();
  requiesce(l);
  // The quiesce round was acknowledged a moment ago, so by time alone a
  // lease would still be valid. The leader is cut off right now.
  c_.isolate(l);
  ASSERT_TRUE(c_.raft(l).read(ReadMode::kLease, 50, c_.local(l)).ok());
  EXPECT_FALSE(c_.raft(l).quiesced());
  c_.settle();
  EXPECT_EQ(find_read(l, 50), nullptr) << "served from a lease earned before quiescence";
  // The majority side elects and writes once its drivers see node 1 silent.
  lose(2, l);
  lose(3, l);
  for (int i = 0; i < 200 && !c_.raft(2).is_leader() && !c_.raft(3).is_leader(); ++i)
    c_.advance(10ms);
  NodeId nl = c_.raft(2).is_leader() ? 2 : 3;
  ASSERT_TRUE(c_.raft(nl).is_leader());
  c_.advance(3s);
  ASSERT_TRUE(c_.raft(nl).propose("new", 11, c_.now(), kFar).ok());
  c_.advance(100ms);
  ASSERT_EQ(c_.node(nl).applied.back().data, "new");
  // The old leader never served the read: it failed when check-quorum made
  // it step down.
  const ReadResult* r = find_read(l, 50);
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(r->granted());
  EXPECT_FALSE(c_.raft(l).is_leader());
}

TEST_F(Quiesce, FirstReadAfterQuiescenceCostsOneRoundThenLeaseServes) {
  NodeId l = settle_leader();
  requiesce(l);
  const size_t hb = sent_of(l, MessageType::kHeartbeat);
  ASSERT_TRUE(c_.raft(l).read(ReadMode::kLease, 60, c_.local(l)).ok());
  c_.settle();
  const ReadResult* r = find_read(l, 60);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->granted());
  EXPECT_FALSE(r->via_lease) << "the first read after quiescence must wait for a round";
  EXPECT_EQ(sent_of(l, MessageType::kHeartbeat), hb + 2);  // one round to two followers
  ASSERT_TRUE(c_.raft(l).read(ReadMode::kLease, 61, c_.local(l)).ok());
  c_.settle();
  r = find_read(l, 61);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->granted());
  EXPECT_TRUE(r->via_lease);
}

TEST_F(Quiesce, StaleReadDoesNotWakeTheGroup) {
  settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  ASSERT_TRUE(c_.raft(2).read(ReadMode::kStaleNoGuarantee, 70, c_.local(2)).ok());
  c_.settle();
  ASSERT_NE(find_read(2, 70), nullptr);
  EXPECT_TRUE(all_quiesced());
}

TEST_F(Quiesce, RejoiningNodeCannotDeposeQuiescedLeader) {
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  const Term term = c_.raft(l).term();
  // Node 3 was cut off long enough to lose liveness of node 1, woke, and
  // now campaigns against a group whose other members are quiet. Node 2,
  // quiesced with node 1 live, must not grant it a (pre-)vote.
  c_.isolate(3);
  lose(3, l);
  c_.advance(2s);
  EXPECT_FALSE(c_.raft(3).quiesced());
  c_.heal();
  views_[3].set_down(l, false);
  c_.advance(3s);
  EXPECT_TRUE(c_.raft(l).is_leader());
  for (NodeId id : c_.ids())
    EXPECT_EQ(c_.raft(id).term(), term) << "node " << id << " was disrupted";
  // Its pre-vote woke the leader, whose rounds brought node 3 back; then
  // the group went quiet again.
  EXPECT_TRUE(all_quiesced());
}

TEST_F(Quiesce, LeaderRestartedWithinLivenessTimeoutIsNotIgnored) {
  // The leader's process restarts before any driver notices its node was
  // gone: its followers are quiet, think it still leads, and its node is
  // live. Its (pre-)votes must not be ignored as "the leader is alive", or
  // the group never has a leader again.
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  const Term term = c_.raft(l).term();
  c_.crash(l);
  c_.start_node(l);
  for (int i = 0; i < 500 && c_.leader() == kNoNode; ++i)
    c_.advance(10ms);
  NodeId nl = c_.leader();
  ASSERT_NE(nl, kNoNode) << "no leader after the old leader restarted";
  EXPECT_GT(c_.raft(nl).term(), term);
  c_.advance(3s);
  ASSERT_TRUE(c_.raft(nl).propose("after restart", 12, c_.now(), kFar).ok());
  c_.advance(100ms);
  EXPECT_EQ(c_.node(nl).applied.back().data, "after restart");
}

TEST_F(Quiesce, LostQuiesceHeartbeatWakesLeaderInsteadOfElecting) {
  NodeId l = settle_leader();
  const Term term = c_.raft(l).term();
  // Node 3 never receives a quiesce heartbeat (until the filter goes).
  bool drop = true;
  c_.set_drop([&](const Message& m) {
    const auto* hb = std::get_if<Heartbeat>(&m.body);
    return drop && m.to == 3 && hb != nullptr && hb->quiesce;
  });
  ASSERT_TRUE(c_.raft(l).propose("wake", 1, c_.now(), kFar).ok());  // wakes all
  c_.advance(1s);
  EXPECT_TRUE(c_.raft(l).quiesced());
  EXPECT_TRUE(c_.raft(2).quiesced());
  EXPECT_FALSE(c_.raft(3).quiesced());
  c_.advance(3s);
  // It timed out and pre-voted; node 2 ignored it (quiesced, leader live),
  // the leader woke and heartbeat again: no new term, same leader.
  EXPECT_TRUE(c_.raft(l).is_leader());
  for (NodeId id : c_.ids())
    EXPECT_EQ(c_.raft(id).term(), term);
  drop = false;
  c_.advance(2s);
  EXPECT_TRUE(all_quiesced());
}

TEST_F(Quiesce, FollowerWithLongerLogKeepsItsTimer) {
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  // A quiesce heartbeat whose commit is below node 2's last index: node 2's
  // log does not end where the leader's does.
  Message m{1, l, 2, c_.raft(l).term(),
            Heartbeat{.commit = c_.raft(2).last_index() - 1, .round = 1000, .quiesce = true}};
  c_.raft(2).step(m, c_.local(2));
  EXPECT_FALSE(c_.raft(2).quiesced());
  EXPECT_NE(c_.raft(2).next_tick(), TimePoint::max());
}

TEST_F(Quiesce, TransferWakesQuiescedLeaderAndHandsOver) {
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  ASSERT_TRUE(c_.raft(l).transfer_leadership(2, c_.local(l)).ok());
  c_.advance(500ms);
  EXPECT_TRUE(c_.raft(2).is_leader());
  EXPECT_FALSE(c_.raft(l).is_leader());
}

TEST_F(Quiesce, MembershipChangeWakesQuiescedLeader) {
  NodeId l = settle_leader();
  c_.advance(1s);
  ASSERT_TRUE(all_quiesced());
  c_.add_node(4);
  auto idx = c_.raft(l).add_member(4, c_.local(l));
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  c_.advance(2s);
  EXPECT_TRUE(c_.raft(l).membership().is_voter(4));
  EXPECT_TRUE(c_.raft(l).is_leader());
}

}  // namespace
}  // namespace nori::raft
