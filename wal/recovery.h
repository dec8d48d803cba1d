// Recovery: scans a log directory's segments in order, verifies every record,
// classifies damage (torn tail: dropped; anything else: reported as
// corruption with file and offset, never skipped) and rebuilds every group's
// index, hard state and compaction point. The rules are docs/wal-format.md,
// "What recovery does with damage".
//
// Recovery reads through the abstract SegmentSource, so the same scanner runs
// over real files (PosixSegmentSource, wal/posix_dir.h), the simulated disk
// and fuzzer input. It only reads: the caller (the writer, on open) deletes
// temp files, recycles unused segments and starts a new segment after the
// tail. Runs on one thread, before the log accepts appends.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/base/result.h"
#include "wal/format.h"
#include "wal/group_index.h"

namespace nori::wal {

// A directory as recovery sees it.
class SegmentSource {
 public:
  virtual ~SegmentSource() = default;
  // File names in the directory (any order; unrelated names are ignored).
  virtual base::Result<std::vector<std::string>> list() = 0;
  // Replaces *out with the file's bytes, at most bytes_max of them
  // (kCorruption if the file is larger).
  virtual base::Status read_all(const std::string& name, uint64_t bytes_max, std::string* out) = 0;
  // Replaces *out with the first min(n, size) bytes (default: read_all and cut).
  virtual base::Status read_head(const std::string& name, uint64_t n, std::string* out) {
    NORI_TRY(read_all(name, kSegmentBytesMax, out));
    if (out->size() > n) out->resize(n);
    return {};
  }
};

struct RecoveredSegment {
  std::string name;
  SegmentHeader header;
  uint64_t end = 0;      // offset just past its last valid record
  uint64_t records = 0;  // valid records (padding included)
};

struct RecoveryResult {
  uint64_t log_id = 0;                       // 0: no segment with a header
  std::vector<RecoveredSegment> segments;    // segments with data, by seq
  std::vector<std::string> unused_segments;  // prepared ahead, never written
  std::vector<std::string> temp_files;       // unfinished preparations
  std::vector<std::string> free_files;       // recycling pool
  uint64_t next_seq = 1;                     // first seq never used
  GroupMap groups;
  // Tail damage dropped as a torn tail (0 if the tail ended cleanly).
  uint64_t torn_tail_offset = 0;
  bool torn_tail = false;
  uint64_t bytes_read = 0;
  uint64_t records = 0;
};

base::Result<RecoveryResult> recover(SegmentSource& source);

// Scans one segment's bytes from its first record: the offset of the first
// invalid record (or of `limit`), calling on_record for each valid one.
// Exposed for nori-wal-dump.
template <typename F>
uint64_t scan_records(std::string_view bytes, uint64_t log_id, uint64_t seq, uint64_t limit,
                      F&& on_record) {
  uint64_t off = kSegmentHeaderBytes;
  while (off < limit) {
    RecordView rec;
    if (check_record(bytes.substr(0, limit), off, log_id, seq, &rec) != RecordCheck::kValid) break;
    if (!on_record(rec)) break;
    off += rec.span;
  }
  return off;
}

}  // namespace nori::wal
