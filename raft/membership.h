// Membership: the configuration of one Raft group (who votes, who only
// learns), as carried by configuration entries (EntryType::kConfig) in the
// log and by snapshot metadata.
//
// A configuration entry holds the WHOLE target configuration (not a delta),
// so a replica's configuration is simply that of the latest configuration
// entry in its log (appended, not necessarily committed: Raft thesis 4.1),
// or of its snapshot/bootstrap when the log has none. Truncating an entry
// therefore reverts to the previous one with no extra bookkeeping.
//
// Shapes (one change at a time; raft/raft.h enforces the transitions):
//   simple   voters = C, voters_outgoing = {}
//   joint    voters = C_new, voters_outgoing = C_old (both majorities needed)
//   learners receive the log, never vote and are in no quorum; `promote` is
//   the subset of learners that the leader turns into voters (via a joint
//   configuration) once they have caught up: add_member() puts a node there.
//
// Plain data, any thread. Encoding (version 1, little endian varints):
//   u8 version=1, then four lists (voters, voters_outgoing, learners,
//   promote), each varint count + varint ids. decode() accepts only sorted,
//   unique, non-zero ids and the invariants of validate().
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "raft/quorum.h"
#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

// Bound on the members one configuration may list (a decoded entry larger
// than that is corrupt, not a configuration).
inline constexpr size_t kMembersMax = 1024;

struct Membership {
  std::vector<NodeId> voters;           // incoming (the only set outside a joint config)
  std::vector<NodeId> voters_outgoing;  // non-empty only in a joint configuration
  std::vector<NodeId> learners;         // disjoint from both voter sets
  std::vector<NodeId> promote;          // subset of learners, promoted once caught up

  bool joint() const { return !voters_outgoing.empty(); }
  bool is_voter(NodeId id) const;  // in either voter set
  bool is_learner(NodeId id) const;
  bool contains(NodeId id) const { return is_voter(id) || is_learner(id); }
  // Every member but `self` (voters of both halves and learners), sorted.
  std::vector<NodeId> others(NodeId self) const;
  QuorumConfig quorum() const;

  // Sorts and dedups every list (for callers building one by hand).
  void normalize();
  // Lists sorted and unique, ids non-zero, learners disjoint from voters,
  // promote a subset of learners, at most kMembersMax members.
  base::Status validate() const;

  std::string encode() const;
  static base::Result<Membership> decode(std::string_view data);

  bool operator==(const Membership&) const = default;
};

std::string to_string(const Membership& m);

}  // namespace nori::raft
