// Which nodes a link accepts (docs/wire-format.md section 1, refusals 3 and 4).
//
// The node layer feeds it, on every core, with the members of every
// configuration in the log or the latest snapshot (joint configurations
// included); the static peer list of the command line only bootstraps a new
// cluster; and the nodes its log has never named that an admitted member's
// address book introduces (a member added while this node was down:
// raft/node/address_gossip.h, docs/net.md "Members a node missed"). Each member comes with the
// incarnation id created with its data directory: a node whose disk was wiped gets a new one and is
// refused as `stale_incarnation` until a membership change admits it again. Incarnation 0 means
// "not known yet" (bootstrap list): any incarnation is accepted for that node; the node layer
// records the real one in the configuration when it adds the member.
//
// Owned by one core's transport; not thread-safe (each core keeps its copy).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>

#include "net/wire.h"

namespace nori::net {

struct Member {
  NodeId node = 0;
  uint64_t incarnation = 0;  // 0: not known yet (bootstrap)
};

class AcceptPolicy {
 public:
  AcceptPolicy() = default;
  explicit AcceptPolicy(std::span<const Member> members) { set_members(members); }

  // Replaces the accepted set. A node listed twice keeps its last entry (pass
  // configurations oldest first, so the newest incarnation wins).
  void set_members(std::span<const Member> members) {
    members_.clear();
    for (const Member& m : members)
      members_[m.node] = m.incarnation;
  }

  // kNone, kUnknownNode or kStaleIncarnation.
  Refusal check(NodeId node, uint64_t incarnation) const {
    auto it = members_.find(node);
    if (it == members_.end()) return Refusal::kUnknownNode;
    if (it->second != 0 && it->second != incarnation) return Refusal::kStaleIncarnation;
    return Refusal::kNone;
  }
  bool contains(NodeId node) const { return members_.contains(node); }
  size_t size() const { return members_.size(); }

 private:
  std::unordered_map<NodeId, uint64_t> members_;
};

}  // namespace nori::net
