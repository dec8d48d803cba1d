// Membership change in the Raft core: configuration entries effective on
// append, learners, joint consensus with automatic leave, one change at a
// time, lease and quorum rules in joint configurations, removing the leader,
// abandoning stuck changes. Each test is named after the failure it prevents.
#include <gtest/gtest.h>

#include <functional>

#include "raft/membership.h"
#include "tests/raft/test_cluster.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

constexpr TimePoint kFar = TimePoint::max();

NodeId stable_leader(TestCluster& c, NodeId id = 1) {
  c.elect(id);
  EXPECT_TRUE(c.raft(id).is_leader());
  c.advance(3s);
  EXPECT_TRUE(c.raft(id).is_leader());
  EXPECT_GE(c.raft(id).commit_index(), c.raft(id).last_index());
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

Membership simple(std::vector<NodeId> voters, std::vector<NodeId> learners = {}) {
  Membership m{.voters = std::move(voters), .learners = std::move(learners)};
  m.normalize();
  return m;
}

// Every configuration entry node `id` applied, in order.
std::vector<Membership> applied_configs(TestCluster& c, NodeId id) {
  std::vector<Membership> out;
  for (const Entry& e : c.node(id).applied) {
    if (e.type != EntryType::kConfig) continue;
    auto m = Membership::decode(e.data);
    EXPECT_TRUE(m.ok());
    if (m.ok()) out.push_back(*m);
  }
  return out;
}

bool all_have(TestCluster& c, const std::vector<NodeId>& ids, const Membership& m) {
  for (NodeId id : ids) {
    if (!c.node(id).up || c.raft(id).membership() != m) return false;
  }
  return true;
}

// Adds learner 4 to a 3-node group led by 1, committed everywhere; returns
// the index of its configuration entry.
Index add_learner_4(TestCluster& c) {
  stable_leader(c, 1);
  c.add_node(4);
  auto idx = c.raft(1).add_learner(4, c.now());
  EXPECT_TRUE(idx.ok()) << idx.error().to_string();
  EXPECT_TRUE(run_until(
      c, [&] { return c.raft(4).last_index() >= *idx && c.raft(1).commit_index() >= *idx; }));
  return *idx;
}

// Brings group {1,2,3} + node 4 into the joint configuration {1,2,3,4} /
// {1,2,3} with the joint entry appended on every node but committed on none
// (append acknowledgements beyond the learner entry are dropped).
Index freeze_in_joint(TestCluster& c) {
  stable_leader(c, 1);
  c.add_node(4);
  auto learner = c.raft(1).add_member(4, c.now());
  EXPECT_TRUE(learner.ok());
  Index li = *learner;
  c.set_drop([li](const Message& m) {
    auto* r = std::get_if<AppendReply>(&m.body);
    return r != nullptr && r->success && r->match_index > li;
  });
  EXPECT_TRUE(run_until(c, [&] {
    for (NodeId id : {1, 2, 3, 4}) {
      if (!c.raft(id).membership().joint()) return false;
    }
    return true;
  }));
  EXPECT_EQ(c.raft(1).membership().voters, (std::vector<NodeId>{1, 2, 3, 4}));
  EXPECT_EQ(c.raft(1).membership().voters_outgoing, (std::vector<NodeId>{1, 2, 3}));
  Index joint = c.raft(1).membership_index();
  EXPECT_LT(c.raft(1).commit_index(), joint);
  return joint;
}

bool has_elected(TestCluster& c, NodeId id) {
  for (const Event& e : c.node(id).events) {
    if (e.kind == EventKind::kLeaderElected && e.node != 1) return true;
  }
  return false;
}

// --- encoding -----------------------------------------------------------------------

TEST(Membership, CorruptConfigurationEncodingIsRejected) {
  Membership m{.voters = {1, 2, 4}, .voters_outgoing = {1, 2, 3}, .learners = {7}, .promote = {7}};
  auto back = Membership::decode(m.encode());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, m);
  std::string bytes = m.encode();
  EXPECT_FALSE(Membership::decode(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(Membership::decode(bytes + "x").ok());
  Membership bad{.voters = {1, 2}, .learners = {2}};
  EXPECT_FALSE(Membership::decode(bad.encode()).ok()) << "learner that is also a voter";
  Membership unsorted{.voters = {2, 1}};
  EXPECT_FALSE(Membership::decode(unsorted.encode()).ok());
  Membership orphan{.voters = {1}, .promote = {5}};
  EXPECT_FALSE(Membership::decode(orphan.encode()).ok()) << "promotion of a non-learner";
}

TEST(Membership, ConfigurationWithoutAddressesKeepsThePreAddressEncoding) {
  // Entries written before addresses existed: version, four lists, nothing
  // after. They must decode unchanged, and a configuration without
  // addresses must still encode to exactly those bytes.
  const std::string old_bytes("\x01\x02\x01\x02\x00\x01\x07\x01\x07", 9);
  auto m = Membership::decode(old_bytes);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(*m, (Membership{.voters = {1, 2}, .learners = {7}, .promote = {7}}));
  EXPECT_TRUE(m->addresses.empty());
  EXPECT_EQ(m->encode(), old_bytes);
  // An explicit empty address list is not canonical: corrupt.
  EXPECT_FALSE(Membership::decode(old_bytes + std::string(1, '\0')).ok());
}

TEST(Membership, AddressesRoundTripAndAreRejectedWhenMalformed) {
  Membership m{.voters = {1, 2, 3}, .learners = {4}, .promote = {4}};
  m.set_address(4, "127.0.0.1:7400");
  m.set_address(1, "127.0.0.1:7100");
  m.set_address(1, "10.0.0.1:7100");  // replaces
  ASSERT_TRUE(m.validate().ok());
  ASSERT_EQ(m.addresses.size(), 2u);
  EXPECT_EQ(*m.address_of(1), "10.0.0.1:7100");
  EXPECT_EQ(m.address_of(2), nullptr);
  auto back = Membership::decode(m.encode());
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_NE(to_string(*back).find("4=127.0.0.1:7400"), std::string::npos);
  // Cut anywhere inside the address trailer: corrupt, never a shorter list.
  std::string bytes = m.encode();
  Membership bare = m;
  bare.addresses.clear();
  for (size_t cut = bare.encode().size() + 1; cut < bytes.size(); ++cut)
    EXPECT_FALSE(Membership::decode(bytes.substr(0, cut)).ok()) << "cut at " << cut;

  Membership stranger = m;
  stranger.addresses.push_back({9, "127.0.0.1:7900"});
  EXPECT_FALSE(stranger.validate().ok()) << "address of a non-member";
  EXPECT_FALSE(Membership::decode(stranger.encode()).ok());
  Membership empty_addr = m;
  empty_addr.addresses[0].address.clear();
  EXPECT_FALSE(empty_addr.validate().ok());
  Membership long_addr = m;
  long_addr.addresses[0].address.assign(kMemberAddressBytesMax + 1, 'x');
  EXPECT_FALSE(long_addr.validate().ok());
  EXPECT_FALSE(Membership::decode(long_addr.encode()).ok());
  Membership unsorted = m;
  std::swap(unsorted.addresses[0], unsorted.addresses[1]);
  EXPECT_FALSE(unsorted.validate().ok());
  unsorted.normalize();
  EXPECT_EQ(unsorted, m);
  m.set_address(4, "");
  EXPECT_EQ(m.address_of(4), nullptr) << "empty address erases";
  // All addresses together stay small enough for a snapshot chunk's header.
  Membership big;
  for (NodeId id = 1; id <= 100; ++id) {
    big.voters.push_back(id);
    big.addresses.push_back({id, std::string(200, 'a')});
  }
  EXPECT_FALSE(big.validate().ok()) << "100 x 200 address bytes";
  big.addresses.resize(50);
  EXPECT_TRUE(big.validate().ok());
}

// --- configuration entries -----------------------------------------------------------

TEST(RaftMembership, ConfigEntryTakesEffectWhenAppendedNotWhenCommitted) {
  TestCluster c(3);
  stable_leader(c, 1);
  // Nothing commits: every append acknowledgement is lost.
  c.set_drop([](const Message& m) { return m.type() == MessageType::kAppendReply; });
  auto idx = c.raft(1).add_learner(4, c.now());
  ASSERT_TRUE(idx.ok());
  c.advance(50ms);
  for (NodeId id : {1, 2, 3}) {
    EXPECT_LT(c.raft(id).commit_index(), *idx);
    EXPECT_EQ(c.raft(id).membership(), simple({1, 2, 3}, {4})) << "node " << id;
    EXPECT_EQ(c.raft(id).membership_index(), *idx);
  }
}

TEST(RaftMembership, TruncatedConfigEntryRevertsToPreviousConfig) {
  TestCluster c(3, [](Config& cfg) { cfg.check_quorum = false; });
  stable_leader(c, 1);
  c.isolate(1);
  ASSERT_TRUE(c.raft(1).add_learner(4, c.now()).ok());
  EXPECT_EQ(c.raft(1).membership(), simple({1, 2, 3}, {4}));
  ASSERT_TRUE(run_until(c, [&] { return c.raft(2).is_leader() || c.raft(3).is_leader(); }));
  NodeId l = c.raft(2).is_leader() ? 2 : 3;
  auto w = c.raft(l).propose("x", 1, c.now(), kFar);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(run_until(c, [&] { return c.raft(l).commit_index() >= *w; }));
  c.heal();
  ASSERT_TRUE(run_until(c, [&] { return c.raft(1).commit_index() >= *w; }));
  EXPECT_FALSE(c.raft(1).is_leader());
  EXPECT_EQ(c.raft(1).membership(), simple({1, 2, 3}))
      << "the truncated learner entry still counts";
  EXPECT_EQ(c.raft(1).membership_index(), 0u);
}

TEST(RaftMembership, RestartRecoversConfigurationFromTheLog) {
  TestCluster c(3);
  add_learner_4(c);
  c.crash(2);
  c.start_node(2);
  EXPECT_EQ(c.raft(2).membership(), simple({1, 2, 3}, {4}));
  c.crash(4);
  c.start_node(4);
  EXPECT_EQ(c.raft(4).membership(), simple({1, 2, 3}, {4}));
  EXPECT_FALSE(c.raft(4).is_voter());
}

// --- learners and promotion -------------------------------------------------------------

TEST(RaftMembership, AddMemberJoinsAsLearnerThenIsPromotedThroughJointConfig) {
  TestCluster c(3);
  stable_leader(c, 1);
  c.add_node(4);
  auto idx = c.raft(1).add_member(4, c.now());
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  EXPECT_EQ(c.raft(1).membership().learners, std::vector<NodeId>{4});
  EXPECT_EQ(c.raft(1).membership().promote, std::vector<NodeId>{4});
  EXPECT_TRUE(c.raft(1).member_change_in_progress());
  Membership target = simple({1, 2, 3, 4});
  ASSERT_TRUE(run_until(c, [&] {
    return all_have(c, {1, 2, 3, 4}, target) &&
           c.raft(1).commit_index() >= c.raft(1).membership_index();
  }));
  EXPECT_FALSE(c.raft(1).member_change_in_progress());
  EXPECT_TRUE(c.raft(4).is_voter());
  // The path: learner, joint (C_new incoming, C_old outgoing), C_new.
  std::vector<Membership> seen = applied_configs(c, 1);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].promote, std::vector<NodeId>{4});
  EXPECT_EQ(seen[1].voters, (std::vector<NodeId>{1, 2, 3, 4}));
  EXPECT_EQ(seen[1].voters_outgoing, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_EQ(seen[2], target);
  // The new voter counts: with 1 and 2 down, 3 and 4 alone are not a
  // majority of 4, but with 2 back they elect and commit.
  auto w = c.raft(1).propose("after", 9, c.now(), kFar);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(run_until(c, [&] { return c.raft(4).commit_index() >= *w; }));
}

TEST(RaftMembership, LearnerNeverVotesNorCountsInCommitQuorum) {
  TestCluster c(3);
  add_learner_4(c);
  c.crash(2);
  c.crash(3);
  auto w = c.raft(1).propose("needs-a-voter", 1, c.now(), kFar);
  ASSERT_TRUE(w.ok());
  c.advance(300ms);
  EXPECT_LT(c.raft(1).commit_index(), *w) << "leader + learner counted as a quorum of {1,2,3}";
  EXPECT_GE(c.raft(4).last_index(), *w) << "the learner still receives the log";
  // The learner never campaigns, even with no leader for a long time.
  c.crash(1);
  c.advance(3s);
  EXPECT_EQ(c.raft(4).status().elections_started, 0u);
  EXPECT_NE(c.raft(4).role(), Role::kCandidate);
  EXPECT_NE(c.raft(4).role(), Role::kPreCandidate);
}

TEST(RaftMembership, CandidateDoesNotAskLearnersForVotes) {
  TestCluster c(3);
  add_learner_4(c);
  c.node(2).sent.clear();
  c.raft(2).campaign(c.local(2));
  c.settle();
  for (const Message& m : c.node(2).sent) {
    if (m.type() == MessageType::kVoteRequest) EXPECT_NE(m.to, 4u);
  }
}

// --- one change at a time ------------------------------------------------------------------

TEST(RaftMembership, SecondChangeWhileOneIsInProgressGetsAClearError) {
  TestCluster c(3);
  stable_leader(c, 1);
  c.add_node(4);
  c.add_node(5);
  ASSERT_TRUE(c.raft(1).add_member(4, c.now()).ok());
  auto second = c.raft(1).add_member(5, c.now());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().kind(), base::ErrorKind::kBusy);
  EXPECT_NE(second.error().message().find("in progress"), std::string::npos);
  EXPECT_EQ(c.raft(1).remove_member(2, c.now()).error().kind(), base::ErrorKind::kBusy);
  ASSERT_TRUE(run_until(c, [&] { return !c.raft(1).member_change_in_progress(); }));
  EXPECT_TRUE(c.raft(1).add_member(5, c.now()).ok()) << "refused after the first change finished";
}

