// The client ports of nodes that joined after this node was started, kept in
// <data-dir>/kv-peers so a restarted node can still forward to them
// (CLUSTER ADDNODE announces them with NORI.PEER; --cluster lists only the
// nodes known when the process was started).
//
// Format: one "id host port" line per node. save() replaces the file
// atomically (temporary file, fsync, rename, directory fsync); load() of a
// missing file is empty; a malformed line is an error (kCorruption) naming it.
//
// Blocking file I/O: called at start (before the runtime serves) and on the
// rare CLUSTER ADDNODE / NORI.PEER; the file holds a line per joined node.
#pragma once

#include <map>
#include <string>

#include "kv/server.h"
#include "runtime/base/result.h"

namespace nori::kv {

base::Result<std::map<raft::NodeId, PeerClientAddress>> load_peer_book(const std::string& path);
base::Status save_peer_book(const std::string& path,
                            const std::map<raft::NodeId, PeerClientAddress>& peers);

}  // namespace nori::kv
