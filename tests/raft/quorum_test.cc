#include "raft/quorum.h"

#include <gtest/gtest.h>

#include <map>

namespace nori::raft {
namespace {

TEST(Quorum, MajorityValueIsTheQuorumThLargest) {
  MajorityConfig c({1, 2, 3, 4, 5});
  std::map<NodeId, uint64_t> match{{1, 10}, {2, 7}, {3, 9}, {4, 1}, {5, 3}};
  EXPECT_EQ(c.quorum_value([&](NodeId id) { return match[id]; }), 7u);
  MajorityConfig three({3, 1, 2, 2});
  EXPECT_EQ(three.size(), 3u);
  EXPECT_EQ(three.quorum(), 2u);
}

TEST(Quorum, JointConfigNeedsBothMajorities) {
  QuorumConfig joint(MajorityConfig({1, 2, 3}), MajorityConfig({3, 4, 5}));
  std::map<NodeId, uint64_t> match{{1, 10}, {2, 10}, {3, 2}, {4, 2}, {5, 1}};
  // The incoming majority has 10, the outgoing only 2: committed is 2.
  EXPECT_EQ(joint.quorum_value([&](NodeId id) { return match[id]; }), 2u);
  std::map<NodeId, int> votes{{1, 1}, {2, 1}, {3, 0}, {4, 0}, {5, -1}};
  EXPECT_EQ(joint.vote_result([&](NodeId id) { return votes[id]; }), VoteResult::kLost);
  votes[4] = 1;
  votes[3] = 1;
  EXPECT_EQ(joint.vote_result([&](NodeId id) { return votes[id]; }), VoteResult::kWon);
  EXPECT_EQ(joint.all_voters(), (std::vector<NodeId>{1, 2, 3, 4, 5}));
}

TEST(Quorum, VoteResultIsPendingUntilDecided) {
  MajorityConfig c({1, 2, 3});
  std::map<NodeId, int> v{{1, 1}, {2, -1}, {3, -1}};
  EXPECT_EQ(c.vote_result([&](NodeId id) { return v[id]; }), VoteResult::kPending);
  v[2] = 0;
  EXPECT_EQ(c.vote_result([&](NodeId id) { return v[id]; }), VoteResult::kPending);
  v[3] = 0;
  EXPECT_EQ(c.vote_result([&](NodeId id) { return v[id]; }), VoteResult::kLost);
}

TEST(Quorum, LargeConfigsSpillToTheHeap) {
  std::vector<NodeId> ids;
  for (NodeId i = 1; i <= 33; ++i)
    ids.push_back(i);
  MajorityConfig c(ids);
  EXPECT_EQ(c.quorum_value([](NodeId id) { return id; }), 17u);
}

}  // namespace
}  // namespace nori::raft
