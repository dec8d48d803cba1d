// The storage contract between the Raft core and its driver.
//
// Two halves:
//
// 1. What the core ASKS the driver to persist, in Ready (raft/ready.h): a hard
//    state (term, vote) and/or log entries, possibly after truncating a
//    conflicting suffix. The driver acknowledges durability back to the core:
//      Raft::hard_state_persisted(hs)         once that (term, vote) is durable
//      Raft::entries_persisted(index, term)   once every entry up to `index`
//                                             (and any truncation before it)
//                                             is durable and entry `index` has
//                                             term `term`
//    Acknowledgements may arrive late, coalesced or out of date; the core
//    ignores any that no longer match its log. A hard-state record may become
//    durable ahead of queued entry writes (a vote waits only for its own
//    record); entries become durable in index order.
//
// 2. What the core READS from the driver: LogStorage, the durable log, for
//    entries the core no longer keeps in memory (a lagging follower, entries
//    to apply after the in-memory cache was trimmed) and for the state at
//    start. The core never reads an index it has not seen acknowledged as
//    durable through this instance, except at construction.
//
// The rules the core relies on (DESIGN.md, "Durability"), and how messages in
// Ready are marked accordingly (Ready::OutMessage::after):
//   - a term is durable before any message is sent in it;
//   - a candidate counts its own vote, and a voter grants one, only once it is
//     durable;
//   - an append is acknowledged only once its entries (and any truncation) are
//     durable;
//   - heartbeat replies never wait for a data sync (only for a term change).
//
// Snapshots (raft/raft.h, "Snapshots"):
//   Taking one: on Ready::snapshot->request the driver writes the state
//   machine's point-in-time view to a file (temporary file, sync, rename,
//   sync the directory), then calls Raft::snapshot_taken(meta); the core
//   answers with Ready::snapshot->compact_before, below which the log may be dropped
//   (first_index() moves up; term(first_index() - 1) must still answer, and
//   snapshot_meta() returns the new snapshot from then on).
//   Installing one (a follower, after the last chunk): in this order, each
//   step durable before the next, so that a crash at any point leaves either
//   the old state or the new one, never a mix:
//     1. the snapshot file is complete and durable, its whole-file digest and
//        its identity (index, term at index) verified;
//     2. a log record resetting the group to (index, term, membership) is
//        durable: snapshot_meta() returns it from then on, and the log keeps
//        entries after `index` only if it holds entry `index` with term
//        `term` (otherwise the whole log is dropped and last_index() ==
//        index);
//     3. the state machine is restored from the file;
//     4. Raft::snapshot_installed(meta) is called (it acknowledges to the
//        leader).
//   Recovery: a driver restarting after step 2 restores the state machine
//   from the snapshot before constructing Raft (Config::applied >= the
//   snapshot index); entries at or below the snapshot index are never
//   applied again. Temporary and superseded snapshot files are removed.
//
// Asynchronous reads: entries() never blocks. A storage whose entries are
// all in memory (MemoryStorage) answers at once. A disk-backed one
// (raft/node/wal_storage.h) answers from memory what it can and, for an entry
// it would have to read from disk, answers kUnavailable and starts one
// non-blocking read (bounded: one per group, a byte budget per read); when
// the read completes, the driver makes the entries readable and calls
// Raft::entries_fetched(), which retries what waited (appends to lagging
// followers, committed entries to apply) in the same round machinery. The
// core treats kUnavailable like any failed read (nothing sent, nothing
// applied, state unchanged) except that it also remembers which followers
// wait, so the re-drive is immediate rather than at the next heartbeat or
// tick. Those retries (next heartbeat reply, next tick) still happen and
// simply find the read still under way.
//
// Threading: LogStorage is called only from inside Raft's methods, on the
// thread that owns that Raft object. Calls return at once; a driver backed by
// a disk log keeps an in-memory index so term() and bounds are cheap. The
// construction-time reads (hard_state, snapshot_meta, config_entries) may
// be served by a blocking read path: they run before the group serves.
#pragma once

#include <cstdint>
#include <vector>

#include "raft/membership.h"
#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

// What a snapshot stands for: the state machine with every entry up to
// `index` applied, `term` the term of entry `index`, and `membership` the
// configuration in effect there (that of the latest configuration entry at or
// below `index`, both halves if joint). index 0 = no snapshot.
struct SnapshotMeta {
  Index index = 0;
  Term term = 0;
  Membership membership;

  bool operator==(const SnapshotMeta&) const = default;
};

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The durable hard state at startup ({0, 0, 0} for a new replica).
  virtual HardState hard_state() const = 0;

  // The first index whose entry is available (1 with no compaction; after a
  // snapshot, snapshot index + 1). term(first_index() - 1) must still answer.
  virtual Index first_index() const = 0;

  // The last durable index (first_index() - 1 when empty).
  virtual Index last_index() const = 0;

  // The term of entry `index`, for first_index()-1 <= index <= last_index();
  // term(0) = 0. kNotFound if compacted away or beyond the log.
  virtual base::Result<Term> term(Index index) const = 0;

  // Appends to `out` the entries [lo, hi) in order, stopping early (but always
  // returning at least one entry if lo < hi) once bytes_max would be
  // exceeded (entry_bytes()); a storage may also stop early at the end of
  // what it holds in memory. kNotFound if lo was compacted away.
  // kUnavailable: entry lo is not in memory; the storage has started (or
  // already has under way) a read of it and the driver calls
  // Raft::entries_fetched() when it completes ("Asynchronous reads" above).
  // kIo or kCorruption if the log cannot be read: the core stops replicating
  // to that follower until its next trigger (a heartbeat reply) and stops
  // applying until its next tick(), then asks again. Nothing is appended to
  // `out` on error.
  virtual base::Status entries(Index lo, Index hi, uint64_t bytes_max,
                               std::vector<Entry>& out) const = 0;

  // The snapshot the durable log starts after (index 0 if none). Its
  // membership is the configuration at first_index() - 1; with no snapshot
  // the core starts from Config::voters/learners (bootstrap). Read once, at
  // construction.
  virtual SnapshotMeta snapshot_meta() const { return {}; }

  // Appends to `out`, in index order, every configuration entry
  // (EntryType::kConfig) with index in [lo, last_index()]. Read once, at
  // construction, to find the configuration in effect (the latest entry, not
  // necessarily committed). The default scans entries(); a disk-backed
  // storage that indexes configuration entries should override it.
  virtual base::Status config_entries(Index lo, std::vector<Entry>& out) const;
};

}  // namespace nori::raft
