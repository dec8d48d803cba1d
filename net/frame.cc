#include "net/frame.h"

// Inlined: the frame checksum is on the hot path, and the static state type
// (XXH3_state_t on the stack) needs the full definitions.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "net/heartbeat.h"
#include "runtime/base/assert.h"
#include "runtime/base/bytes.h"

namespace nori::net {

std::string_view to_string(MessageType t) {
  switch (t) {
    case MessageType::kGroup:
      return "group";
    case MessageType::kGroupUrgent:
      return "group_urgent";
    case MessageType::kGroupBulk:
      return "group_bulk";
    case MessageType::kHeartbeats:
      return "heartbeats";
    case MessageType::kHeartbeatReplies:
      return "heartbeat_replies";
  }
  return "unknown";
}

std::string_view to_string(FrameError e) {
  switch (e) {
    case FrameError::kNone:
      return "none";
    case FrameError::kBadMagic:
      return "bad_magic";
    case FrameError::kBadVersion:
      return "bad_version";
    case FrameError::kBadFlags:
      return "bad_flags";
    case FrameError::kOversized:
      return "oversized";
    case FrameError::kBadChecksum:
      return "bad_checksum";
    case FrameError::kUnknownType:
      return "unknown_type";
    case FrameError::kMalformedBody:
      return "malformed_body";
  }
  return "unknown";
}

namespace {

void encode_header_fields(uint8_t* out, FrameHeader h) {
  base::store_u32(out + kFrameMagicOffset, kFrameMagic);
  out[kFrameVersionOffset] = kFrameVersion;
  out[kFrameFlagsOffset] = 0;
  base::store_u16(out + kFrameReservedOffset, 0);
  base::store_u32(out + kFrameBodyLengthOffset, h.body_bytes);
  base::store_u32(out + kFrameMessageCountOffset, h.message_count);
}

// XXH3-64 of header[0, 16) then the body pieces, with the session seed.
uint64_t frame_checksum(const void* header, std::span<const iovec> body, uint64_t seed) {
  XXH3_state_t state;
  // A stack-allocated state must be initialised before a seeded reset:
  // XXH3_64bits_reset_withSeed skips deriving the secret when the state's
  // (uninitialised) seed field already equals `seed`, so stale stack bytes
  // from an earlier call could pass for the secret and yield a wrong checksum
  // (seen as an intermittent frame verification failure under ASan).
  XXH3_INITSTATE(&state);
  XXH3_64bits_reset_withSeed(&state, seed);
  XXH3_64bits_update(&state, header, kFrameChecksummedHeaderBytes);
  for (const iovec& v : body)
    XXH3_64bits_update(&state, v.iov_base, v.iov_len);
  return XXH3_64bits_digest(&state);
}

}  // namespace

void encode_frame_header(uint8_t* out, FrameHeader h, std::span<const iovec> body, uint64_t seed) {
  encode_header_fields(out, h);
  base::store_u64(out + kFrameChecksumOffset, frame_checksum(out, body, seed));
}

// ---- FrameBuilder ----------------------------------------------------------

void FrameBuilder::append_inline(const void* p, size_t n) {
  buf_.append(static_cast<const char*>(p), n);
}

void FrameBuilder::close_inline_segment() {
  if (buf_.size() > inline_segment_start_) {
    segments_.push_back({false, inline_segment_start_, buf_.size() - inline_segment_start_});
  }
  inline_segment_start_ = buf_.size();
}

void FrameBuilder::open_frame_if_needed(size_t message_bytes) {
  NORI_ASSERT(message_bytes <= kFrameBodyBytesMax);
  // A frame is closed once it holds kFrameBodyBytesTarget: the receiver can
  // dispatch a frame only when all of it has arrived, so smaller frames keep
  // its buffer small and let it work while the rest of the batch streams in.
  // A single larger message still gets a frame of its own.
  if (frame_open_ && frame_messages_ + 1 <= kFrameMessagesMax &&
      (frame_body_bytes_ == 0 || frame_body_bytes_ + message_bytes <= kFrameBodyBytesTarget)) {
    return;
  }
  if (frame_open_) close_frame();
  // The header gets a segment of its own so that seal() can checksum the body
  // segments that follow it without splitting a run.
  close_inline_segment();
  frame_header_offset_ = buf_.size();
  buf_.append(kFrameHeaderBytes, '\0');
  close_inline_segment();
  frame_first_segment_ = segments_.size();
  frame_open_ = true;
  frame_body_bytes_ = 0;
  frame_messages_ = 0;
  bytes_ += kFrameHeaderBytes;
}

void FrameBuilder::add(MessageType type, GroupId group, std::string_view payload) {
  NORI_ASSERT(payload.size() <= kMessageBytesMax, "message of {} bytes", payload.size());
  uint8_t head[kMessageHeaderBytesMax];
  head[0] = static_cast<uint8_t>(type);
  size_t n = 1;
  n += base::encode_varint(head + n, group);
  n += base::encode_varint(head + n, payload.size());
  open_frame_if_needed(n + payload.size());
  append_inline(head, n);
  append_inline(payload.data(), payload.size());
  frame_body_bytes_ += n + payload.size();
  frame_messages_ += 1;
  bytes_ += n + payload.size();
  messages_ += 1;
}

void FrameBuilder::add_owned(MessageType type, GroupId group, std::string&& payload) {
  if (payload.size() < kInlinePayloadBytesMax) {
    add(type, group, payload);
    return;
  }
  NORI_ASSERT(payload.size() <= kMessageBytesMax, "message of {} bytes", payload.size());
  uint8_t head[kMessageHeaderBytesMax];
  head[0] = static_cast<uint8_t>(type);
  size_t n = 1;
  n += base::encode_varint(head + n, group);
  n += base::encode_varint(head + n, payload.size());
  open_frame_if_needed(n + payload.size());
  append_inline(head, n);
  close_inline_segment();
  size_t len = payload.size();
  segments_.push_back({true, owned_.size(), len});
  owned_.push_back(std::move(payload));
  frame_body_bytes_ += n + len;
  frame_messages_ += 1;
  bytes_ += n + len;
  messages_ += 1;
}

void FrameBuilder::add_keepalive() {
  if (frame_open_) close_frame();
  open_frame_if_needed(0);
  close_frame();
}

void FrameBuilder::close_frame() {
  if (!frame_open_) return;
  close_inline_segment();
  marks_.push_back({frame_header_offset_, frame_first_segment_, segments_.size(), frame_body_bytes_,
                    frame_messages_});
  frame_open_ = false;
  frames_ += 1;
}

void FrameBuilder::seal() {
  close_frame();
  for (; sealed_marks_ < marks_.size(); ++sealed_marks_) {
    const FrameMark& m = marks_[sealed_marks_];
    iov_.clear();
    for (size_t i = m.first_segment; i < m.end_segment; ++i) {
      const Segment& s = segments_[i];
      char* base = s.owned ? owned_[s.offset].data() : buf_.data() + s.offset;
      iov_.push_back({base, s.length});
    }
    auto* header = reinterpret_cast<uint8_t*>(buf_.data() + m.header_offset);
    encode_frame_header(header,
                        {static_cast<uint32_t>(m.body_bytes), static_cast<uint32_t>(m.messages)},
                        iov_, seed_);
  }
  iov_.clear();
}

std::span<const iovec> FrameBuilder::iovecs() {
  NORI_ASSERT(!frame_open_ && sealed_marks_ == marks_.size(), "iovecs() of an unsealed frame");
  iov_.clear();
  for (const Segment& s : segments_) {
    char* base = s.owned ? owned_[s.offset].data() : buf_.data() + s.offset;
    // Adjacent runs of buf_ (header then body) go out as one iovec.
    if (!s.owned && !iov_.empty() &&
        static_cast<char*>(iov_.back().iov_base) + iov_.back().iov_len == base) {
      iov_.back().iov_len += s.length;
    } else {
      iov_.push_back({base, s.length});
    }
  }
  return iov_;
}

void FrameBuilder::clear() {
  buf_.clear();
  owned_.clear();
  segments_.clear();
  iov_.clear();
  marks_.clear();
  sealed_marks_ = 0;
  frame_open_ = false;
  frame_header_offset_ = frame_first_segment_ = frame_body_bytes_ = frame_messages_ = 0;
  inline_segment_start_ = 0;
  bytes_ = messages_ = frames_ = 0;
}

// ---- Decoding --------------------------------------------------------------

FrameError decode_frame_body(std::string_view body, uint32_t message_count,
                             std::vector<MessageView>& out) {
  base::ByteReader r(body);
  for (uint32_t i = 0; i < message_count; ++i) {
    uint8_t type;
    uint64_t group;
    std::string_view payload;
    if (!r.u8(type)) return FrameError::kMalformedBody;
    if (!is_known_message_type(type)) return FrameError::kUnknownType;
    if (!r.varint(group) || !r.length_prefixed(payload, kMessageBytesMax)) {
      return FrameError::kMalformedBody;
    }
    auto t = static_cast<MessageType>(type);
    if (t == MessageType::kHeartbeats || t == MessageType::kHeartbeatReplies) {
      // Validated here, with the rest of the frame, so a bad batch delivers nothing.
      if (group != 0) return FrameError::kMalformedBody;
      bool ok = t == MessageType::kHeartbeats ? validate_heartbeats(payload)
                                              : validate_heartbeat_replies(payload);
      if (!ok) return FrameError::kMalformedBody;
    }
    out.push_back({t, group, payload});
  }
  // The messages must fill the body exactly: trailing bytes are garbage.
  if (!r.empty()) return FrameError::kMalformedBody;
  return FrameError::kNone;
}

FrameReader::FrameReader(uint64_t seed, size_t buffer_bytes)
    : seed_(seed), buffer_bytes_(std::max(buffer_bytes, kRecvBytesMin)) {
  buf_.resize(buffer_bytes_);
}

std::span<char> FrameReader::writable() {
  messages_.clear();  // their views are about to be invalidated
  if (begin_ == end_) {
    begin_ = end_ = 0;
    // Give back a buffer grown for a large frame (one well beyond the usual
    // batch frame, so ordinary traffic does not reallocate every frame).
    if (buf_.size() > kFrameBodyBytesTarget + kFrameHeaderBytes && buf_.size() > buffer_bytes_) {
      buf_.resize(buffer_bytes_);
      buf_.shrink_to_fit();
    }
  }
  if (buf_.size() - end_ < kRecvBytesMin || begin_ + need_ > buf_.size()) {
    // Move the partial frame to the front, then make room for all of it.
    size_t held = end_ - begin_;
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, held);
      begin_ = 0;
      end_ = held;
    }
    NORI_ASSERT(need_ <= kFrameHeaderBytes + kFrameBodyBytesMax);
    if (need_ > buf_.size()) buf_.resize(need_);
  }
  NORI_ASSERT(end_ < buf_.size(), "no room to receive ({} of {})", end_, buf_.size());
  return {buf_.data() + end_, buf_.size() - end_};
}

