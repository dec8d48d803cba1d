// Encoding of Raft messages (raft/message.h) to bytes and back, for the
// transport. The format is specified in docs/raft-messages.md; this file is
// its only implementation.
//
//   std::string buf;
//   encode_message(msg, buf);                      // appends
//   base::Result<Message> m = decode_message(buf); // untrusted input
//
// decode_message() treats its input as hostile: every length and count is
// bounded (kDecodeEntriesMax, kDecodeEntryBytesMax) and checked against the
// bytes actually present before anything is allocated, unknown types, flags
// and entry types are rejected, trailing bytes are rejected, and a failure is
// a kCorruption error, never a crash. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "raft/message.h"
#include "runtime/base/result.h"

namespace nori::raft {

inline constexpr uint8_t kCodecVersion = 1;
// Bounds applied while decoding (a sender never produces more: Config's
// append_entries_max / append_bytes_max are far below).
inline constexpr uint64_t kDecodeEntriesMax = 1 << 16;
inline constexpr uint64_t kDecodeEntryBytesMax = 64ull << 20;
// One SnapshotChunk's data and membership (RaftConfig::snapshot_chunk_bytes
// stays far below; a chunk travels on the transport's bulk lane).
inline constexpr uint64_t kDecodeSnapshotChunkBytesMax = 64ull << 20;
inline constexpr uint64_t kDecodeSnapshotMembershipBytesMax = 64ull << 10;

// Appends the encoding of `m` to `out` (every type, snapshot chunks and
// replies included).
void encode_message(const Message& m, std::string& out);

// Decodes exactly one message occupying all of `in`.
base::Result<Message> decode_message(std::string_view in);

// Bytes encode_message(m) appends.
size_t encoded_size(const Message& m);

}  // namespace nori::raft
