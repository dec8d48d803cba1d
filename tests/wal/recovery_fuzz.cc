// libFuzzer target: arbitrary bytes as a WAL directory, fed to recovery. It
// must never crash, assert or read out of bounds, whatever the bytes say.
//
// Input layout (so the fuzzer reaches past the checksums):
//   byte 0: bit 0 = structured mode, bits 1-2 = number of segment files - 1
//   rest:   split evenly between the files.
// Raw mode: each file is a valid header (log 1, seq i+1) followed by the raw
// bytes. Structured mode: the bytes are a list of records {kind u8, len u8,
// body[len]} that are sealed with valid checksums at their offsets (the first
// forced to a segment_open), so decoders and replay rules see hostile bodies
// that pass the checksum. The corpus's reset-* seeds hold reset records
// (kind 0x15) among entries, compactions and checkpoints, so mutations reach
// the reset replay rule with hostile bodies.
#include <cstdint>
#include <string>
#include <vector>

#include "wal/format.h"
#include "wal/recovery.h"
#include "wal/sim_disk.h"

using namespace nori::wal;

namespace {

constexpr uint64_t kLogId = 1;

std::string header_for(uint64_t seq, uint64_t window) {
  SegmentHeader h;
  h.log_id = kLogId;
  h.seq = seq;
  h.tail_window_bytes = window;
  h.segment_bytes = 1 << 20;
  std::string block(kSegmentHeaderBytes, '\0');
  encode_segment_header(h, block);
  return block;
}

std::string structured(uint64_t seq, const uint8_t* p, size_t n) {
  std::string seg = header_for(seq, 8192);
  size_t i = 0;
  bool first = true;
  while (i + 2 <= n) {
    uint8_t kind = first ? static_cast<uint8_t>(RecordKind::kSegmentOpen) : p[i];
    if (kind == 0) kind = 1;
    size_t len = p[i + 1];
    i += 2;
    if (len > n - i) len = n - i;
    const uint64_t off = seg.size();
    seg.resize(off + record_span(len));
    std::memcpy(seg.data() + off + kRecordHeaderBytes, p + i, len);
    seal_record(std::span<char>(seg.data() + off, record_span(len)), static_cast<RecordKind>(kind),
                static_cast<uint32_t>(len), RecordPlace{kLogId, seq, off});
    i += len;
    first = false;
  }
  return seg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool structured_mode = data[0] & 1;
  const size_t files = 1 + ((data[0] >> 1) & 3);
  const uint8_t* rest = data + 1;
  const size_t rest_n = size - 1;
  const size_t part = rest_n / files;
  SimDisk disk;
  for (size_t f = 0; f < files; ++f) {
    const uint8_t* p = rest + f * part;
    const size_t n = (f + 1 == files) ? rest_n - f * part : part;
    std::string bytes = structured_mode ? structured(f + 1, p, n)
                                        : header_for(f + 1, 4096) +
                                              std::string(reinterpret_cast<const char*>(p), n);
    const std::string name = segment_file_name(f + 1);
    if (!disk.create(name, 0).ok()) return 0;
    if (!disk.write(name, 0, bytes.data(), bytes.size()).ok()) return 0;
  }
  SimSegmentSource source(disk);
  auto r = recover(source);
  if (r.ok()) {
    // Whatever recovery accepted must be internally consistent.
    for (const auto& [id, g] : r->groups) {
      if (g.entry_count() > 0 && g.first_index() > g.last_index()) __builtin_trap();
      // The log starts right after its start point (compaction or reset).
      if (g.last_index() < g.compact_index()) __builtin_trap();
      if (g.entry_count() > 0 && g.first_index() != g.compact_index() + 1) __builtin_trap();
    }
  }
  return 0;
}
