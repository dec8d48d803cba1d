// LogEngine: the per-core write-ahead log without I/O. It encodes records into
// aligned in-memory chunks that mirror contiguous regions of segment files,
// keeps the per-group index, decides which block-aligned durable writes to
// issue (group commit), tracks the durable position as the completed prefix
// of those writes, rotates segments, and decides which segments can go.
// Drivers do the I/O: wal/wal.h (io_uring on the runtime) and the simulated
// disk driver of the tests. The same engine runs under both.
//
// The crash story (what a crash leaves, and what recovery makes of it):
// - A write covers [cut, align_up(fill, B)) of a chunk: the tail of its last
//   block is a padding record, so a block once written is never written again
//   (a torn rewrite could otherwise destroy acknowledged records).
// - At most writes_in_flight_max writes of write_bytes_max are in flight, all
//   to one segment (a new segment's first write waits until every write to
//   the previous one has completed). So at a crash only the last
//   tail_window_bytes of the tail segment may be damaged: docs/wal-format.md.
// - The durable position is the end of the longest prefix of completed
//   writes: a write that completes early is not durable in the log's sense
//   until every earlier one is, because recovery stops at the first gap.
//
// Positions are byte counts of the logical write stream (monotonic across
// segments). An append returns the position that must be durable for it to
// be. Single-threaded: owned by one core; every call from that core.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/result.h"
#include "wal/format.h"
#include "wal/group_index.h"
#include "wal/recovery.h"

namespace nori::wal {

using Position = uint64_t;

struct WalOptions {
  // Size of each segment file; rotation happens before a record would cross it.
  uint64_t segment_bytes = uint64_t{64} << 20;
  // Largest durable write, and the size of each in-memory chunk.
  uint32_t write_bytes_max = 1u << 20;
  // Durable writes in flight at once (contiguous; durable = completed prefix).
  uint32_t writes_in_flight_max = 4;
  // Completed chunks kept in memory to serve reads of the recent tail.
  uint64_t cache_bytes_max = uint64_t{32} << 20;
  // Segments prepared (zero-filled or recycled) ahead of the active one.
  uint32_t segments_ahead = 1;
  // Per-core bound on live log bytes: beyond it, the groups pinning the
  // oldest segment are asked (on_pinned) to snapshot.
  uint64_t log_bytes_max = uint64_t{1} << 30;
  // Retired segments kept for recycling instead of being deleted.
  uint32_t free_segments_max = 2;
  // How a write is made durable, chosen by measurement on this machine
  // (docs/wal.md): write + fdatasync. At 4 KiB its p50 was 114-181 us
  // against ~4 ms for RWF_DSYNC in every run; it moved more bytes at 64 KiB
  // in 5 of 7 interleaved runs and at 512 KiB in 4 of 6. Writes of at
  // least rwf_dsync_min_bytes use RWF_DSYNC instead (off by default);
  // use_rwf_dsync forces RWF_DSYNC for every write.
  bool use_rwf_dsync = false;
  uint32_t rwf_dsync_min_bytes = UINT32_MAX;
  // write + fdatasync submitted as one linked io_uring chain (wal/write_sync.h):
  // the kernel starts the sync when the write completes, with no return to
  // the reactor between them. Off by default, by measurement (docs/wal.md,
  // "Linked write + sync"): it saves no wake-up under DEFER_TASKRUN, was
  // within noise at one writer, and the cluster committed ~10% less at 256
  // in flight (7 of 10 alternated pairs). Ignored where the kernel lacks
  // IORING_FEAT_CQE_SKIP. NORI_WAL_LINKED_SYNC=0/1 overrides.
  bool linked_sync = false;
  // A flush waits this long after the round that appended before cutting a
  // write, to gather more (0: every reactor round).
  uint32_t batch_delay_us = 0;
  // Write coalescing (next_write(hold_small = true)): while a durable write
  // is in flight, fewer new bytes than this wait for it to complete and go
  // out with what arrives meanwhile, instead of as a write + fdatasync of
  // their own. Overlapping small syncs mostly repeat the same cache flush:
  // each costs an io-wq wake-up and a reactor wake-up, and each write pads
  // its last 4 KiB block. Larger amounts still overlap (up to
  // writes_in_flight_max), which is what large entries gain from. The wait
  // is at most one write + sync. 0: no hold. docs/wal.md, "Write coalescing".
  uint32_t write_hold_bytes = 64 << 10;

