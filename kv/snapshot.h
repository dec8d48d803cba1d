// norikv's side of the node's snapshot hooks (raft/node/node.h GroupHooks):
// a shard's Store captured as a point-in-time copy and written out on the
// node's snapshot thread, and a restore that replaces the shard's Store from
// a snapshot stream.
//
// Capture (on the shard's core): Store::clone(), a deep copy of keys and
// sessions. That is the point-in-time view: the live Store goes on applying
// while the copy is serialized off the reactor. Its cost is O(keys) on the
// reactor and one extra copy of the shard's state in memory while the
// snapshot is written (never the serialized snapshot: it streams to the
// file through a 64 KiB buffer). A persistent (copy-on-write) map would make
// capture O(1); see docs/kv.md "Weak spots".
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
