// The peer wire format's constants and fixed layouts: frame header, message
// types, lanes, limits and the handshake message sizes. The spec is
// docs/wire-format.md; every size here is a sum of named fields checked by a
// static_assert, so the code and the spec cannot drift apart silently.
//
// Pure definitions: no I/O, no allocation, usable from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace nori::net {

using NodeId = uint64_t;
using GroupId = uint64_t;

inline constexpr uint16_t kProtocolVersion = 1;

// ---- Frames (docs/wire-format.md section 2) --------------------------------

inline constexpr uint32_t kFrameMagic = 0x464E524F;  // bytes "ORNF"
inline constexpr uint8_t kFrameVersion = 1;

inline constexpr size_t kFrameMagicBytes = 4;
inline constexpr size_t kFrameVersionBytes = 1;
inline constexpr size_t kFrameFlagsBytes = 1;
inline constexpr size_t kFrameReservedBytes = 2;
inline constexpr size_t kFrameBodyLengthBytes = 4;
inline constexpr size_t kFrameMessageCountBytes = 4;
inline constexpr size_t kFrameChecksumBytes = 8;

inline constexpr size_t kFrameMagicOffset = 0;
inline constexpr size_t kFrameVersionOffset = kFrameMagicOffset + kFrameMagicBytes;
inline constexpr size_t kFrameFlagsOffset = kFrameVersionOffset + kFrameVersionBytes;
inline constexpr size_t kFrameReservedOffset = kFrameFlagsOffset + kFrameFlagsBytes;
inline constexpr size_t kFrameBodyLengthOffset = kFrameReservedOffset + kFrameReservedBytes;
inline constexpr size_t kFrameMessageCountOffset = kFrameBodyLengthOffset + kFrameBodyLengthBytes;
inline constexpr size_t kFrameChecksumOffset = kFrameMessageCountOffset + kFrameMessageCountBytes;
// The checksum covers header[0, kFrameChecksumOffset) and the body.
inline constexpr size_t kFrameChecksummedHeaderBytes = kFrameChecksumOffset;
inline constexpr size_t kFrameHeaderBytes = kFrameChecksumOffset + kFrameChecksumBytes;

static_assert(kFrameBodyLengthOffset == 8, "wire-format.md: body_bytes at offset 8");
static_assert(kFrameMessageCountOffset == 12, "wire-format.md: message_count at offset 12");
static_assert(kFrameChecksumOffset == 16, "wire-format.md: checksum at offset 16");
static_assert(kFrameHeaderBytes == 24, "wire-format.md: the frame header is 24 bytes");
static_assert(kFrameHeaderBytes % 8 == 0, "headers keep 8-byte alignment of the body in buffers");

inline constexpr size_t kFrameBodyBytesMax = size_t{8} << 20;
inline constexpr size_t kFrameMessagesMax = 65536;
inline constexpr size_t kMessageBytesMax = size_t{4} << 20;
// type (1) + group varint (>= 1) + length varint (>= 1).
inline constexpr size_t kMessageHeaderBytesMin = 3;
// type (1) + two varints of at most 10 bytes.
inline constexpr size_t kMessageHeaderBytesMax = 1 + 10 + 10;

static_assert(kMessageBytesMax + kMessageHeaderBytesMax <= kFrameBodyBytesMax,
              "the largest message must fit in one frame");
static_assert(kFrameBodyBytesMax <= UINT32_MAX, "body_bytes is a u32");
static_assert(kFrameMessagesMax <= UINT32_MAX, "message_count is a u32");

// What a message is, and so how it is queued (docs/wire-format.md section 2).
enum class MessageType : uint8_t {
  kGroup = 1,             // droppable for space; the group is told
  kGroupUrgent = 2,       // votes and vote replies: never dropped for space
  kGroupBulk = 3,         // snapshot chunks, catch-up: bulk lane, droppable
  kHeartbeats = 4,        // coalesced heartbeat batch (group 0)
  kHeartbeatReplies = 5,  // coalesced heartbeat reply batch (group 0)
};
inline constexpr uint8_t kMessageTypeMin = 1;
inline constexpr uint8_t kMessageTypeMax = 5;