TEST(RaftMembership, NewLeaderProposesNoChangeBeforeCommittingItsTerm) {
  TestCluster c(3);
  stable_leader(c, 1);
  // Restarted voters carry a full lease promise: the new leader cannot
  // commit its no-op until it has waited it out.
  for (NodeId id : {1, 2, 3}) {
    c.crash(id);
    c.start_node(id);
  }
  c.elect(2);
  ASSERT_TRUE(c.raft(2).is_leader());
  ASSERT_LT(c.raft(2).commit_index(), c.raft(2).status().term_start_index);
  auto r = c.raft(2).add_learner(4, c.now());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kBusy);
  EXPECT_EQ(c.raft(2).membership(), simple({1, 2, 3}));
  ASSERT_TRUE(run_until(
      c, [&] { return c.raft(2).commit_index() >= c.raft(2).status().term_start_index; }));
  EXPECT_TRUE(c.raft(2).add_learner(4, c.now()).ok());
}

TEST(RaftMembership, FollowerCannotChangeMembership) {
  TestCluster c(3);
  stable_leader(c, 1);
  auto r = c.raft(2).add_member(4, c.now());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kNotLeader);
  EXPECT_EQ(r.error().hint(), 1u);
  EXPECT_EQ(c.raft(1).add_member(2, c.now()).error().kind(), base::ErrorKind::kInvalidArgument);
  EXPECT_EQ(c.raft(1).remove_member(9, c.now()).error().kind(), base::ErrorKind::kInvalidArgument);
}

