// MemoryStorage: an in-memory LogStorage for tests, the simulator and
// benchmarks. It holds only what the driver declares durable: a driver
// "persists" a Ready into it (persist()), and then acknowledges to the Raft
// object. A simulated crash keeps the MemoryStorage and drops everything the
// driver had not persisted yet; a restart constructs a new Raft on it.
//
//   MemoryStorage disk;
//   Raft r(config, disk, now);
//   r.take_ready(ready);
//   disk.persist(ready);                       // "fsync"
//   if (ready.hard_state) r.hard_state_persisted(*ready.hard_state, now);
//   if (!ready.entries.empty())
//     r.entries_persisted(ready.entries.back().index, ready.entries.back().term, now);
//
// Not thread-safe; owned by the same thread as the Raft object it serves.
#pragma once

#include <vector>

#include "raft/ready.h"
#include "raft/storage.h"

namespace nori::raft {

class MemoryStorage final : public LogStorage {
 public:
  MemoryStorage() = default;

  HardState hard_state() const override { return hard_state_; }
  Index first_index() const override { return first_; }
  Index last_index() const override { return first_ + entries_.size() - 1; }
  SnapshotMeta snapshot_meta() const override { return snapshot_; }
  base::Result<Term> term(Index index) const override;
  base::Status entries(Index lo, Index hi, uint64_t bytes_max,
                       std::vector<Entry>& out) const override;

  // Makes the persistence part of `ready` durable: hard state, truncation,
  // entries (asserts they are contiguous with what is stored).
  void persist(const Ready& ready);
  void set_hard_state(const HardState& hs) { hard_state_ = hs; }
  void truncate_from(Index index);
  void append(const std::vector<Entry>& entries);

  // Snapshots (raft/storage.h): a snapshot taken here (the log is compacted
  // separately, to compact_before), the log compaction itself, and install
  // step 2 (the reset record).
  void set_snapshot(const SnapshotMeta& meta) { snapshot_ = meta; }
  void compact(Index before);
  void install_snapshot(const SnapshotMeta& meta);

  // For checkers: the durable log from first_index().
  const std::vector<Entry>& log() const { return entries_; }

  // Fault injection: while set, term() (except term(0)) and entries() fail
  // with kIo, as an unreadable disk would.
  void set_fail_reads(bool fail) { fail_reads_ = fail; }

  // Delayed reads, the way a disk-backed storage answers (raft/storage.h,
  // "Asynchronous reads"): while set, entries() serves only the window the
  // last completed fetch made readable; for anything else it answers
  // kUnavailable and records one pending fetch of [lo, hi) (at most one at a
  // time: later misses while one is pending start nothing). complete_fetch()
  // finishes it: the window becomes [lo, hi) (replacing the previous one),
  // and the caller then tells Raft (entries_fetched). Returns false if no
  // fetch was pending.
  void set_delay_reads(bool delay) { delay_reads_ = delay; }
  bool fetch_pending() const { return pending_hi_ > pending_lo_; }
  bool complete_fetch();
  uint64_t fetches_started() const { return fetches_started_; }

 private:
  HardState hard_state_;
  std::vector<Entry> entries_;  // entries_[i] has index first_ + i
  Index first_ = 1;
  Term term_before_ = 0;  // term of entry first_ - 1
  SnapshotMeta snapshot_;
  bool fail_reads_ = false;
  bool delay_reads_ = false;
  // Mutable: entries() is const by the LogStorage contract, and starting a
  // fetch is the storage's own business, invisible to the log's contents.
  mutable Index pending_lo_ = 0, pending_hi_ = 0;  // [lo, hi) being fetched
  mutable uint64_t fetches_started_ = 0;
  Index window_lo_ = 0, window_hi_ = 0;  // [lo, hi) readable while delaying
};

}  // namespace nori::raft