inline constexpr bool is_known_message_type(uint8_t t) {
  return t >= kMessageTypeMin && t <= kMessageTypeMax;
}
// Messages that a full queue must still admit (docs/wire-format.md section 2).
inline constexpr bool is_never_dropped(MessageType t) {
  return t == MessageType::kGroupUrgent || t == MessageType::kHeartbeats ||
         t == MessageType::kHeartbeatReplies;
}
std::string_view to_string(MessageType t);

// ---- Lanes (docs/wire-format.md section 4) ---------------------------------

enum class Lane : uint8_t {
  kPriority = 0,  // votes, heartbeats, replication
  kBulk = 1,      // snapshot chunks and catch-up
};
inline constexpr size_t kLaneCount = 2;
inline constexpr Lane lane_of(MessageType t) {
  return t == MessageType::kGroupBulk ? Lane::kBulk : Lane::kPriority;
}

// ---- Coalesced heartbeats (section 3) --------------------------------------

inline constexpr size_t kHeartbeatEntriesMax = size_t{1} << 20;
inline constexpr size_t kHeartbeatEntryBytesMin = 4;  // four varints of >= 1 byte
inline constexpr uint64_t kHeartbeatReplyFlagsMax = UINT32_MAX;

// ---- Handshake (section 1) -------------------------------------------------

inline constexpr uint32_t kHelloMagic = 0x48524F4E;      // "NORH"
inline constexpr uint32_t kChallengeMagic = 0x43524F4E;  // "NORC"
inline constexpr uint32_t kProofMagic = 0x50524F4E;      // "NORP"
inline constexpr uint32_t kVerdictMagic = 0x56524F4E;    // "NORV"

inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMacBytes = 32;  // crypto_auth_hmacsha512256_BYTES
inline constexpr size_t kClusterKeyBytes = 32;

// The prefix every handshake message starts with, stable across versions.
inline constexpr size_t kHandshakePrefixBytes =
    4 /*magic*/ + 2 /*version*/ + 1 /*status or lane*/ + 1 /*reserved*/;
static_assert(kHandshakePrefixBytes == 8);

inline constexpr size_t kHelloBytes = kHandshakePrefixBytes + 8 /*cluster*/ + 8 /*node*/ +
                                      8 /*incarnation*/ + 8 /*target node*/ + 2 /*core*/ +
                                      2 /*core count*/ + 4 /*reserved*/ + kNonceBytes;
inline constexpr size_t kChallengeMacOffset = kHandshakePrefixBytes + 8 /*cluster*/ + 8 /*node*/ +
                                              8 /*incarnation*/ + 2 /*core*/ + 2 /*core count*/ +
                                              4 /*reserved*/ + kNonceBytes;
inline constexpr size_t kChallengeBytes = kChallengeMacOffset + kMacBytes;
inline constexpr size_t kProofBytes = kHandshakePrefixBytes + kMacBytes;
inline constexpr size_t kVerdictBytes = kHandshakePrefixBytes;
static_assert(kHelloBytes == 80, "wire-format.md: hello is 80 bytes");
static_assert(kChallengeMacOffset == 72, "wire-format.md: the acceptor MAC is at offset 72");
static_assert(kChallengeBytes == 104, "wire-format.md: challenge is 104 bytes");
static_assert(kProofBytes == 40, "wire-format.md: proof is 40 bytes");
static_assert(kVerdictBytes == 8, "wire-format.md: verdict is 8 bytes");

// Why a handshake was refused (the status byte; docs/wire-format.md section 1).
enum class Refusal : uint8_t {
  kNone = 0,
  kWrongVersion = 1,
  kWrongCluster = 2,
  kUnknownNode = 3,
  kStaleIncarnation = 4,
  kWrongSecret = 5,
  kCoreCountMismatch = 6,
  kWrongCore = 7,
  kMalformed = 8,
  kTimeout = 9,     // local only
  kDuplicate = 10,  // local only
};
inline constexpr size_t kRefusalCount = 11;
inline constexpr bool is_wire_refusal(uint8_t v) {
  return v >= 1 && v <= 8;
}
std::string_view to_string(Refusal r);

}  // namespace nori::net