  uint64_t tail_window_bytes() const { return uint64_t{writes_in_flight_max} * write_bytes_max; }
  // Largest record body (a chunk must also hold a segment_open and padding).
  uint32_t record_body_max() const { return write_bytes_max - 2 * kBlockBytes; }
  base::Status validate() const;
};

// A block-aligned write the driver must make durable, then report with
// complete_write(id).
struct WriteRequest {
  uint64_t id = 0;
  uint64_t seq = 0;          // segment
  uint64_t file_offset = 0;  // block-aligned
  const char* data = nullptr;
  uint32_t bytes = 0;  // block multiple
};

struct EngineStats {
  uint64_t appends = 0;
  uint64_t entries = 0;
  uint64_t records = 0;
  uint64_t writes = 0;
  uint64_t write_bytes = 0;
  uint64_t padding_bytes = 0;
  uint64_t held_writes = 0;  // next_write calls that held a small tail (write coalescing)
  uint64_t rotations = 0;
  uint64_t busy = 0;  // appends refused for lack of a free chunk or segment
};

class LogEngine {
 public:
  // Starts from a recovery result (an empty one for a new log). The first
  // write goes to a new segment recovered.next_seq (rule 7 of the format).
  LogEngine(const WalOptions& opts, RecoveryResult recovered, uint64_t new_log_id);
  ~LogEngine();
  LogEngine(const LogEngine&) = delete;
  LogEngine& operator=(const LogEngine&) = delete;

  const WalOptions& options() const { return opts_; }
  uint64_t log_id() const { return log_id_; }

  // ---- Appends (in memory; durable once durable_position() >= result) ----
  // Entries first_index, first_index+1, ... with terms[k] and payloads[k].
  // kInvalidArgument: not contiguous, or an entry larger than record_body_max.
  // kBusy: no free chunk (writes in flight) or next segment not prepared yet.
  // kNoSpace: the next segment could not be created (disk full).
  // On error nothing was appended, except that entries too many for one
  // record go in several records: a kBusy/kNoSpace on a later record leaves
  // the earlier ones appended (group(g)->last_index() says how far).
  base::Result<Position> append_entries(uint64_t group, uint64_t first_index,
                                        std::span<const uint64_t> terms,
                                        std::span<const std::string_view> payloads);
  base::Result<Position> persist_hard_state(uint64_t group, const HardState& hs);
  // Drops the group's entries after last_kept (a Raft log conflict).
  base::Result<Position> truncate_suffix(uint64_t group, uint64_t last_kept);
  // The group's snapshot covers entries through index (term): they can go.
  // A mark below the group's start point changes nothing.
  base::Result<Position> mark_compacted(uint64_t group, uint64_t index, uint64_t term);
  // Resets the group to a snapshot at (index, term), durable with the
  // returned position. If the log holds entry index with term `term` (or
  // (index, term) is its start point), entries after index are kept and
  // those through index dropped: exactly mark_compacted(group, index, term),
  // and written as a compact record. Otherwise every entry is dropped and the
  // log restarts empty after (index, term): first_index == index + 1,
  // last_index == index, term(index) == term, even if index is below the old
  // start point; written as a reset record. Either way the next append is
  // at first_index (index + 1 when nothing was kept). Atomic across a crash:
  // recovery finds the log as before the call or as after it, never a mix.
  // kInvalidArgument: index == 0, index == UINT64_MAX or term == 0.
  // kBusy / kNoSpace as for the other appends (then nothing changed).
  base::Result<Position> reset_group(uint64_t group, uint64_t index, uint64_t term);
  // Removes the group from the log: it is forgotten at once (group() is
  // nullptr, it pins no segment), and recovery does not find it once the
  // returned position is durable (before, a crash may leave it as it was).
  // Appending to the same group id later starts a new, empty log (a group
  // created again). The records of the old one stay in their segments until
  // those are reclaimed; replay voids them at the remove record.
  // kBusy / kNoSpace as for the other appends (then nothing changed).
  base::Result<Position> remove_group(uint64_t group);