// --- joint quorums -----------------------------------------------------------------------------

TEST(RaftMembership, JointConfigCommitNeedsMajorityOfBothHalves) {
  TestCluster c(3);
  Index joint = freeze_in_joint(c);
  c.set_drop({});
  // {1,2} is a majority of C_old {1,2,3} but not of C_new {1,2,3,4}.
  c.isolate(3);
  c.isolate(4);
  c.advance(500ms);
  EXPECT_LT(c.raft(1).commit_index(), joint) << "committed with C_old's majority alone";
  c.heal();
  Membership target = simple({1, 2, 3, 4});
  ASSERT_TRUE(run_until(c, [&] {
    return all_have(c, {1, 2, 3, 4}, target) &&
           c.raft(1).commit_index() >= c.raft(1).membership_index();
  }));
}

TEST(RaftMembership, JointConfigElectionNeedsMajorityOfBothHalves) {
  TestCluster c(3);
  freeze_in_joint(c);
  c.set_drop({});
  c.crash(1);
  // {2,3}: a majority of C_old {1,2,3}, not of C_new {1,2,3,4}.
  c.isolate(4);
  c.advance(3s);
  for (NodeId id : {2, 3}) {
    EXPECT_FALSE(c.raft(id).is_leader());
    // (A leader elected by C_old alone would have committed the joint entry
    // with its no-op and moved on to C_new.)
    EXPECT_TRUE(c.raft(id).membership().joint())
        << "elected by C_old's majority alone in a joint configuration";
    EXPECT_FALSE(has_elected(c, id)) << id;
  }
  c.heal();
  ASSERT_TRUE(run_until(
      c, [&] { return c.raft(2).is_leader() || c.raft(3).is_leader() || c.raft(4).is_leader(); }));
}

