// The client ports of nodes that joined after this node was started, kept in
// <data-dir>/kv-peers so a restarted node can still forward to them
// (--cluster lists only the nodes known when the process was started).
// Filled by CLUSTER ADDNODE on the node that runs it, by its best-effort
// NORI.PEER announcement on the others, and by a NORI.WHOIS lookup on a node
// that missed the announcement and must forward to that node (kv/server.cc,
// membership section; docs/kv.md "Membership"). Entries are never removed:
// a node that leaves stops leading shards, so nobody forwards to it.
//
// Format: one "id host port" line per node. save() replaces the file
// atomically (temporary file, fsync, rename, directory fsync); load() of a
// missing file is empty; a malformed line is an error (kCorruption) naming it.
//
// Blocking file I/O: called at start (before the runtime serves) and, on
// core 0 only, when a port is learned (CLUSTER ADDNODE / NORI.PEER / a
// NORI.WHOIS answer: once per joined node); the file holds a line per
// joined node. Durable when save_peer_book returns ok.
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
