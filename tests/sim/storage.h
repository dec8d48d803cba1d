// Simulated stable storage for one Raft replica (one node, one group): the
// raft::LogStorage the core reads, plus a model of a disk that makes writes
// durable only after a delay, and loses every write still in flight when the
// node crashes.
//
// Two lanes, as the storage contract allows (raft/storage.h):
//   - the hard-state lane: small records; a (term, vote) write may become
//     durable ahead of queued entry writes;
//   - the log lane: truncations and appends, compaction marks and snapshot
//     reset records, durable strictly in the order they were issued (a FIFO
//     disk queue, as the records of one WAL are).
// Each write gets a sequence number per lane; durable_*_seq() say how far each
// lane has reached, which the driver uses to release messages that must wait
// for durability (Ready's SendAfter).
//
// Snapshots (raft/storage.h, "Snapshots"):
//   - snapshot FILES are durable once put_file() is called (the simulation
//     calls it when the simulated write + rename + directory sync completes);
//     they survive crashes. A file holds the KV state machine at its index.
//   - a snapshot TAKEN here becomes snapshot_meta() when its file is durable
//     (set_taken_snapshot), then compact(before) drops the log below
//     `before` once that record is durable;
//   - a snapshot INSTALLED here is install step 2: write_reset(meta) queues
//     the reset record on the log lane; when it is durable, snapshot_meta()
//     is `meta` and the log keeps the entries after meta.index only if it
//     held entry meta.index with term meta.term (otherwise it is empty from
//     meta.index + 1). Entries queued after the reset at or below
//     meta.index are skipped (they are covered by the snapshot).
//
// crash() drops every write not yet durable: what survives is exactly what
// the core was told is persisted (a write's completion is the only thing that
// acknowledges it), plus the durable snapshot files. The durable view is what
// LogStorage answers; `written_log` (durable + in flight, the node's own view)
// serves the leader-completeness checker. Both views may start past index 1
// (compaction); each Entry carries its index.
//
// Single-threaded; owned by the simulated node and outliving its Raft
// instances (a restart builds a new Raft on the same storage).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "raft/storage.h"

namespace nori::sim {

// A durable snapshot file: the KV state at meta.index (tests/sim/kv.h
// encode_state) and its whole-file digest.
struct SnapshotFile {
  raft::SnapshotMeta meta;
  std::string data;
  uint64_t digest = 0;
};

class SimStorage final : public raft::LogStorage {
 public:
  // --- raft::LogStorage (the durable view) ----------------------------------
  raft::HardState hard_state() const override { return hard_state_; }
  raft::Index first_index() const override { return durable_.first; }
  raft::Index last_index() const override { return durable_.last(); }
  base::Result<raft::Term> term(raft::Index index) const override;
  base::Status entries(raft::Index lo, raft::Index hi, uint64_t bytes_max,
                       std::vector<raft::Entry>& out) const override;
  raft::SnapshotMeta snapshot_meta() const override { return durable_.snap; }

  // --- the disk model ---------------------------------------------------------
  // Queues a hard-state write; returns its lane sequence number.
  uint64_t write_hard_state(const raft::HardState& hs);
  // Queues a truncation (optional) and appends; returns its lane sequence.
  uint64_t write_entries(std::optional<raft::Index> truncate_from,
                         std::vector<raft::Entry> entries);
  // Queues a compaction mark: entries below `before` are dropped once durable
  // (and from the written view at once: the core no longer reads them).
  uint64_t write_compaction(raft::Index before);
  // Install step 2: queues the record resetting the log to `meta`.
  uint64_t write_reset(const raft::SnapshotMeta& meta);
  // Completes the oldest pending write of a lane; returns what became durable.
  raft::HardState complete_hard_state();
  // Completes the oldest log-lane write. Returns the last durable (index,
  // term) after it, for the core's entries_persisted acknowledgement.
  std::pair<raft::Index, raft::Term> complete_entries();

  uint64_t issued_hard_state_seq() const { return hs_issued_; }
  uint64_t issued_entries_seq() const { return entries_issued_; }
  uint64_t durable_hard_state_seq() const { return hs_durable_seq_; }
  uint64_t durable_entries_seq() const { return entries_durable_seq_; }

  // --- snapshot files (durable when the call returns) ---------------------------
  void put_file(SnapshotFile file);
  const SnapshotFile* file(raft::Index index) const;
  // The newest file at or below `index` (nullptr if none).
  const SnapshotFile* newest_file_at_or_below(raft::Index index) const;
  // A snapshot taken here, its file durable: snapshot_meta() from now on
  // (compaction follows separately).
  void set_taken_snapshot(const raft::SnapshotMeta& meta);
  // Removes files superseded by the durable snapshot, except `pinned` ones
  // (being sent) and the one snapshot_meta() names.
  void remove_superseded_files(const std::vector<raft::Index>& pinned);
  size_t file_count() const { return files_.size(); }

  // Loses every pending write. Returns how many writes were lost.
  size_t crash();

  // The replica's full view: durable log with pending writes applied. Both
  // start at their first_index (entries carry their index).
  const std::vector<raft::Entry>& written_log() const { return written_.entries; }
  const std::vector<raft::Entry>& durable_log() const { return durable_.entries; }
  const raft::SnapshotMeta& written_snapshot() const { return written_.snap; }

 private:
  struct EntryWrite {
    std::optional<raft::Index> truncate_from;
    std::vector<raft::Entry> entries;
  };
  struct Compaction {
    raft::Index before = 0;
  };
  struct Reset {
    raft::SnapshotMeta meta;
  };
  using LogWrite = std::variant<EntryWrite, Compaction, Reset>;
  // One view of the log: entries [first, last()], term_before = term of
  // first - 1, snap the snapshot the log starts after.
  struct Log {
    std::vector<raft::Entry> entries;
    raft::Index first = 1;
    raft::Term term_before = 0;
    raft::SnapshotMeta snap;
    raft::Index last() const { return first + entries.size() - 1; }
  };
  static void apply(Log& log, const LogWrite& w);

  raft::HardState hard_state_;
  Log durable_, written_;
  std::deque<raft::HardState> hs_pending_;
  std::deque<LogWrite> entries_pending_;
  std::map<raft::Index, SnapshotFile> files_;
  uint64_t hs_issued_ = 0, hs_durable_seq_ = 0;
  uint64_t entries_issued_ = 0, entries_durable_seq_ = 0;
};

}  // namespace nori::sim