TEST(RaftMembership, NewLeaderFinishesJointConfigLeftByDeadLeader) {
  TestCluster c(3);
  freeze_in_joint(c);
  c.set_drop({});
  c.crash(1);
  Membership target = simple({1, 2, 3, 4});
  ASSERT_TRUE(run_until(c, [&] {
    NodeId l = c.leader();
    return l != kNoNode && all_have(c, {2, 3, 4}, target) &&
           c.raft(l).commit_index() >= c.raft(l).membership_index();
  })) << "joint configuration left forever after its leader died";
}

TEST(RaftMembership, LeaseInJointConfigNeedsMajorityOfBothHalves) {
  // Without check-quorum the leader stays on, so the lease rule itself is
  // what is tested.
  TestCluster c(3, [](Config& cfg) { cfg.check_quorum = false; });
  freeze_in_joint(c);
  // Heartbeat acks from 3 and 4 are lost: {1,2} acknowledges every round, a
  // majority of C_old but not of C_new.
  c.set_drop([](const Message& m) {
    return (m.from == 3 || m.from == 4) &&
           (m.type() == MessageType::kHeartbeatReply || m.type() == MessageType::kAppendReply);
  });
  // Past any lease earned under the joint rule before the drops began.
  c.advance(2500ms);
  ASSERT_TRUE(c.raft(1).is_leader());
  ASSERT_TRUE(c.raft(1).membership().joint()) << "the joint entry committed under C_old alone";
  EXPECT_FALSE(c.raft(1).lease_valid(c.now())) << "lease counted under C_old alone";
  ASSERT_TRUE(c.raft(1).read(ReadMode::kReadIndex, 7, c.now()).ok());
  c.advance(300ms);
  for (const ReadResult& r : c.node(1).reads) {
    EXPECT_FALSE(r.request_id == 7 && r.granted()) << "read-index confirmed by C_old alone";
  }
}

