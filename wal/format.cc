#include "wal/format.h"

#include <fmt/format.h>

#include <cstring>

#include "runtime/base/bytes.h"

namespace nori::wal {

using base::ErrorKind;
using base::load_u32;
using base::load_u64;
using base::store_u32;
using base::store_u64;

void encode_segment_header(const SegmentHeader& h, std::span<char> out) {
  NORI_ASSERT(out.size() >= kSegmentHeaderBytes);
  std::memset(out.data(), 0, kSegmentHeaderBytes);
  char* p = out.data();
  store_u64(p + 0, kMagic);
  store_u32(p + 8, h.version);
  store_u32(p + 12, kSegmentHeaderBytes);
  store_u64(p + 16, h.log_id);
  store_u64(p + 24, h.seq);
  store_u64(p + 32, h.created_unix_ns);
  store_u64(p + 40, h.tail_window_bytes);
  store_u64(p + 48, h.segment_bytes);
  store_u64(p + 56, base::xxh3_64(p, 56, 0));
}

base::Result<SegmentHeader> decode_segment_header(std::string_view block) {
  if (block.size() < kSegmentHeaderFixedBytes) {
    return base::err(ErrorKind::kCorruption, "segment header truncated: {} of {} bytes",
                     block.size(), kSegmentHeaderFixedBytes);
  }
  const char* p = block.data();
  if (load_u64(p) != kMagic) {
    return base::err(ErrorKind::kCorruption, "bad segment magic {:#x}", load_u64(p));
  }
  if (load_u64(p + 56) != base::xxh3_64(p, 56, 0)) {
    return base::err(ErrorKind::kCorruption, "segment header checksum mismatch");
  }
  SegmentHeader h;
  h.version = load_u32(p + 8);
  if (h.version > kFormatVersion || h.version == 0) {
    return base::err(ErrorKind::kInvalidArgument, "unsupported WAL format version {} (max {})",
                     h.version, kFormatVersion);
  }
  if (load_u32(p + 12) != kSegmentHeaderBytes) {
    return base::err(ErrorKind::kCorruption, "segment header_bytes {} != {}", load_u32(p + 12),
                     kSegmentHeaderBytes);
  }
  h.log_id = load_u64(p + 16);
  h.seq = load_u64(p + 24);
  h.created_unix_ns = load_u64(p + 32);
  h.tail_window_bytes = load_u64(p + 40);
  h.segment_bytes = load_u64(p + 48);
  return h;
}

uint64_t record_seed(uint64_t log_id, uint64_t seq, uint64_t offset) {
  char buf[24];
  store_u64(buf, log_id);
  store_u64(buf + 8, seq);
  store_u64(buf + 16, offset);
  return base::xxh3_64(buf, sizeof buf, 0);
}

void seal_record(std::span<char> out, RecordKind kind, uint32_t body_bytes, RecordPlace place) {
  const uint64_t span = record_span(body_bytes);
  NORI_ASSERT(out.size() >= span, "record span {} > buffer {}", span, out.size());
  NORI_ASSERT(place.offset % kRecordAlign == 0, "record offset {} not aligned", place.offset);
  char* p = out.data();
  store_u32(p + 8, body_bytes);
  p[12] = static_cast<char>(kind);
  p[13] = 0;
  p[14] = 0;
  p[15] = 0;
  const size_t end = kRecordHeaderBytes + body_bytes;
  if (span > end) std::memset(p + end, 0, span - end);
  store_u64(p, base::xxh3_64(p + 8, end - 8, record_seed(place.log_id, place.seq, place.offset)));
}

void encode_padding(std::span<char> out, RecordPlace place) {
  NORI_ASSERT(out.size() >= kRecordHeaderBytes && out.size() % kRecordAlign == 0);
  const uint32_t body = static_cast<uint32_t>(out.size() - kRecordHeaderBytes);
  std::memset(out.data() + kRecordHeaderBytes, 0, body);
  seal_record(out, RecordKind::kPadding, body, place);
}

RecordCheck check_record(std::string_view segment, uint64_t offset, uint64_t log_id, uint64_t seq,
                         RecordView* view) {
  if (offset % kRecordAlign != 0 || offset > segment.size() ||
      segment.size() - offset < kRecordHeaderBytes) {
    return RecordCheck::kInvalid;
  }
  const char* p = segment.data() + offset;
  const uint32_t body_bytes = load_u32(p + 8);
  const uint8_t kind = static_cast<uint8_t>(p[12]);
  if (kind == 0 || p[13] != 0 || p[14] != 0 || p[15] != 0) return RecordCheck::kInvalid;
  const uint64_t avail = segment.size() - offset;
  if (uint64_t{body_bytes} + kRecordHeaderBytes > avail) return RecordCheck::kInvalid;
  const uint64_t want = load_u64(p);
  const uint64_t got =
      base::xxh3_64(p + 8, kRecordHeaderBytes - 8 + body_bytes, record_seed(log_id, seq, offset));
  if (want != got) return RecordCheck::kInvalid;
  view->offset = offset;
  view->kind = kind;
  view->body = std::string_view(p + kRecordHeaderBytes, body_bytes);
  // The pad may be cut off by the end of what was read: span never exceeds it.
  view->span = std::min<uint64_t>(record_span(body_bytes), avail);
  return RecordCheck::kValid;
}

// ---- Bodies --------------------------------------------------------------

size_t encode_segment_open(std::span<char> out, const SegmentOpenBody& b) {
  NORI_ASSERT(out.size() >= kSegmentOpenBodyBytes);
  store_u64(out.data(), b.prev_seq);
  store_u64(out.data() + 8, b.prev_end);
  return kSegmentOpenBodyBytes;
}

size_t encode_hard_state(std::span<char> out, const HardStateBody& b) {
  NORI_ASSERT(out.size() >= kHardStateBodyBytes);
  store_u64(out.data(), b.group);
  store_u64(out.data() + 8, b.hs.term);
  store_u64(out.data() + 16, b.hs.vote);
  store_u64(out.data() + 24, b.hs.commit);
  return kHardStateBodyBytes;
}

size_t encode_truncate(std::span<char> out, const TruncateBody& b) {
  NORI_ASSERT(out.size() >= kTruncateBodyBytes);
  store_u64(out.data(), b.group);
  store_u64(out.data() + 8, b.last_kept);
  return kTruncateBodyBytes;
}

size_t encode_compact(std::span<char> out, const CompactBody& b) {
  NORI_ASSERT(out.size() >= kCompactBodyBytes);
  store_u64(out.data(), b.group);
  store_u64(out.data() + 8, b.index);
  store_u64(out.data() + 16, b.term);
  return kCompactBodyBytes;
}

size_t encode_checkpoint(std::span<char> out, const CheckpointBody& b) {
  NORI_ASSERT(out.size() >= kCheckpointBodyBytes);
  char* p = out.data();
  store_u64(p, b.group);
  store_u64(p + 8, b.hs.term);
  store_u64(p + 16, b.hs.vote);
  store_u64(p + 24, b.hs.commit);
  store_u64(p + 32, b.compact_index);
  store_u64(p + 40, b.compact_term);
  return kCheckpointBodyBytes;
}

size_t encode_reset(std::span<char> out, const ResetBody& b) {
  NORI_ASSERT(out.size() >= kResetBodyBytes);
  store_u64(out.data(), b.group);
  store_u64(out.data() + 8, b.index);
  store_u64(out.data() + 16, b.term);
  return kResetBodyBytes;
}

size_t encode_remove_group(std::span<char> out, const RemoveGroupBody& b) {
  NORI_ASSERT(out.size() >= kRemoveGroupBodyBytes);
  store_u64(out.data(), b.group);
  return kRemoveGroupBodyBytes;
}

namespace {
size_t count_runs(std::span<const uint64_t> terms) {
  size_t runs = 0;
  for (size_t i = 0; i < terms.size(); ++i) {
    if (i == 0 || terms[i] != terms[i - 1]) ++runs;
  }
  return runs;
}
}  // namespace

size_t entries_body_bytes(std::span<const uint64_t> terms,
                          std::span<const std::string_view> payloads) {
  NORI_ASSERT(terms.size() == payloads.size());
  size_t n = kEntriesFixedBytes + count_runs(terms) * kTermRunBytes;
  for (auto p : payloads)
    n += base::varint_size(p.size()) + p.size();
  return n;
}

size_t encode_entries(std::span<char> out, uint64_t group, uint64_t first_index,
                      std::span<const uint64_t> terms, std::span<const std::string_view> payloads,
                      uint32_t* payload_offsets) {
  NORI_ASSERT(terms.size() == payloads.size() && !terms.empty());
  NORI_ASSERT(out.size() == entries_body_bytes(terms, payloads));
  char* p = out.data();
  const size_t runs = count_runs(terms);
  store_u64(p, group);
  store_u64(p + 8, first_index);
  store_u32(p + 16, static_cast<uint32_t>(terms.size()));
  store_u32(p + 20, static_cast<uint32_t>(runs));
  size_t at = kEntriesFixedBytes;
  size_t i = 0;
  while (i < terms.size()) {
    size_t j = i;
    while (j < terms.size() && terms[j] == terms[i])
      ++j;
    store_u64(p + at, terms[i]);
    store_u32(p + at + 8, static_cast<uint32_t>(j - i));
    store_u32(p + at + 12, 0);
    at += kTermRunBytes;
    i = j;
  }
  for (auto pl : payloads)
    at += base::encode_varint(reinterpret_cast<uint8_t*>(p + at), pl.size());
  for (size_t k = 0; k < payloads.size(); ++k) {
    payload_offsets[k] = static_cast<uint32_t>(at);
    std::memcpy(p + at, payloads[k].data(), payloads[k].size());
    at += payloads[k].size();
  }
  NORI_ASSERT(at == out.size());
  return at;
}

namespace {
base::Error bad_body(std::string_view what, size_t got) {
  return base::err(ErrorKind::kCorruption, "{} record body of {} bytes does not parse", what, got);
}
}  // namespace

base::Result<SegmentOpenBody> decode_segment_open(std::string_view body) {
  if (body.size() != kSegmentOpenBodyBytes) return bad_body("segment_open", body.size());
  return SegmentOpenBody{load_u64(body.data()), load_u64(body.data() + 8)};
}

base::Result<HardStateBody> decode_hard_state(std::string_view body) {
  if (body.size() != kHardStateBodyBytes) return bad_body("hard_state", body.size());
  const char* p = body.data();
  return HardStateBody{load_u64(p), {load_u64(p + 8), load_u64(p + 16), load_u64(p + 24)}};
}

base::Result<TruncateBody> decode_truncate(std::string_view body) {
  if (body.size() != kTruncateBodyBytes) return bad_body("truncate", body.size());
  return TruncateBody{load_u64(body.data()), load_u64(body.data() + 8)};
}

base::Result<CompactBody> decode_compact(std::string_view body) {
  if (body.size() != kCompactBodyBytes) return bad_body("compact", body.size());
  const char* p = body.data();
  return CompactBody{load_u64(p), load_u64(p + 8), load_u64(p + 16)};
}

base::Result<CheckpointBody> decode_checkpoint(std::string_view body) {
  if (body.size() != kCheckpointBodyBytes) return bad_body("checkpoint", body.size());
  const char* p = body.data();
  return CheckpointBody{load_u64(p),
                        {load_u64(p + 8), load_u64(p + 16), load_u64(p + 24)},
                        load_u64(p + 32),
                        load_u64(p + 40)};
}

base::Result<ResetBody> decode_reset(std::string_view body) {
  if (body.size() != kResetBodyBytes) return bad_body("reset", body.size());
  const char* p = body.data();
  ResetBody b{load_u64(p), load_u64(p + 8), load_u64(p + 16)};
  // No writer produces these: index 0 is not a snapshot, a term is at least 1
  // for any entry, and the next append (index + 1) must be representable.
  if (b.index == 0 || b.index == UINT64_MAX || b.term == 0) {
    return base::err(ErrorKind::kCorruption, "reset record to index {} term {} is out of range",
                     b.index, b.term);
  }
  return b;
}

base::Result<RemoveGroupBody> decode_remove_group(std::string_view body) {
  if (body.size() != kRemoveGroupBodyBytes) return bad_body("remove_group", body.size());
  return RemoveGroupBody{load_u64(body.data())};
}

base::Result<EntriesBody> decode_entries(std::string_view body) {
  base::ByteReader r(body);
  EntriesBody out;
  uint32_t count = 0, runs = 0;
  if (!r.u64(out.group) || !r.u64(out.first_index) || !r.u32(count) || !r.u32(runs)) {
    return bad_body("entries", body.size());
  }
  // Every entry takes at least one length byte; every run at least one entry.
  if (count == 0 || count > body.size() || runs == 0 || runs > count || out.first_index == 0 ||
      out.first_index > UINT64_MAX - count) {
    return bad_body("entries", body.size());
  }
  out.runs.reserve(runs);
  uint64_t total = 0;
  for (uint32_t i = 0; i < runs; ++i) {
    TermRun run;
    uint32_t zero = 0;
    if (!r.u64(run.term) || !r.u32(run.count) || !r.u32(zero) || zero != 0 || run.count == 0) {
      return bad_body("entries", body.size());
    }
    total += run.count;
    out.runs.push_back(run);
  }
  if (total != count) return bad_body("entries", body.size());
  std::vector<uint64_t> lengths(count);
  uint64_t payload_total = 0;
  for (auto& len : lengths) {
    if (!r.varint_bounded(len, body.size())) return bad_body("entries", body.size());
    payload_total += len;
  }
  if (payload_total != r.remaining()) return bad_body("entries", body.size());
  out.payloads.reserve(count);
  out.payload_offsets.reserve(count);
  for (uint64_t len : lengths) {
    out.payload_offsets.push_back(static_cast<uint32_t>(r.position() - body.data()));
    std::string_view pl;
    if (!r.bytes(static_cast<size_t>(len), pl)) return bad_body("entries", body.size());
    out.payloads.push_back(pl);
  }
  return out;
}

std::string_view kind_name(uint8_t kind) {
  switch (static_cast<RecordKind>(kind)) {
    case RecordKind::kPadding:
      return "padding";
    case RecordKind::kSegmentOpen:
      return "segment_open";
    case RecordKind::kEntries:
      return "entries";
    case RecordKind::kHardState:
      return "hard_state";
    case RecordKind::kTruncate:
      return "truncate";
    case RecordKind::kCompact:
      return "compact";
    case RecordKind::kCheckpoint:
      return "checkpoint";
    case RecordKind::kReset:
      return "reset";
    case RecordKind::kRemoveGroup:
      return "remove_group";
  }
  return kind >= kFirstOptionalKind ? "optional(unknown)" : "unknown";
}

std::string segment_file_name(uint64_t seq) {
  return fmt::format("{:020}.wal", seq);
}
std::string temp_file_name(uint64_t seq) {
  return fmt::format("tmp-{:020}.wal", seq);
}
std::string free_file_name(uint64_t n) {
  return fmt::format("free-{:020}.wal", n);
}

bool parse_prefixed_file_name(std::string_view name, std::string_view prefix, uint64_t* n) {
  if (name.size() != prefix.size() + 20 + 4 || name.substr(0, prefix.size()) != prefix ||
      name.substr(name.size() - 4) != ".wal") {
    return false;
  }
  uint64_t v = 0;
  for (char c : name.substr(prefix.size(), 20)) {
    if (c < '0' || c > '9') return false;
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *n = v;
  return true;
}

bool parse_segment_file_name(std::string_view name, uint64_t* seq) {
  return parse_prefixed_file_name(name, "", seq);
}

}  // namespace nori::wal
