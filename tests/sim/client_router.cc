#include "tests/sim/client_router.h"

#include <algorithm>
#include <utility>

#include "runtime/base/assert.h"

namespace nori::sim {

ClientRouter::ClientRouter(std::vector<raft::NodeId> founders, size_t rotation_start)
    : members_(std::move(founders)), cursor_(rotation_start) {
  NORI_ASSERT(!members_.empty(), "a client must know at least one member");
  NORI_ASSERT(std::is_sorted(members_.begin(), members_.end()) &&
                  std::adjacent_find(members_.begin(), members_.end()) == members_.end(),
              "founding members must be sorted and unique");
}

ClientRouter::Target ClientRouter::next(raft::NodeId node_ids) {
  NORI_ASSERT(node_ids >= 1, "no node id to route to");
  if (leader_ != raft::kNoNode) return {leader_, Route::kLeader};
  for (size_t i = 0; i < members_.size(); ++i) {
    const raft::NodeId t = members_[cursor_++ % members_.size()];
    if (!silent_.contains(t)) return {t, Route::kMember};
  }
  // Every member it knows was silent: they are presumably gone (replaced,
  // down for good); any node that answers names the leader or hands over a
  // newer configuration.
  for (raft::NodeId i = 0; i < node_ids; ++i) {
    const raft::NodeId t = 1 + cursor_++ % node_ids;
    if (!silent_.contains(t)) return {t, Route::kAnyId};
  }
  // Every id was silent (the whole cluster down or cut off): start over.
  silent_.clear();
  return {static_cast<raft::NodeId>(1 + cursor_++ % node_ids), Route::kAnyId};
}

void ClientRouter::on_reply(raft::NodeId from, bool served, bool not_leader, raft::NodeId hint) {
  NORI_ASSERT(!(served && not_leader), "a reply cannot both serve and refuse");
  silent_.clear();
  if (served) {
    leader_ = from;
    return;
  }
  if (!not_leader) return;  // busy, no quorum...: it may still lead; retry there
  if (hint != raft::kNoNode && hint != from) {
    leader_ = hint;
  } else if (leader_ == from) {
    leader_ = raft::kNoNode;  // the node we took for the leader knows no leader
  }
}

void ClientRouter::on_view(raft::Index membership_index, std::vector<raft::NodeId> members,
                           bool from_leader) {
  if (members.empty()) return;
  if (!from_leader && membership_index <= members_index_) return;
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  members_ = std::move(members);
  members_index_ = membership_index;
}

void ClientRouter::on_silent(raft::NodeId to) {
  silent_.insert(to);
  if (to == leader_) leader_ = raft::kNoNode;
}

}  // namespace nori::sim