TEST(RaftMembership, ConfigEntryEndsLeaseUntilARoundAfterItIsAcked) {
  TestCluster c(3);
  stable_leader(c, 1);
  ASSERT_TRUE(c.raft(1).lease_valid(c.now()));
  // Hold every heartbeat acknowledgement.
  c.set_drop([](const Message& m) { return m.type() == MessageType::kHeartbeatReply; });
  ASSERT_TRUE(c.raft(1).add_learner(4, c.now()).ok());
  EXPECT_FALSE(c.raft(1).lease_valid(c.now())) << "lease kept across a configuration append";
  ASSERT_TRUE(c.raft(1).read(ReadMode::kLease, 5, c.now()).ok());
  c.advance(100ms);
  for (const ReadResult& r : c.node(1).reads) {
    EXPECT_FALSE(r.request_id == 5 && r.via_lease) << "lease read served from the old lease";
  }
  c.set_drop({});
  c.advance(200ms);
  EXPECT_TRUE(c.raft(1).lease_valid(c.now())) << "lease not re-earned by a later round";
  bool served = false;
  for (const ReadResult& r : c.node(1).reads)
    served |= r.request_id == 5 && r.granted();
  EXPECT_TRUE(served);
}

// --- removal
// --------------------------------------------------------------------------------------