void FrameReader::produced(size_t n) {
  NORI_ASSERT(end_ + n <= buf_.size());
  end_ += n;
}

FrameReader::Status FrameReader::next() {
  if (error_ != FrameError::kNone) return kError;
  messages_.clear();
  size_t avail = end_ - begin_;
  if (avail < kFrameHeaderBytes) {
    need_ = kFrameHeaderBytes;
    return kNeedMore;
  }
  const char* h = buf_.data() + begin_;
  // Every header rule is checked before the body is awaited: an oversized
  // length is refused now, not after buffering megabytes for it.
  if (base::load_u32(h + kFrameMagicOffset) != kFrameMagic) return fail(FrameError::kBadMagic);
  if (static_cast<uint8_t>(h[kFrameVersionOffset]) != kFrameVersion) {
    return fail(FrameError::kBadVersion);
  }
  if (h[kFrameFlagsOffset] != 0 || base::load_u16(h + kFrameReservedOffset) != 0) {
    return fail(FrameError::kBadFlags);
  }
  uint32_t body_bytes = base::load_u32(h + kFrameBodyLengthOffset);
  uint32_t count = base::load_u32(h + kFrameMessageCountOffset);
  if (body_bytes > kFrameBodyBytesMax || count > kFrameMessagesMax ||
      uint64_t{count} * kMessageHeaderBytesMin > body_bytes) {
    return fail(FrameError::kOversized);
  }
  size_t total = kFrameHeaderBytes + body_bytes;
  if (avail < total) {
    need_ = total;
    return kNeedMore;
  }
  iovec body{const_cast<char*>(h + kFrameHeaderBytes), body_bytes};
  if (frame_checksum(h, {&body, 1}, seed_) != base::load_u64(h + kFrameChecksumOffset)) {
    return fail(FrameError::kBadChecksum);
  }
  FrameError e = decode_frame_body({h + kFrameHeaderBytes, body_bytes}, count, messages_);
  if (e != FrameError::kNone) {
    messages_.clear();
    return fail(e);
  }
  begin_ += total;
  need_ = kFrameHeaderBytes;
  return kFrame;
}

}  // namespace nori::net
