// norikv's side of the node's snapshot hooks (raft/node/node.h GroupHooks):
// a shard's Store captured as a point-in-time copy and written out on the
// node's snapshot thread, and a restore that replaces the shard's Store from
// a snapshot stream.
//
// Capture (on the shard's core): Store::clone(). That is the point-in-time
// view: the live Store goes on applying while the clone is serialized on the
// node's snapshot thread, which then destroys it. The keys are a persistent
// map (kv/pmap.h) whose clone shares every node, so capture costs O(1) for
// the keys plus a copy of the client sessions (bounded by sessions_max and
// session_replies_max) on the reactor. Memory: the live Store's writes
// path-copy the trie nodes they touch while the snapshot holds them, so the
// extra memory is the part of the shard written during the snapshot, at most
// one more copy of the shard (never the serialized snapshot: it streams to
// the file through a 64 KiB buffer).
//
// Restore (on the shard's core): Store::restore streams the snapshot (format
// in docs/kv.md "Snapshot format"), verifies its trailer checksum and only
// then replaces the state; a torn or corrupt stream leaves the Store as it was.
#pragma once

#include <memory>

#include "kv/store.h"
#include "raft/node/node.h"
#include "raft/snapshot/store.h"

namespace nori::kv {

// The view of one shard at its last applied index.
std::unique_ptr<raft::SnapshotView> capture_snapshot(const Store& store);

// Replaces `store` with the snapshot read from `source`.
base::Status restore_snapshot(Store& store, raft::snapshot::SnapshotSource& source);

}  // namespace nori::kv