TEST(RaftMembership, RemovedVoterLeavesThroughJointConfig) {
  TestCluster c(3);
  stable_leader(c, 1);
  auto idx = c.raft(1).remove_member(3, c.now());
  ASSERT_TRUE(idx.ok());
  EXPECT_TRUE(c.raft(1).membership().joint());
  Membership target = simple({1, 2});
  ASSERT_TRUE(run_until(c, [&] {
    return all_have(c, {1, 2}, target) && c.raft(1).commit_index() >= c.raft(1).membership_index();
  }));
  // 3 is out: losing it costs nothing; losing 2 stops commits.
  c.crash(3);
  auto w = c.raft(1).propose("a", 1, c.now(), kFar);
  ASSERT_TRUE(run_until(c, [&] { return c.raft(1).commit_index() >= *w; }));
}

TEST(RaftMembership, RemovingTheLeaderHandsOverFirst) {
  TestCluster c(3);
  stable_leader(c, 1);
  auto r = c.raft(1).remove_member(1, c.now());
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.error().kind(), base::ErrorKind::kNotLeader);
  NodeId next = r.error().hint();
  ASSERT_TRUE(next == 2 || next == 3);
  ASSERT_TRUE(run_until(c, [&] {
    return c.raft(next).is_leader() &&
           c.raft(next).commit_index() >= c.raft(next).status().term_start_index;
  }));
  ASSERT_TRUE(c.raft(next).remove_member(1, c.now()).ok());
  Membership target = simple({2, 3});
  ASSERT_TRUE(run_until(c, [&] { return all_have(c, {2, 3}, target); }));
  EXPECT_FALSE(c.raft(1).is_leader());
}

TEST(RaftMembership, RemovedLeaderWithoutCaughtUpTargetFinishesThenStepsDown) {
  TestCluster c(3);
  stable_leader(c, 1);
  // The followers are behind: their acknowledgements of the latest write
  // are lost, so nobody is caught up to hand over to.
  c.set_drop([](const Message& m) { return m.type() == MessageType::kAppendReply; });
  ASSERT_TRUE(c.raft(1).propose("w", 1, c.now(), kFar).ok());
  c.settle();
  auto r = c.raft(1).remove_member(1, c.now());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(c.raft(1).membership().voters, (std::vector<NodeId>{2, 3}));
  uint64_t elections = c.raft(1).status().elections_started;
  c.set_drop({});
  ASSERT_TRUE(run_until(c, [&] { return !c.raft(1).is_leader(); }));
  Membership target = simple({2, 3});
  EXPECT_EQ(c.raft(1).membership(), target);
  EXPECT_GE(c.raft(1).commit_index(), c.raft(1).membership_index())
      << "stepped down before C_new committed";
  EXPECT_FALSE(c.raft(1).is_voter());
  ASSERT_TRUE(run_until(c, [&] { return c.raft(2).is_leader() || c.raft(3).is_leader(); }));
  c.advance(2s);
  EXPECT_EQ(c.raft(1).status().elections_started, elections) << "a removed node campaigned";
  EXPECT_TRUE(c.raft(2).is_leader() || c.raft(3).is_leader());
}

// --- member addresses ------------------------------------------------------------------

TEST(RaftMembership, NewMemberAddressIsCarriedThroughJointAndLeaveOnEveryReplica) {
  TestCluster c(3);
  stable_leader(c, 1);
  c.add_node(4);
  const std::vector<MemberAddress> addrs{{1, "h1:7100"}, {4, "h4:7400"}, {9, "h9:7900"}};
  auto idx = c.raft(1).add_member(4, c.now(), addrs);
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  EXPECT_EQ(c.raft(1).membership().addresses,
            (std::vector<MemberAddress>{{1, "h1:7100"}, {4, "h4:7400"}}))
      << "9 is no member: its address must not be recorded";
  Membership target = simple({1, 2, 3, 4});
  target.addresses = {{1, "h1:7100"}, {4, "h4:7400"}};
  ASSERT_TRUE(run_until(c, [&] {
    return all_have(c, {1, 2, 3, 4}, target) &&
           c.raft(1).commit_index() >= c.raft(1).membership_index();
  }));
  // Every configuration on the way (learner, joint, leave) had them.
  for (const Membership& m : applied_configs(c, 2))
    EXPECT_EQ(*m.address_of(4), "h4:7400") << to_string(m);
  // And a restart finds them in the log.
  c.crash(3);
  c.start_node(3);
  EXPECT_EQ(c.raft(3).membership(), target);
}

