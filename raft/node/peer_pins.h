// PeerPins: the incarnation each peer node proved in its first handshake
// with this core, kept in <data_dir>/peers-core-<core> so that a peer whose
// disk was wiped (a new incarnation) is refused by the transport
// (net::Member::incarnation, Refusal::kStaleIncarnation) instead of passing
// for its former self with a forgotten vote and log. A member removed from
// every configuration is unpinned, so it can come back (new data, `join`)
// through membership change.
//
// File: one "node incarnation" line per pinned peer, replaced atomically
// (temporary file, fsync, rename, directory fsync). Written once per peer
// per pin (first handshake, removal): rare, small, blocking on the core.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

class PeerPins {
 public:
  explicit PeerPins(std::string path) : path_(std::move(path)) {}
  base::Status load();
  // 0 when `peer` is not pinned (any incarnation is accepted).
  uint64_t of(NodeId peer) const {
    auto it = pins_.find(peer);
    return it == pins_.end() ? 0 : it->second;
  }
  // Pins `peer` to `incarnation` if it has no pin; true if it changed.
  base::Result<bool> pin(NodeId peer, uint64_t incarnation);
  base::Status unpin(NodeId peer);

 private:
  base::Status save() const;
  std::string path_;
  std::map<NodeId, uint64_t> pins_;
};

}  // namespace nori::raft
