#include "raft/codec.h"

#include "runtime/base/assert.h"
#include "runtime/base/bytes.h"

namespace nori::raft {

namespace {

// Flag bits (docs/raft-messages.md). Unknown bits are rejected.
constexpr uint8_t kFlagPreVote = 1;
constexpr uint8_t kFlagGranted = 2;
constexpr uint8_t kFlagSuccess = 1;
constexpr uint8_t kFlagLast = 1;     // SnapshotChunk
constexpr uint8_t kFlagDone = 1;     // SnapshotReply
constexpr uint8_t kFlagQuiesce = 1;  // Heartbeat (optional trailing flags byte)
// Smallest encoding of one entry: term (1) + type (1) + length (1).
constexpr uint64_t kEntryBytesMin = 3;

base::Error malformed(const char* what) {
  return base::err(base::ErrorKind::kCorruption, "raft message: {}", what);
}

void put_i64_nonneg(base::ByteWriter& w, int64_t v) {
  w.varint(v < 0 ? 0 : static_cast<uint64_t>(v));
}

struct BodyEncoder {
  base::ByteWriter& w;
  void operator()(const VoteRequest& b) {
    w.u8(b.pre_vote ? kFlagPreVote : 0);
    w.varint(b.last_index);
    w.varint(b.last_term);
    w.varint(b.transfer_leader);
    w.varint(b.transfer_term);
  }
  void operator()(const VoteReply& b) {
    w.u8(static_cast<uint8_t>((b.pre_vote ? kFlagPreVote : 0) | (b.granted ? kFlagGranted : 0)));
    put_i64_nonneg(w, b.promise_remaining_ns);
  }
  void operator()(const Append& b) {
    w.varint(b.prev_index);
    w.varint(b.prev_term);
    w.varint(b.commit);
    w.varint(b.entries.size());
    for (const Entry& e : b.entries) {
      // The index is implied: prev_index + 1 + position.
      w.varint(e.term);
      w.u8(static_cast<uint8_t>(e.type));
      w.length_prefixed(e.data);
    }
  }
  void operator()(const SnapshotChunkMsg& boxed) {
    const SnapshotChunk& b = *boxed;
    w.u8(b.last ? kFlagLast : 0);
    w.varint(b.index);
    w.varint(b.index_term);
    w.varint(b.offset);
    w.varint(b.total_bytes);
    w.u64(b.digest);
    w.length_prefixed(b.membership);
    w.length_prefixed(b.data);
  }
  void operator()(const SnapshotReply& b) {
    w.u8(b.done ? kFlagDone : 0);
    w.varint(b.index);
    w.varint(b.index_term);
    w.varint(b.next_offset);
    w.varint(b.match_index);
  }
  void operator()(const AppendReply& b) {
    w.u8(b.success ? kFlagSuccess : 0);
    w.varint(b.match_index);
    w.varint(b.conflict_index);
    w.varint(b.conflict_term);
    w.varint(b.last_index);
    w.varint(b.rejected_index);
  }
  void operator()(const Heartbeat& b) {
    w.varint(b.commit);
    w.varint(b.round);
    // The flags byte is present only when a flag is set, so a plain
    // heartbeat encodes exactly as in codec version 1.
    if (b.quiesce) w.u8(kFlagQuiesce);
  }
  void operator()(const HeartbeatReply& b) { w.varint(b.round); }
  void operator()(const TimeoutNow& b) { put_i64_nonneg(w, b.leader_wait_remaining_ns); }
};

bool get_i64_nonneg(base::ByteReader& r, int64_t& v) {
  uint64_t u;
  if (!r.varint_bounded(u, static_cast<uint64_t>(INT64_MAX))) return false;
  v = static_cast<int64_t>(u);
  return true;
}

base::Status decode_append(base::ByteReader& r, Append& b) {
  uint64_t count;
  if (!r.varint(b.prev_index) || !r.varint(b.prev_term) || !r.varint(b.commit)) {
    return malformed("truncated append header");
  }
  if (!r.varint_bounded(count, kDecodeEntriesMax)) return malformed("entry count");
  // Bound the count by the bytes present before reserving anything.
  if (count > r.remaining() / kEntryBytesMin) return malformed("entry count exceeds input");
  if (count > 0 && b.prev_index > UINT64_MAX - count) return malformed("entry index overflow");
  b.entries.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    Entry e;
    uint8_t type;
    std::string_view data;
    if (!r.varint(e.term) || !r.u8(type)) return malformed("truncated entry");
    if (type > static_cast<uint8_t>(EntryType::kConfig)) return malformed("entry type");
    if (!r.length_prefixed(data, kDecodeEntryBytesMax)) return malformed("entry data");
    e.index = b.prev_index + 1 + i;
    e.type = static_cast<EntryType>(type);
    e.data.assign(data);
    b.entries.push_back(std::move(e));
  }
  return {};
}

}  // namespace

void encode_message(const Message& m, std::string& out) {
  base::ByteWriter w(out);
  w.u8(kCodecVersion);
  w.u8(static_cast<uint8_t>(m.type()));
  w.varint(m.group);
  w.varint(m.from);
  w.varint(m.to);
  w.varint(m.term);
  std::visit(BodyEncoder{w}, m.body);
}