// A member added with a lower id than some voter (4 into {1, 2, 3, 5}): the
// change's lists are searched sorted, so the new id appended at the end of an
// unsorted list lost its address (restarted nodes could never dial it).
TEST(RaftMembership, MemberWithALowerIdThanAVoterKeepsItsAddress) {
  TestCluster c(3);
  stable_leader(c, 1);
  c.add_node(5);
  const std::vector<MemberAddress> first{{5, "h5:7500"}};
  ASSERT_TRUE(c.raft(1).add_member(5, c.now(), first).ok());
  ASSERT_TRUE(run_until(c, [&] {
    return c.raft(1).membership() == [] {
      Membership m = simple({1, 2, 3, 5});
      m.addresses = {{5, "h5:7500"}};
      return m;
    }() && c.raft(1).commit_index() >= c.raft(1).membership_index();
  }));
  c.add_node(4);
  const std::vector<MemberAddress> second{{4, "h4:7400"}, {5, "h5:7500"}};
  auto idx = c.raft(1).add_member(4, c.now(), second);
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  EXPECT_NE(c.raft(1).membership().address_of(4), nullptr) << to_string(c.raft(1).membership());
  Membership target = simple({1, 2, 3, 4, 5});
  target.addresses = {{4, "h4:7400"}, {5, "h5:7500"}};
  ASSERT_TRUE(run_until(c, [&] {
    return all_have(c, {1, 2, 3, 4, 5}, target) &&
           c.raft(1).commit_index() >= c.raft(1).membership_index();
  }));
  for (const Membership& m : applied_configs(c, 2))
    if (m.contains(4)) EXPECT_EQ(*m.address_of(4), "h4:7400") << to_string(m);
}

TEST(RaftMembership, RemovedMemberAddressIsDroppedOnceItLeaves) {
  TestCluster c(3);
  stable_leader(c, 1);
  c.add_node(4);
  ASSERT_TRUE(
      c.raft(1).add_learner(4, c.now(), std::vector<MemberAddress>{{3, "h3"}, {4, "h4"}}).ok());
  ASSERT_TRUE(run_until(c, [&] { return !c.raft(1).member_change_in_progress(); }));
  auto r = c.raft(1).remove_member(3, c.now());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  // Joint: 3 is still an (outgoing) voter and keeps its address.
  ASSERT_TRUE(c.raft(1).membership().joint());
  EXPECT_NE(c.raft(1).membership().address_of(3), nullptr);
  ASSERT_TRUE(run_until(c, [&] { return !c.raft(1).member_change_in_progress(); }));
  EXPECT_EQ(c.raft(1).membership().address_of(3), nullptr);
  EXPECT_NE(c.raft(1).membership().address_of(4), nullptr);
}

TEST(RaftMembership, RemovedNodeStaysInTheConfigurationListUntilItsRemovalCommits) {
  // The driver keeps admitting and dialing every node of every configuration
  // listed; a node dropped from that list too early (before the
  // configuration without it commits) could not receive the entries that
  // decide the change.
  TestCluster c(3);
  stable_leader(c, 1);
  auto listed = [&](NodeId who, NodeId id) {
    const Raft& r = c.raft(who);
    for (size_t i = 0; i < r.configuration_count(); ++i) {
      if (r.configuration(i).contains(id)) return true;
    }
    return false;
  };
  const uint64_t v0 = c.raft(2).configurations_version();
  c.set_drop([](const Message& m) { return m.type() == MessageType::kAppendReply; });
  auto r = c.raft(1).remove_member(3, c.now());
  ASSERT_TRUE(r.ok());
  c.advance(100ms);
  for (NodeId id : {1, 2}) {
    EXPECT_FALSE(c.raft(id).membership().voters.size() == 3) << "joint appended on " << id;
    EXPECT_TRUE(listed(id, 3)) << "3 dropped before its removal committed, on " << id;
  }
  EXPECT_NE(c.raft(2).configurations_version(), v0) << "an append must change the version";
  c.set_drop({});
  ASSERT_TRUE(run_until(
      c, [&] { return !c.raft(1).member_change_in_progress() && !listed(1, 3) && !listed(2, 3); }));
  EXPECT_EQ(c.raft(2).configuration_count(), 1u);
}

