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
// Addresses: a configuration may also carry the transport address of some
// members (opaque to the core; the node layer stores "host:port" of the
// member's core 0). A joining node's address exists nowhere but here, so
// every replica learns it from the log (or the snapshot) that admits it; the
// node layer also records the addresses it knows of the other members when
// it proposes a change, so a new member can reach everyone. Every later
// configuration the core builds is a copy of the previous one, so addresses
// are carried forward; propose_membership() drops those of nodes that are
// no longer members.
//
// Plain data, any thread. Encoding (version 1, little endian varints):
//   u8 version=1, then four lists (voters, voters_outgoing, learners,
//   promote), each varint count + varint ids; then, only when at least one
//   address is recorded, varint count (>= 1) + (varint id, varint length,
//   bytes) per address, ids ascending. A configuration without addresses is
//   byte-identical to the format before addresses existed, and entries
//   written then decode unchanged (no trailer: no addresses). decode()
//   accepts only sorted, unique, non-zero ids and the invariants of
//   validate().
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
// Bound on one recorded address ("host:port" in practice; an IPv6 literal
// with a port is under 64 bytes).
inline constexpr size_t kMemberAddressBytesMax = 255;
// Bound on all recorded addresses of one configuration together, so that
// the whole encoding (ids included) stays below the 64 KiB a snapshot chunk
// may carry for its configuration (raft/codec.h,
// kDecodeSnapshotMembershipBytesMax): at most 2048 ids in the lists and 1024
// addressed ids at 10 bytes each, plus these bytes, is under 48 KiB.
inline constexpr size_t kMemberAddressesBytesMax = 16 << 10;

struct MemberAddress {
  NodeId id = kNoNode;
  std::string address;  // non-empty, at most kMemberAddressBytesMax bytes
  bool operator==(const MemberAddress&) const = default;
};

struct Membership {
  std::vector<NodeId> voters;           // incoming (the only set outside a joint config)
  std::vector<NodeId> voters_outgoing;  // non-empty only in a joint configuration
  std::vector<NodeId> learners;         // disjoint from both voter sets
  std::vector<NodeId> promote;          // subset of learners, promoted once caught up
  // Addresses of some members (sorted by id, unique, members only).
  std::vector<MemberAddress> addresses;

  bool joint() const { return !voters_outgoing.empty(); }
  bool is_voter(NodeId id) const;  // in either voter set
  bool is_learner(NodeId id) const;
  bool contains(NodeId id) const { return is_voter(id) || is_learner(id); }
  // Every member but `self` (voters of both halves and learners), sorted.
  std::vector<NodeId> others(NodeId self) const;
  QuorumConfig quorum() const;
  // The recorded address of `id`, or nullptr.
  const std::string* address_of(NodeId id) const;
  // Records (replaces) the address of `id`; empty `address` erases it.
  void set_address(NodeId id, std::string address);
  // Drops the addresses of nodes that are not members.
  void drop_addresses_of_non_members();

  // Sorts and dedups every list (for callers building one by hand; of two
  // addresses for one id the last wins).
  void normalize();
  // Lists sorted and unique, ids non-zero, learners disjoint from voters,
  // promote a subset of learners, at most kMembersMax members, addresses
  // only of members, non-empty and at most kMemberAddressBytesMax bytes
  // (kMemberAddressesBytesMax together).
  base::Status validate() const;

  std::string encode() const;
  static base::Result<Membership> decode(std::string_view data);

  bool operator==(const Membership&) const = default;
};

std::string to_string(const Membership& m);

}  // namespace nori::raft
