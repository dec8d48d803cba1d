// Where a simulated client sends its next attempt: the routing a real client
// library of a Raft group does, kept apart from the simulator so that it can
// be tested on its own.
//
// What the client knows, and how it learns it:
//   - the leader: the last node that served it a write or a linearizable read
//     (only a leader can), or the node a "not leader, try X" reply named. It
//     is kept across operations; it is given up only when it does not answer
//     an attempt in time, or itself says it does not lead and names no one.
//   - the members: the configuration the client was started with (the
//     group's founding voters), replaced by a newer one whenever a reply
//     carries it (every reply carries the replying node's configuration and
//     its index: a newer index wins; the configuration of a node that just
//     served as leader wins whatever its index, since an entry a deposed
//     leader appended may carry a high index and never commit).
//   - with no leader known, each attempt goes to the next member of a
//     rotation (each client starts at its own offset, so clients do not all
//     queue behind the same silent node); a member that is not the leader
//     names it. A node that gave no reply is skipped until some node answers
//     again. Once every member it knows was silent, the list is presumably
//     stale (every member replaced, down or cut off): the rotation runs over
//     every node id it has not yet tried; once those too were all silent,
//     it starts over.
//
// The failure this prevents (docs/simulation.md, seed 2873): a client that
// forgot the leader after one timeout and guessed among every node id kept
// guessing ids retired by reimages, which never answer, while a healthy
// leader committed.
//
// Pure logic, no randomness, no clock: single-threaded, one per client.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <vector>

#include "raft/types.h"

namespace nori::sim {

class ClientRouter {
 public:
  // Why next() chose its node (trace and statistics).
  enum class Route : uint8_t { kLeader, kMember, kAnyId };

  // `founders`: the members the client is configured with (sorted, unique,
  // non-empty). `rotation_start`: this client's offset into the rotation.
  ClientRouter(std::vector<raft::NodeId> founders, size_t rotation_start);

  struct Target {
    raft::NodeId node = 0;
    Route route = Route::kLeader;
  };
  // The node for the next attempt. `node_ids`: ids 1..node_ids exist (the
  // fallback rotation's range); at least 1.
  Target next(raft::NodeId node_ids);

  // A reply from `from` (any reply: it resets the silent streak). `served`:
  // it served a write or a linearizable read, so it led when it answered.
  // `not_leader`: it refused because it does not lead; `hint` is the leader
  // it names (0: none). Other refusals (busy, no quorum) keep the leader:
  // the retry goes back to it.
  void on_reply(raft::NodeId from, bool served, bool not_leader, raft::NodeId hint);
  // The configuration a reply carried (the replying node's, at
  // `membership_index`); `from_leader` as `served` above. Empty lists (a
  // node that knows no configuration) are ignored.
  void on_view(raft::Index membership_index, std::vector<raft::NodeId> members, bool from_leader);
  // `to` gave no reply before the operation's deadline.
  void on_silent(raft::NodeId to);

  raft::NodeId leader() const { return leader_; }
  const std::vector<raft::NodeId>& members() const { return members_; }
  raft::Index members_index() const { return members_index_; }

 private:
  raft::NodeId leader_ = 0;
  std::vector<raft::NodeId> members_;  // sorted, unique
  raft::Index members_index_ = 0;      // 0: the founding configuration
  size_t cursor_ = 0;                  // rotation position (taken modulo the pool)
  // Nodes that gave no reply since the last reply from any node: skipped
  // by the rotation. At most one entry per node id.
  std::set<raft::NodeId> silent_;
};

}  // namespace nori::sim
