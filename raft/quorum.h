// Quorum arithmetic, written so that a joint configuration (C_old,new: two
// majorities, both required) drops in without touching the callers.
//
// Every quorum question the core asks is one of two shapes:
//   - "the largest value that a quorum has reached" (commit index from match
//     indexes, lease round from acknowledged heartbeat rounds, check-quorum
//     from last-heard times): quorum_value();
//   - "has a quorum granted / rejected / is it still open" (votes): vote_result().
// A MajorityConfig answers them for one voter set; QuorumConfig answers them
// for the (incoming, outgoing) pair, where the outgoing set is empty outside a
// joint change: a joint answer is the minimum (values) / the conjunction
// (votes) of the two majorities' answers.
//
// Pure functions of their inputs; no allocation on the hot paths beyond a
// small on-stack buffer for up to kVotersInline voters.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "raft/types.h"

namespace nori::raft {

enum class VoteResult : uint8_t { kPending = 0, kWon = 1, kLost = 2 };

// The number of voters above which quorum_value() allocates.
inline constexpr size_t kVotersInline = 16;

class MajorityConfig {
 public:
  MajorityConfig() = default;
  explicit MajorityConfig(std::vector<NodeId> voters);

  const std::vector<NodeId>& voters() const { return voters_; }
  bool contains(NodeId id) const;
  bool empty() const { return voters_.empty(); }
  size_t size() const { return voters_.size(); }
  size_t quorum() const { return voters_.size() / 2 + 1; }

  // The largest v such that a quorum of voters has value >= v; `value` is
  // asked once per voter. An empty config returns UINT64_MAX (it places no
  // constraint, so a joint min ignores it).
  template <typename F>
  uint64_t quorum_value(F&& value) const;

  // granted(id): 1 granted, 0 rejected, -1 no answer yet.
  template <typename F>
  VoteResult vote_result(F&& granted) const;

 private:
  std::vector<NodeId> voters_;  // sorted, unique, no kNoNode
};

class QuorumConfig {
 public:
  QuorumConfig() = default;
  explicit QuorumConfig(MajorityConfig incoming, MajorityConfig outgoing = {})
      : incoming_(std::move(incoming)), outgoing_(std::move(outgoing)) {}

  const MajorityConfig& incoming() const { return incoming_; }
  const MajorityConfig& outgoing() const { return outgoing_; }
  bool joint() const { return !outgoing_.empty(); }
  bool contains(NodeId id) const { return incoming_.contains(id) || outgoing_.contains(id); }
  // Every voter of either majority, sorted and unique.
  std::vector<NodeId> all_voters() const;

  template <typename F>
  uint64_t quorum_value(F&& value) const {
    uint64_t a = incoming_.quorum_value(value);
    uint64_t b = outgoing_.quorum_value(value);
    return a < b ? a : b;
  }
  template <typename F>
  VoteResult vote_result(F&& granted) const {
    VoteResult a = incoming_.vote_result(granted);
    VoteResult b = outgoing_.empty() ? VoteResult::kWon : outgoing_.vote_result(granted);
    if (a == VoteResult::kLost || b == VoteResult::kLost) return VoteResult::kLost;
    if (a == VoteResult::kWon && b == VoteResult::kWon) return VoteResult::kWon;
    return VoteResult::kPending;
  }

 private:
  MajorityConfig incoming_;
  MajorityConfig outgoing_;
};

// --- template definitions ------------------------------------------------------

namespace detail {
// k-th largest (1-based) of n values, n <= buffer size, in place.
uint64_t kth_largest(uint64_t* values, size_t n, size_t k);
}  // namespace detail

template <typename F>
uint64_t MajorityConfig::quorum_value(F&& value) const {
  if (voters_.empty()) return UINT64_MAX;
  uint64_t inline_buf[kVotersInline];
  std::vector<uint64_t> heap;
  uint64_t* buf = inline_buf;
  if (voters_.size() > kVotersInline) {
    heap.resize(voters_.size());
    buf = heap.data();
  }
  for (size_t i = 0; i < voters_.size(); ++i)
    buf[i] = value(voters_[i]);
  return detail::kth_largest(buf, voters_.size(), quorum());
}

template <typename F>
VoteResult MajorityConfig::vote_result(F&& granted) const {
  if (voters_.empty()) return VoteResult::kWon;
  size_t yes = 0, no = 0;
  for (NodeId id : voters_) {
    int g = granted(id);
    if (g > 0) {
      ++yes;
    } else if (g == 0) {
      ++no;
    }
  }
  if (yes >= quorum()) return VoteResult::kWon;
  if (voters_.size() - no < quorum()) return VoteResult::kLost;
  return VoteResult::kPending;
}

}  // namespace nori::raft
