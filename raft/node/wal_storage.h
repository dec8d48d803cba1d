// WalStorage: the Raft core's LogStorage (raft/storage.h) for one group, read
// from its core's WAL (wal/wal.h).
//
// What it is for: the core reads its durable state at start (hard state, log
// bounds) and, later, entries it no longer caches (a lagging follower, a
// restart applying its log). Entries come from the WAL's in-memory chunks
// when they are still there, else from the segment file with a buffered
// pread(2). That read blocks the reactor: it happens only for entries older
// than both the core's log cache and the WAL's chunk cache (catch-up of a
// lagging follower, replay after restart), and is counted (disk_reads) so a
// workload that hits it shows up in the metrics.
//
// Why it is not an io_uring read (yet): LogStorage::entries is synchronous
// by contract (raft/storage.h): the core calls it inside send_append and
// emit_committed and uses the entries in the same call. An asynchronous
// read would have to answer "not yet" (kUnavailable) and re-drive the core
// when the bytes arrive, but the core retries a failed read only at its next
// trigger: a heartbeat reply for replication, the next tick() for applying
// (apply_blocked_), i.e. one heartbeat_ms (150 ms) to one election timeout
// (300-600 ms) per batch. Catch-up of a follower that is behind by more than
// the caches would then move one append_bytes_max batch per heartbeat
// instead of at disk speed, and a restart would replay its log at that pace.
// The fix needs a re-drive call in the core (Raft::storage_ready(), clearing
// apply_blocked_ and re-sending to followers whose read failed), after which
// this class can prefetch with wal::Wal::read_entries (already io_uring) into
// a bounded per-group buffer and answer from it. Until then the blocking
// read stays, bounded per call by append_bytes_max / apply_batch_bytes_max,
// on one buffered fd per segment (page cache: usually no disk wait after a
// restart's first pass), and counted.
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

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "raft/storage.h"
#include "wal/wal.h"

namespace nori::raft {

// Appends the WAL payload of `e` (type byte + data) to out.
void encode_payload(const Entry& e, std::string& out);

// Segment files opened for buffered reads, shared by the groups of one core.
class SegmentReader {
 public:
  explicit SegmentReader(std::string dir) : dir_(std::move(dir)) {}
  ~SegmentReader();
  SegmentReader(const SegmentReader&) = delete;
  SegmentReader& operator=(const SegmentReader&) = delete;
  base::Status read(uint64_t seq, uint64_t offset, uint32_t len, std::string& out);
  uint64_t disk_reads() const { return disk_reads_; }
  // Closes files of segments below seq (they may have been reclaimed).
  void forget_below(uint64_t seq);

 private:
  std::string dir_;
  std::map<uint64_t, int> fds_;
  uint64_t disk_reads_ = 0;
};

class WalStorage final : public LogStorage {
 public:
  WalStorage(wal::Wal& wal, SegmentReader& reader, GroupId group)
      : wal_(wal), reader_(reader), group_(group) {}

  HardState hard_state() const override;
  Index first_index() const override;
  Index last_index() const override;
  base::Result<Term> term(Index index) const override;
  base::Status entries(Index lo, Index hi, uint64_t bytes_max,
                       std::vector<Entry>& out) const override;
  // The snapshot the log starts after: the newest snapshot file whose
  // (index, term) the WAL confirms (CoreHost::recover_snapshot matches them;
  // the membership lives only in the file). Read by Raft at construction.
  SnapshotMeta snapshot_meta() const override { return snapshot_; }
  void set_snapshot_meta(const SnapshotMeta& meta) { snapshot_ = meta; }

 private:
  wal::Wal& wal_;
  SegmentReader& reader_;
  GroupId group_;
  SnapshotMeta snapshot_;
};

}  // namespace nori::raft