TEST(RaftMembership, BrandNewLearnerFarBehindLearnsAddressesFromTheSnapshot) {
  TestCluster c(3, [](Config& cfg) {
    cfg.snapshot_entries_max = 20;
    cfg.snapshot_keep_entries = 5;
    cfg.snapshot_timeout_ms = 400;
  });
  stable_leader(c, 1);
  c.add_node(4);
  // A first change records addresses; then the log moves far past it.
  ASSERT_TRUE(
      c.raft(1).add_learner(4, c.now(), std::vector<MemberAddress>{{2, "h2"}, {4, "h4"}}).ok());
  c.crash(4);
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(c.raft(1).propose("v" + std::to_string(i), 0, c.now(), kFar).ok());
    c.settle();
  }
  ASSERT_TRUE(run_until(c, [&] { return c.node(1).disk->first_index() > 20; }));
  // Node 4's disk is empty (it crashed before anything was durable or it
  // lost it): it starts with no configuration at all.
  c.node(4).disk = std::make_unique<MemoryStorage>();
  c.start_node(4);
  EXPECT_TRUE(c.raft(4).membership().voters.empty());
  ASSERT_TRUE(run_until(c, [&] { return c.raft(4).applied_index() >= c.raft(1).commit_index(); }));
  EXPECT_GE(c.node(4).installs, 1u) << "caught up by snapshot";
  EXPECT_EQ(c.raft(4).membership(), c.raft(1).membership());
  ASSERT_NE(c.raft(4).membership().address_of(2), nullptr);
  EXPECT_EQ(*c.raft(4).membership().address_of(4), "h4");
  EXPECT_EQ(c.raft(4).status().elections_started, 0u);
}

// --- stuck changes ------------------------------------------------------------------------------

TEST(RaftMembership, StuckPromotionIsAbandonedWithItsLearner) {
  TestCluster c(3);
  stable_leader(c, 1);
  // Node 4 never comes up: it can never catch up.
  ASSERT_TRUE(c.raft(1).add_member(4, c.now()).ok());
  c.advance(1s);
  EXPECT_TRUE(c.raft(1).member_change_in_progress());
  EXPECT_EQ(c.raft(1).add_member(5, c.now()).error().kind(), base::ErrorKind::kBusy);
  ASSERT_TRUE(c.raft(1).abandon_member_change(c.now()).ok());
  ASSERT_TRUE(run_until(c, [&] { return !c.raft(1).member_change_in_progress(); }));
  EXPECT_EQ(c.raft(1).membership(), simple({1, 2, 3}));
  EXPECT_EQ(c.raft(1).abandon_member_change(c.now()).error().kind(),
            base::ErrorKind::kInvalidArgument);
}

TEST(RaftMembership, StuckJointConfigIsAbandonedBackToOldConfig) {
  TestCluster c(3);
  Index joint = freeze_in_joint(c);
  c.set_drop({});
  // C_new {1,2,3,4} has no majority reachable from {1,2}; C_old has.
  c.isolate(3);
  c.isolate(4);
  c.advance(300ms);
  ASSERT_LT(c.raft(1).commit_index(), joint);
  ASSERT_TRUE(c.raft(1).is_leader());
  auto r = c.raft(1).abandon_member_change(c.now());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_TRUE(run_until(
      c, [&] { return c.raft(1).commit_index() >= *r; }, 2s));
  EXPECT_EQ(c.raft(1).membership(), simple({1, 2, 3}));
  EXPECT_FALSE(c.raft(1).member_change_in_progress());
}

}  // namespace
}  // namespace nori::raft
