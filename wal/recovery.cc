#include "wal/recovery.h"

#include "runtime/base/bytes.h"

#include <algorithm>
#include <map>
#include <optional>

namespace nori::wal {

using base::ErrorKind;

namespace {

struct Loaded {
  std::string name;
  SegmentHeader header;
  std::string bytes;
  SegmentOpenBody open;
};

base::Error corruption_at(const std::string& name, uint64_t offset, std::string_view what) {
  return base::err(ErrorKind::kCorruption, "WAL corruption in {} at offset {}: {}", name, offset,
                   what);
}

// Replays every record of a non-tail segment up to exactly `end`.
base::Status replay_sealed(const Loaded& seg, uint64_t end, RecoveryResult* out,
                           RecoveredSegment* info) {
  if (end < kSegmentHeaderBytes || end > seg.bytes.size() || end % kRecordAlign != 0) {
    return corruption_at(seg.name, end,
                         fmt::format("successor says it ends at {} but the file has {} bytes", end,
                                     seg.bytes.size()));
  }
  std::optional<base::Error> failure;
  const uint64_t stop =
      scan_records(seg.bytes, seg.header.log_id, seg.header.seq, end, [&](const RecordView& rec) {
        auto st = replay_record(out->groups, rec, seg.header.seq);
        if (!st.ok()) {
          failure = std::move(st).error();
          return false;
        }
        ++info->records;
        return true;
      });
  if (failure) return std::move(*failure);
  if (stop != end) {
    return corruption_at(seg.name, stop,
                         fmt::format("invalid record in a sealed segment (it ends at {})", end));
  }
  info->end = end;
  return {};
}

// The tail: valid records up to the first invalid one at X; then decides
// between a torn tail and corruption (docs/wal-format.md rule 6).
base::Status replay_tail(const Loaded& seg, RecoveryResult* out, RecoveredSegment* info) {
  std::optional<base::Error> failure;
  const uint64_t size = seg.bytes.size();
  const uint64_t x =
      scan_records(seg.bytes, seg.header.log_id, seg.header.seq, size, [&](const RecordView& rec) {
        auto st = replay_record(out->groups, rec, seg.header.seq);
        if (!st.ok()) {
          failure = std::move(st).error();
          return false;
        }
        ++info->records;
        return true;
      });
  if (failure) return std::move(*failure);
  info->end = x;
  const uint64_t window = seg.header.tail_window_bytes;
  // Probe each later block boundary for a record of this segment. A record
  // written by the same writer is never larger than its window, which bounds
  // the bytes hashed per probe of stale or hostile bytes.
  for (uint64_t b = base::align_up(x + 1, kBlockBytes); b < size; b += kBlockBytes) {
    if (size - b >= kRecordHeaderBytes &&
        base::load_u32(seg.bytes.data() + b + 8) > std::max<uint64_t>(window, kBlockBytes)) {
      continue;
    }
    RecordView rec;
    if (check_record(seg.bytes, b, seg.header.log_id, seg.header.seq, &rec) !=
        RecordCheck::kValid) {
      continue;
    }
    if (b >= x + window) {
      return corruption_at(
          seg.name, x,
          fmt::format("invalid record followed by a valid one at {}, beyond the {}-byte window "
                      "that may have been in flight",
                      b, window));
    }
    out->torn_tail = true;
  }
  if (out->torn_tail) out->torn_tail_offset = x;
  return {};
}

}  // namespace

base::Result<RecoveryResult> recover(SegmentSource& source) {
  RecoveryResult out;
  NORI_ASSIGN_OR_RETURN(auto names, source.list());
  std::map<uint64_t, std::string> segs;
  uint64_t max_seq = 0;
  for (auto& name : names) {
    uint64_t n = 0;
    if (parse_segment_file_name(name, &n)) {
      if (n == 0) return base::err(ErrorKind::kCorruption, "segment {} has seq 0", name);
      segs.emplace(n, name);
      max_seq = std::max(max_seq, n);
    } else if (parse_prefixed_file_name(name, "tmp-", &n)) {
      out.temp_files.push_back(name);
      max_seq = std::max(max_seq, n);
    } else if (parse_prefixed_file_name(name, "free-", &n)) {
      out.free_files.push_back(name);
    }
  }
  std::sort(out.free_files.begin(), out.free_files.end());
  if (max_seq == UINT64_MAX) return base::err(ErrorKind::kCorruption, "segment seq overflow");
  out.next_seq = max_seq + 1;

  std::optional<Loaded> pending;  // the last segment with data seen so far
  RecoveredSegment pending_info;
  std::vector<std::string> no_data;  // segments without data seen so far
  std::string bytes;
  for (auto& [seq, name] : segs) {
    // The header and first record decide whether the segment has data; a
    // prepared-but-unused segment is not read further.
    auto st = source.read_head(name, kSegmentHeaderBytes + kBlockBytes, &bytes);
    if (!st.ok()) return std::move(st).error();
    {
      auto h = decode_segment_header(bytes);
      RecordView first;
      if (h &&
          check_record(bytes, kSegmentHeaderBytes, h->log_id, seq, &first) == RecordCheck::kValid) {
        st = source.read_all(name, kSegmentBytesMax, &bytes);
        if (!st.ok()) return std::move(st).error();
      }
    }
    out.bytes_read += bytes.size();
    auto header = decode_segment_header(bytes);
    if (!header) {
      if (header.error().kind() != ErrorKind::kCorruption) return header.error();
      return corruption_at(name, 0, header.error().message());
    }
    if (header->seq != seq) {
      return corruption_at(name, 0, fmt::format("header seq {} != file name", header->seq));
    }
    if (out.log_id == 0) out.log_id = header->log_id;
    if (header->log_id != out.log_id) {
      return corruption_at(name, 0,
                           fmt::format("log id {:#x} differs from {:#x} of the other segments",
                                       header->log_id, out.log_id));
    }
    RecordView first;
    const bool has_data =
        check_record(bytes, kSegmentHeaderBytes, out.log_id, seq, &first) == RecordCheck::kValid &&
        first.kind == static_cast<uint8_t>(RecordKind::kSegmentOpen);
    if (!has_data) {
      no_data.push_back(name);
      continue;
    }
    auto open = decode_segment_open(first.body);
    if (!open) return corruption_at(name, kSegmentHeaderBytes, open.error().message());
    if (!no_data.empty()) {
      return corruption_at(no_data.front(), kSegmentHeaderBytes,
                           fmt::format("segment without a valid first record before {}", name));
    }
    if (open->prev_seq >= seq) {
      return corruption_at(name, kSegmentHeaderBytes,
                           fmt::format("previous segment {} is not older", open->prev_seq));
    }
    if (pending) {
      if (open->prev_seq != pending->header.seq) {
        return corruption_at(name, kSegmentHeaderBytes,
                             fmt::format("follows segment {} but the previous one on disk is {}",
                                         open->prev_seq, pending->header.seq));
      }
      NORI_TRY(replay_sealed(*pending, open->prev_end, &out, &pending_info));
      out.segments.push_back(std::move(pending_info));
    }
    pending.emplace(Loaded{name, *header, std::move(bytes), *open});
    bytes = std::string();
    pending_info = RecoveredSegment{name, *header, 0, 0};
  }
  if (pending) {
    NORI_TRY(replay_tail(*pending, &out, &pending_info));
    out.segments.push_back(std::move(pending_info));
  }
  out.unused_segments = std::move(no_data);
  for (const auto& s : out.segments)
    out.records += s.records;
  NORI_TRY(check_groups_complete(out.groups));
  return out;
}

}  // namespace nori::wal