  // ---- Group commit ----
  // The next write to issue, if any: cuts the oldest uncut bytes (padding the
  // last block) when a slot is free, the segment is prepared, and no write to
  // an older segment is still in flight. hold_small: also none while a write
  // is in flight and the uncut bytes are fewer than write_hold_bytes (the
  // caller issues again when that write completes).
  std::optional<WriteRequest> next_write(bool hold_small = false);
  // The write with this id is durable on disk.
  void complete_write(uint64_t id);
  Position append_position() const { return append_lsn_; }
  Position durable_position() const { return durable_lsn_; }
  bool has_unwritten() const;
  size_t writes_in_flight() const { return writes_.size(); }

  // ---- Segments ----
  // The header of segment seq for the driver to write when preparing it.
  SegmentHeader header_for(uint64_t seq, uint64_t created_unix_ns) const;
  // The next segment the driver should prepare (none if enough are ready or
  // a preparation is already running).
  std::optional<uint64_t> segment_to_prepare() const;
  void segment_preparing(uint64_t seq);
  void segment_prepared(uint64_t seq);
  void segment_prepare_failed(uint64_t seq, base::Error error);
  uint64_t active_seq() const { return active_seq_; }
  // Live segments (with data), oldest first.
  const std::deque<uint64_t>& live_segments() const { return live_; }

  // ---- Space ----
  // Oldest segment any group still needs for entries (or the active one).
  uint64_t oldest_entry_seq() const;
  // Appends a checkpoint for every group whose hard state or start point
  // (compaction mark, reset or checkpoint) sits in a segment older than
  // below_seq. A reset is carried forward as a checkpoint of its start
  // point: replayed after it, a checkpoint never raises an older log over a
  // reset, because segments are dropped oldest first (docs/wal-format.md). Returns the position to
  // await (the append position if nothing was needed).
  base::Result<Position> checkpoint_before(uint64_t below_seq);
  // Segments strictly older than this hold nothing any group needs (once the
  // records appended so far are durable).
  uint64_t first_needed_seq() const;
  // Groups whose entries pin the oldest live segment.
  std::vector<uint64_t> pinning_groups() const;
  // The driver deleted (or recycled) live segments older than seq.
  void segments_dropped_before(uint64_t seq);
  uint64_t live_bytes() const { return live_.size() * opts_.segment_bytes; }

  // ---- Reads ----
  const GroupLog* group(uint64_t id) const;
  const GroupMap& groups() const { return groups_; }
  // The payload if it is in memory (open, in-flight or cached chunk).
  std::optional<std::string_view> cached_payload(const EntryLoc& loc) const;

  const EngineStats& stats() const { return stats_; }

 private:
  struct Chunk;
  struct Slot {
    uint64_t id;
    Chunk* chunk;
    uint64_t seq;
    Position lsn_end;
    bool done;
  };

  base::Status ensure_room(uint64_t body_bytes);
  base::Status open_chunk(uint64_t seq, uint64_t file_off);
  Chunk* take_chunk_buffer();
  void seal_open_chunk();
  // Writes the record header and pad; returns the record's file offset.
  uint64_t commit_record(RecordKind kind, uint32_t body_bytes);
  char* body_ptr() const;
  void recycle_cached();
  base::Result<Position> append_small(RecordKind kind, std::span<const char> body);

  WalOptions opts_;
  uint64_t log_id_;
  GroupMap groups_;
  std::deque<uint64_t> live_;  // segments with data, oldest first

  uint64_t active_seq_;    // segment receiving appends
  uint64_t prev_seq_ = 0;  // what the active segment's segment_open names
  uint64_t prev_end_ = 0;
  uint64_t active_end_ = kSegmentHeaderBytes;  // past the active segment's last record
  uint64_t prepared_through_ = 0;              // segments <= this are prepared
  uint64_t preparing_ = 0;                     // a preparation in progress (0: none)
  std::optional<base::Error> prepare_error_;

  std::deque<Chunk*> chunks_;  // live chunks in position order; back may be open
  std::vector<Chunk*> free_chunks_;
  std::vector<std::unique_ptr<Chunk>> all_chunks_;
  bool open_ = false;        // chunks_.back() accepts appends
  std::deque<Slot> writes_;  // issued, in position order
  uint64_t next_write_id_ = 1;
  Position append_lsn_ = 0;
  Position durable_lsn_ = 0;
  EngineStats stats_;
  std::vector<uint32_t> offsets_scratch_;  // payload offsets of the record being encoded
};

}  // namespace nori::wal