size_t encoded_size(const Message& m) {
  // Exact, without encoding the entry payloads twice.
  size_t n = 2 + base::varint_size(m.group) + base::varint_size(m.from) + base::varint_size(m.to) +
             base::varint_size(m.term);
  if (const auto* a = std::get_if<Append>(&m.body)) {
    n += base::varint_size(a->prev_index) + base::varint_size(a->prev_term) +
         base::varint_size(a->commit) + base::varint_size(a->entries.size());
    for (const Entry& e : a->entries) {
      n += base::varint_size(e.term) + 1 + base::varint_size(e.data.size()) + e.data.size();
    }
    return n;
  }
  std::string tmp;
  base::ByteWriter w(tmp);
  std::visit(BodyEncoder{w}, m.body);
  return n + tmp.size();
}

base::Result<Message> decode_message(std::string_view in) {
  base::ByteReader r(in);
  uint8_t version, type;
  Message m;
  if (!r.u8(version) || !r.u8(type)) return malformed("truncated header");
  if (version != kCodecVersion) return malformed("unknown codec version");
  if (!r.varint(m.group) || !r.varint(m.from) || !r.varint(m.to) || !r.varint(m.term)) {
    return malformed("truncated header");
  }
  switch (static_cast<MessageType>(type)) {
    case MessageType::kVoteRequest: {
      VoteRequest b;
      uint8_t flags;
      if (!r.u8(flags) || (flags & ~kFlagPreVote) != 0) return malformed("vote request flags");
      b.pre_vote = flags & kFlagPreVote;
      if (!r.varint(b.last_index) || !r.varint(b.last_term) || !r.varint(b.transfer_leader) ||
          !r.varint(b.transfer_term)) {
        return malformed("truncated vote request");
      }
      m.body = b;
      break;
    }
    case MessageType::kVoteReply: {
      VoteReply b;
      uint8_t flags;
      if (!r.u8(flags) || (flags & ~(kFlagPreVote | kFlagGranted)) != 0) {
        return malformed("vote reply flags");
      }
      b.pre_vote = flags & kFlagPreVote;
      b.granted = flags & kFlagGranted;
      if (!get_i64_nonneg(r, b.promise_remaining_ns)) return malformed("promise");
      m.body = b;
      break;
    }
    case MessageType::kAppend: {
      Append b;
      NORI_TRY(decode_append(r, b));
      m.body = std::move(b);
      break;
    }
    case MessageType::kAppendReply: {
      AppendReply b;
      uint8_t flags;
      if (!r.u8(flags) || (flags & ~kFlagSuccess) != 0) return malformed("append reply flags");
      b.success = flags & kFlagSuccess;
      if (!r.varint(b.match_index) || !r.varint(b.conflict_index) || !r.varint(b.conflict_term) ||
          !r.varint(b.last_index) || !r.varint(b.rejected_index)) {
        return malformed("truncated append reply");
      }
      m.body = b;
      break;
    }
    case MessageType::kHeartbeat: {
      Heartbeat b;
      if (!r.varint(b.commit) || !r.varint(b.round)) return malformed("truncated heartbeat");
      if (!r.empty()) {
        uint8_t flags;
        // Present only with a flag set: a zero byte is not canonical.
        if (!r.u8(flags) || flags == 0 || (flags & ~kFlagQuiesce) != 0) {
          return malformed("heartbeat flags");
        }
        b.quiesce = flags & kFlagQuiesce;
      }
      m.body = b;
      break;
    }
    case MessageType::kHeartbeatReply: {
      HeartbeatReply b;
      if (!r.varint(b.round)) return malformed("truncated heartbeat reply");
      m.body = b;
      break;
    }
    case MessageType::kTimeoutNow: {
      TimeoutNow b;
      if (!get_i64_nonneg(r, b.leader_wait_remaining_ns)) return malformed("timeout-now wait");
      m.body = b;
      break;
    }
    case MessageType::kSnapshotChunk: {
      SnapshotChunk b;
      uint8_t flags;
      if (!r.u8(flags) || (flags & ~kFlagLast) != 0) return malformed("snapshot chunk flags");
      b.last = flags & kFlagLast;
      std::string_view mem, data;
      if (!r.varint(b.index) || !r.varint(b.index_term) || !r.varint(b.offset) ||
          !r.varint(b.total_bytes) || !r.u64(b.digest) ||
          !r.length_prefixed(mem, kDecodeSnapshotMembershipBytesMax) ||
          !r.length_prefixed(data, kDecodeSnapshotChunkBytesMax)) {
        return malformed("truncated snapshot chunk");
      }
      if (b.offset + data.size() > b.total_bytes || b.offset + data.size() < b.offset ||
          (b.last && b.offset + data.size() != b.total_bytes)) {
        return malformed("snapshot chunk outside the file");
      }
      b.membership.assign(mem);
      b.data.assign(data);
      m.body = SnapshotChunkMsg(std::move(b));
      break;
    }
    case MessageType::kSnapshotReply: {
      SnapshotReply b;
      uint8_t flags;
      if (!r.u8(flags) || (flags & ~kFlagDone) != 0) return malformed("snapshot reply flags");
      b.done = flags & kFlagDone;
      if (!r.varint(b.index) || !r.varint(b.index_term) || !r.varint(b.next_offset) ||
          !r.varint(b.match_index)) {
        return malformed("truncated snapshot reply");
      }
      m.body = b;
      break;
    }
    default:
      return malformed("unknown or reserved message type");
  }
  if (!r.empty()) return malformed("trailing bytes");
  return m;
}

}  // namespace nori::raft
