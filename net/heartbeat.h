// Coalesced heartbeats (docs/wire-format.md section 3): one message per peer
// per flush carries the heartbeat of every group a core leads toward that
// peer, and one message carries the replies.
//
// Each entry holds only what a follower needs from an idle leader: the term,
// the commit index clamped to what that follower is known to hold
// (min(commit, match)), and the leader's round number for the group, which
// the reply echoes so leases and read-index can tell which round an ack
// answers. Full Raft messages go separately, only for groups that need them.
//
// Pure codec: no I/O, any thread. Decoding bounds every count and varint.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net/wire.h"

namespace nori::net {

struct HeartbeatEntry {
  GroupId group = 0;
  uint64_t term = 0;
  uint64_t commit = 0;  // already clamped to min(commit, match) by the leader
  uint64_t round = 0;
  friend bool operator==(const HeartbeatEntry&, const HeartbeatEntry&) = default;
};

struct HeartbeatReply {
  GroupId group = 0;
  uint64_t term = 0;   // the follower's term (a higher one makes the leader step down)
  uint64_t round = 0;  // echoed from the heartbeat it answers
  uint32_t flags = 0;  // the node layer's; kHeartbeatReplyNeedsAppend = 1
  friend bool operator==(const HeartbeatReply&, const HeartbeatReply&) = default;
};
inline constexpr uint32_t kHeartbeatReplyNeedsAppend = 1;

// Sorts by group and keeps, per group, the entry staged last (a newer round
// supersedes an older one still unsent). Used before encoding.
void sort_dedupe_latest(std::vector<HeartbeatEntry>& entries);
void sort_dedupe_latest(std::vector<HeartbeatReply>& replies);

// Appends the encoding of entries, which must be sorted by group, strictly
// increasing, and at most kHeartbeatEntriesMax (asserted: a caller bug).
void encode_heartbeats(std::span<const HeartbeatEntry> entries, std::string& out);
void encode_heartbeat_replies(std::span<const HeartbeatReply> replies, std::string& out);

// Exact upper bound of the encoding, to size buffers and queue accounting.
size_t heartbeats_bytes_max(size_t count);

// Decode a payload; false (out holding an unspecified prefix) when malformed.
[[nodiscard]] bool decode_heartbeats(std::string_view payload, std::vector<HeartbeatEntry>& out);
[[nodiscard]] bool decode_heartbeat_replies(std::string_view payload,
                                            std::vector<HeartbeatReply>& out);
// Structural checks only (no output), used when a frame is validated.
[[nodiscard]] bool validate_heartbeats(std::string_view payload);
[[nodiscard]] bool validate_heartbeat_replies(std::string_view payload);

}  // namespace nori::net
