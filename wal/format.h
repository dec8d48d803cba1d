// The WAL's on-disk format, version 1: constants, the segment header, record
// headers, record bodies, and the checksum that binds a record to its log,
// segment and offset. The specification is docs/wal-format.md; every size
// here is asserted against it.
//
// Pure functions over bytes: no I/O, no allocation on the encode path (the
// caller provides the destination), and every decoder is bounds-checked so it
// can be fed arbitrary bytes (recovery, nori-wal-dump, the fuzzer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/result.h"

namespace nori::wal {

// ---- Sizes (docs/wal-format.md) ------------------------------------------

inline constexpr uint64_t kMagic = 0x004C415749524F4EULL;  // "NORIWAL\0" little-endian
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kBlockBytes = 4096;

// Segment header fields, each width named, summed, then padded to a block.
inline constexpr size_t kSegmentHeaderFixedBytes =
    8 /*magic*/ + 4 /*version*/ + 4 /*header_bytes*/ + 8 /*log_id*/ + 8 /*seq*/ +
    8 /*created_unix_ns*/ + 8 /*tail_window_bytes*/ + 8 /*segment_bytes*/ + 8 /*checksum*/;
static_assert(kSegmentHeaderFixedBytes == 64);
inline constexpr uint32_t kSegmentHeaderBytes = kBlockBytes;  // records start here
static_assert(kSegmentHeaderFixedBytes <= kSegmentHeaderBytes);

inline constexpr size_t kRecordHeaderBytes =
    8 /*checksum*/ + 4 /*body_bytes*/ + 1 /*kind*/ + 1 /*flags*/ + 2 /*reserved*/;
static_assert(kRecordHeaderBytes == 16);
inline constexpr uint32_t kRecordAlign = 16;
// Any gap between 16-aligned record ends and a block boundary fits a padding record.
static_assert(kRecordAlign >= kRecordHeaderBytes && kBlockBytes % kRecordAlign == 0);

// Largest segment recovery accepts (a bound on untrusted sizes).
inline constexpr uint64_t kSegmentBytesMax = uint64_t{4} << 30;

enum class RecordKind : uint8_t {
  kPadding = 0x01,
  kSegmentOpen = 0x02,
  kEntries = 0x10,
  kHardState = 0x11,
  kTruncate = 0x12,
  kCompact = 0x13,
  kCheckpoint = 0x14,
  // Added after the first release of version 1 (see docs/wal-format.md):
  // readers that predate it report it as an unknown required kind.
  kReset = 0x15,
  // Added after kReset, the same way: the group left this core's log.
  kRemoveGroup = 0x16,
};
// Kinds at or above this are optional: unknown ones are verified and skipped.
inline constexpr uint8_t kFirstOptionalKind = 0x80;

inline constexpr size_t kSegmentOpenBodyBytes = 8 + 8;
inline constexpr size_t kEntriesFixedBytes = 8 /*group*/ + 8 /*first*/ + 4 /*count*/ + 4 /*runs*/;
inline constexpr size_t kTermRunBytes = 8 /*term*/ + 4 /*count*/ + 4 /*zero*/;
inline constexpr size_t kHardStateBodyBytes = 8 * 4;
inline constexpr size_t kTruncateBodyBytes = 8 * 2;
inline constexpr size_t kCompactBodyBytes = 8 * 3;
inline constexpr size_t kCheckpointBodyBytes = 8 * 6;
inline constexpr size_t kResetBodyBytes = 8 /*group*/ + 8 /*index*/ + 8 /*term*/;
static_assert(kEntriesFixedBytes == 24 && kTermRunBytes == 16 && kCheckpointBodyBytes == 48);
inline constexpr size_t kRemoveGroupBodyBytes = 8 /*group*/;
static_assert(kResetBodyBytes == 24 && kRemoveGroupBodyBytes == 8);

inline constexpr uint64_t record_span(uint64_t body_bytes) {
  return (kRecordHeaderBytes + body_bytes + kRecordAlign - 1) & ~uint64_t{kRecordAlign - 1};
}

// ---- Segment header ------------------------------------------------------

struct SegmentHeader {
  uint32_t version = kFormatVersion;
  uint64_t log_id = 0;
  uint64_t seq = 0;
  uint64_t created_unix_ns = 0;
  uint64_t tail_window_bytes = 0;
  uint64_t segment_bytes = 0;
};

// Writes the kSegmentHeaderBytes-byte header block into out (zeroing the rest).
void encode_segment_header(const SegmentHeader& h, std::span<char> out);
// Decodes and verifies (size, magic, checksum, version) a header block.
base::Result<SegmentHeader> decode_segment_header(std::string_view block);

// ---- Records -------------------------------------------------------------

// The seed that binds a record checksum to (log, segment, offset).
uint64_t record_seed(uint64_t log_id, uint64_t seq, uint64_t offset);

// Where a record sits: the checksum seed inputs.
struct RecordPlace {
  uint64_t log_id;
  uint64_t seq;
  uint64_t offset;  // byte offset of the record in its segment file
};

// Writes a record header (with checksum) for a body already placed at
// out[kRecordHeaderBytes..] and zeroes the pad. out must hold record_span(body_bytes).
void seal_record(std::span<char> out, RecordKind kind, uint32_t body_bytes, RecordPlace place);
// Writes a padding record filling exactly `gap` bytes (gap % 16 == 0, gap >= 16).
void encode_padding(std::span<char> out, RecordPlace place);

struct RecordView {
  uint64_t offset = 0;  // in the segment
  uint8_t kind = 0;
  std::string_view body;
  uint64_t span = 0;  // bytes the record occupies, pad included
};

enum class RecordCheck : uint8_t {
  kValid,
  kInvalid,  // torn, zeroed, stale or corrupt: not a record here
};

// Checks the record that would start at `bytes[offset]` (bytes = the whole
// segment read so far; offset 16-aligned). On kValid fills *view.
RecordCheck check_record(std::string_view segment, uint64_t offset, uint64_t log_id, uint64_t seq,
                         RecordView* view);

// ---- Bodies --------------------------------------------------------------

struct HardState {
  uint64_t term = 0;
  uint64_t vote = 0;
  uint64_t commit = 0;
  friend bool operator==(const HardState&, const HardState&) = default;
};

struct SegmentOpenBody {
  uint64_t prev_seq = 0;
  uint64_t prev_end = 0;
};
struct HardStateBody {
  uint64_t group = 0;
  HardState hs;
};
struct TruncateBody {
  uint64_t group = 0;
  uint64_t last_kept = 0;
};
struct CompactBody {
  uint64_t group = 0;
  uint64_t index = 0;
  uint64_t term = 0;
};
struct CheckpointBody {
  uint64_t group = 0;
  HardState hs;
  uint64_t compact_index = 0;
  uint64_t compact_term = 0;
};

// The group's log is replaced by an empty one that starts after (index,
// term): a snapshot the log does not match was installed. index >= 1,
// term >= 1, index < UINT64_MAX (else corruption).
struct ResetBody {
  uint64_t group = 0;
  uint64_t index = 0;
  uint64_t term = 0;
};

// The group is removed from this log: every record of it before this one
// is void (raft::Node::remove_group). A later record of the same group
// starts a new, empty log.
struct RemoveGroupBody {
  uint64_t group = 0;
};

struct TermRun {
  uint64_t term = 0;
  uint32_t count = 0;
};

// A decoded entries record: payloads are views into the record body.
struct EntriesBody {
  uint64_t group = 0;
  uint64_t first_index = 0;
  std::vector<TermRun> runs;
  std::vector<std::string_view> payloads;
  // Byte offset of each payload from the start of the body.
  std::vector<uint32_t> payload_offsets;
};

// Body encoders: each writes exactly body bytes into out and returns the count.
size_t encode_segment_open(std::span<char> out, const SegmentOpenBody& b);
size_t encode_hard_state(std::span<char> out, const HardStateBody& b);
size_t encode_truncate(std::span<char> out, const TruncateBody& b);
size_t encode_compact(std::span<char> out, const CompactBody& b);
size_t encode_checkpoint(std::span<char> out, const CheckpointBody& b);
size_t encode_reset(std::span<char> out, const ResetBody& b);
size_t encode_remove_group(std::span<char> out, const RemoveGroupBody& b);

// Size of an entries body for these terms (one per entry) and payload sizes.
size_t entries_body_bytes(std::span<const uint64_t> terms,
                          std::span<const std::string_view> payloads);
// Encodes an entries body; out.size() must be entries_body_bytes(...). Returns
// the offset of each payload from the start of the body in payload_offsets.
size_t encode_entries(std::span<char> out, uint64_t group, uint64_t first_index,
                      std::span<const uint64_t> terms, std::span<const std::string_view> payloads,
                      uint32_t* payload_offsets);

// Body decoders: kCorruption when a checksum-valid body does not parse.
base::Result<SegmentOpenBody> decode_segment_open(std::string_view body);
base::Result<HardStateBody> decode_hard_state(std::string_view body);
base::Result<TruncateBody> decode_truncate(std::string_view body);
base::Result<CompactBody> decode_compact(std::string_view body);
base::Result<CheckpointBody> decode_checkpoint(std::string_view body);
base::Result<ResetBody> decode_reset(std::string_view body);
base::Result<RemoveGroupBody> decode_remove_group(std::string_view body);
base::Result<EntriesBody> decode_entries(std::string_view body);

std::string_view kind_name(uint8_t kind);

// Segment file names (docs/wal-format.md, "Files").
std::string segment_file_name(uint64_t seq);
std::string temp_file_name(uint64_t seq);
std::string free_file_name(uint64_t n);
// Parses "<20 digits>.wal"; false for anything else.
bool parse_segment_file_name(std::string_view name, uint64_t* seq);
bool parse_prefixed_file_name(std::string_view name, std::string_view prefix, uint64_t* n);

}  // namespace nori::wal
