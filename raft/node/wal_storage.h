// WalStorage: the Raft core's LogStorage (raft/storage.h) for one group, read
// from its core's WAL (wal/wal.h).
//
// What it is for: the core reads its durable state at start (hard state, log
// bounds, configuration entries) and, later, entries it no longer caches (a
// lagging follower's catch-up, a restart applying its log).
//
// Reads never block the reactor (raft/storage.h, "Asynchronous reads"):
// entries() answers from the WAL's in-memory chunks or from this group's
// read cache (the entries of the last completed fetch). For an entry in
// neither it answers kUnavailable (or, if some entries before it were
// served, stops there) and starts one fetch through the FetchStarter the host
// set: the host runs Wal::read_entries (io_uring) on the reactor and, when it
// completes, calls fetch_done() and then Raft::entries_fetched(), and marks
// the group dirty so the round machinery sends and applies what waited.
// Bounds: at most one fetch in flight per group (later misses while one runs
// start nothing); each reads at most fetch_bytes_max payload bytes, and the
// read cache holds one fetch's result (replaced by the next), so a group
// holds at most fetch_bytes_max of fetched entries.
//
// Correctness of the read cache: an entry is served from it only if the
// WAL's index still has that index with the same term (log matching: same
// index and term, same entry), so a truncation or snapshot reset between
// the fetch and its use can never serve a stale entry.
//
// Failed fetches (kIo, kCorruption from the WAL read, kNotFound if the range
// was compacted meanwhile): the error is kept and returned by the next
// entries() call that misses, once; the core then behaves as for any failed
// read (raft/storage.h: retried at the next heartbeat reply for a follower,
// at the next tick for applying), and that retry starts a new fetch.
//
// Construction-time reads: Raft's constructor scans the configuration
// entries synchronously. The host scans them first with Wal::read_entries
// (CoreHost::add_group, a coroutine) and hands them over with
// set_config_entries(); config_entries() answers from that list and fails
// (kUnavailable) if it was not set while some entry is only on disk.
//
// Log payloads in the WAL are one byte of EntryType followed by the entry's
// data (encode_payload / decode_payload).
//
// Log bounds after snapshots: first_index() and term(first_index() - 1) come
// from the WAL's compaction mark or reset record (wal/group_index.h: the
// group's log starts after that point, whose term the WAL keeps), so they
// survive restarts and segment reclamation.
//
// Threading: the group's reactor only, like the Raft object it serves. The
// Wal must outlive it.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "raft/storage.h"
#include "wal/wal.h"

namespace nori::raft {

// Appends the WAL payload of `e` (type byte + data) to out.
void encode_payload(const Entry& e, std::string& out);
// The entry (index, term) whose WAL payload is `payload`; kCorruption if the
// type byte is not valid.
base::Status decode_payload(std::string_view payload, Index index, Term term, Entry& out);

class WalStorage final : public LogStorage {
 public:
  // Starts one asynchronous read of [lo, hi) (at most bytes_max payload
  // bytes) for this group; returns its ticket (non-zero, unique per host), or
  // 0 if it could not start (shutting down). Called from inside entries(),
  // i.e. from inside a Raft method: it must not call back into the Raft
  // object or this storage before returning (the host spawns a task).
  using FetchStarter = std::function<uint64_t(Index lo, Index hi, uint64_t bytes_max)>;

  WalStorage(wal::Wal& wal, GroupId group, uint64_t fetch_bytes_max)
      : wal_(wal), group_(group), fetch_bytes_max_(fetch_bytes_max) {}

  HardState hard_state() const override;
  Index first_index() const override;
  Index last_index() const override;
  base::Result<Term> term(Index index) const override;
  base::Status entries(Index lo, Index hi, uint64_t bytes_max,
                       std::vector<Entry>& out) const override;
  base::Status config_entries(Index lo, std::vector<Entry>& out) const override;
  // The snapshot the log starts after: the newest snapshot file whose
  // (index, term) the WAL confirms (CoreHost::recover_snapshot matches them;
  // the membership lives only in the file). Read by Raft at construction.
  SnapshotMeta snapshot_meta() const override { return snapshot_; }
  void set_snapshot_meta(const SnapshotMeta& meta) { snapshot_ = meta; }

  // The configuration entries of the log from index `lo` on (scanned by the
  // host before constructing Raft), served by config_entries() once.
  void set_config_entries(Index lo, std::vector<Entry> entries);

  void set_fetch_starter(FetchStarter f) { start_fetch_ = std::move(f); }
  // The fetch `ticket` finished with `result` (WAL payloads of [lo, ...)).
  // Ignored (false) unless it is the fetch in flight. Does not call Raft: on
  // true the host calls Raft::entries_fetched() next.
  bool fetch_done(uint64_t ticket, base::Result<std::vector<wal::Entry>> result);
  bool fetch_in_flight() const { return in_flight_ != 0; }
  uint64_t fetch_bytes_max() const { return fetch_bytes_max_; }

 private:
  // Starts a fetch of [lo, hi) unless one is in flight.
  void maybe_start_fetch(Index lo, Index hi) const;

  wal::Wal& wal_;
  GroupId group_;
  uint64_t fetch_bytes_max_;
  SnapshotMeta snapshot_;
  FetchStarter start_fetch_;
  // Mutable: entries() is const by the LogStorage contract; starting a fetch
  // and remembering its failure change no log content.
  mutable uint64_t in_flight_ = 0;              // ticket of the fetch in flight, 0: none
  mutable std::optional<base::Error> failure_;  // of the last fetch, reported once
  std::vector<Entry> cache_;                    // contiguous, from cache_lo_
  Index cache_lo_ = 0;
  std::optional<std::pair<Index, std::vector<Entry>>> configs_;  // set_config_entries
};

}  // namespace nori::raft
