// Frames (docs/wire-format.md section 2): FrameBuilder turns the messages
// queued for one peer lane into checksummed frames ready for one writev;
// FrameReader turns the bytes received on a connection into verified frames
// whose messages point into its own buffer (decoded in place, no copy).
//
// Both are plain single-threaded objects owned by one link on one core; no
// I/O happens here, so the fuzzer and the tests drive them directly.
//
//   FrameBuilder b(seed);
//   b.add(MessageType::kGroup, group, payload);       // small: copied once, inline
//   b.add_owned(MessageType::kGroupBulk, group, std::move(chunk));  // large: by iovec
//   b.seal();  writev(fd, b.iovecs()) ...; b.clear();
//
//   FrameReader r(seed);
//   recv(fd, r.writable()) -> n; r.produced(n);
//   while ((st = r.next()) == FrameReader::kFrame) for (auto& m : r.messages()) ...
//   if (st == FrameReader::kError) -> close the connection, count r.error().
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net/wire.h"

namespace nori::net {

// Payloads at least this large are sent by reference (their own iovec)
// instead of being copied into the staging buffer.
inline constexpr size_t kInlinePayloadBytesMax = 2048;
// A batch is cut into frames of about this much body (a larger single
// message gets a frame of its own, up to kFrameBodyBytesMax).
inline constexpr size_t kFrameBodyBytesTarget = 64 * 1024;
static_assert(kFrameBodyBytesTarget <= kFrameBodyBytesMax);

struct MessageView {
  MessageType type;
  GroupId group;
  std::string_view payload;  // points into the FrameReader's buffer
};

// Header of a frame, as encoded (checksum excluded).
struct FrameHeader {
  uint32_t body_bytes = 0;
  uint32_t message_count = 0;
};

// Writes the 24-byte header for `body` into out (kFrameHeaderBytes) with its checksum.
// `body` is given as the pieces it will be sent as.
void encode_frame_header(uint8_t* out, FrameHeader h, std::span<const iovec> body, uint64_t seed);

class FrameBuilder {
 public:
  explicit FrameBuilder(uint64_t seed = 0) : seed_(seed) {}

  void set_seed(uint64_t seed) { seed_ = seed; }

  // Queues one message. The payload is copied (or, for add_owned with a large
  // payload, kept by move and sent by reference). payload.size() must be
  // <= kMessageBytesMax (callers check: a larger one is a caller bug).
  void add(MessageType type, GroupId group, std::string_view payload);
  void add_owned(MessageType type, GroupId group, std::string&& payload);

  // Closes the open frame and fills the header and checksum of every frame
  // not yet sealed, with the current seed (so a batch queued before a
  // reconnect is checksummed with the new connection's seed). Call before
  // iovecs().
  void seal();

  // The sealed frames as a gather list (valid until the next add/clear).
  std::span<const iovec> iovecs();

  // Wire bytes of sealed and open frames, messages queued, frames sealed.
  size_t bytes() const { return bytes_; }
  size_t messages() const { return messages_; }
  size_t frames() const { return frames_; }
  bool empty() const { return messages_ == 0 && frames_ == 0; }

  // Forgets everything, keeping capacity (a reusable buffer per link).
  void clear();
  // Adds an empty frame (a keep-alive); seals it.
  void add_keepalive();

 private:
  struct Segment {
    bool owned;
    size_t offset;  // into buf_ when !owned, else index into owned_
    size_t length;
  };
  struct FrameMark {
    size_t header_offset;  // in buf_
    size_t first_segment;  // first body segment
    size_t end_segment;    // one past the last body segment
    size_t body_bytes;
    size_t messages;
  };
  void open_frame_if_needed(size_t message_bytes);
  void close_frame();
  void append_inline(const void* p, size_t n);
  void close_inline_segment();

  uint64_t seed_;
  std::string buf_;                 // frame headers, message headers and inline payloads
  std::vector<std::string> owned_;  // large payloads sent by reference
  std::vector<Segment> segments_;
  std::vector<iovec> iov_;
  std::vector<FrameMark> marks_;  // closed frames
  size_t sealed_marks_ = 0;       // marks_[0, sealed_marks_) have their checksums
  bool frame_open_ = false;
  size_t frame_header_offset_ = 0;  // in buf_
  size_t frame_first_segment_ = 0;
  size_t frame_body_bytes_ = 0;
  size_t frame_messages_ = 0;
  size_t inline_segment_start_ = 0;  // start in buf_ of the current inline run
  size_t bytes_ = 0;
  size_t messages_ = 0;
  size_t frames_ = 0;
};

// Why a connection's input was refused (each counted; docs/wire-format.md section 2).
enum class FrameError : uint8_t {
  kNone = 0,
  kBadMagic,
  kBadVersion,
  kBadFlags,   // flags or reserved bytes not 0
  kOversized,  // body_bytes or message_count over its bound
  kBadChecksum,
  kUnknownType,
  kMalformedBody,  // truncated message, bad varint, over-long payload, body not exactly filled
};
inline constexpr size_t kFrameErrorCount = 8;
std::string_view to_string(FrameError e);

// Validates a complete frame body (header already checked) and appends its
// messages to out. On error out holds an unspecified prefix and nothing must
// be delivered. Exposed for the fuzzer and tests.
FrameError decode_frame_body(std::string_view body, uint32_t message_count,
                             std::vector<MessageView>& out);

class FrameReader {
 public:
  // buffer_bytes: the buffer kept between frames; it grows to fit one frame of
  // up to kFrameHeaderBytes + kFrameBodyBytesMax and, once empty, shrinks back
  // if it grew beyond one batch frame (kFrameBodyBytesTarget).
  explicit FrameReader(uint64_t seed = 0, size_t buffer_bytes = 64 * 1024);

  void set_seed(uint64_t seed) { seed_ = seed; }

  // Where the next receive should land: at least kRecvBytesMin bytes (or the
  // rest of the frame being assembled, if smaller). Invalidates the views of
  // the last frame, so call it only after that frame was dispatched.
  std::span<char> writable();
  void produced(size_t n);

  enum Status { kFrame, kNeedMore, kError };
  // The next verified frame. kFrame: messages() holds its messages until the
  // next call of next() or writable(); keep-alives yield kFrame with none.
  // kError: error() says why; the reader is unusable (close the connection).
  Status next();

  std::span<const MessageView> messages() const { return messages_; }
  FrameError error() const { return error_; }
  size_t buffered_bytes() const { return end_ - begin_; }
  size_t capacity() const { return buf_.size(); }

  static constexpr size_t kRecvBytesMin = 16 * 1024;

 private:
  Status fail(FrameError e) {
    error_ = e;
    return kError;
  }

  uint64_t seed_;
  size_t buffer_bytes_;
  std::vector<char> buf_;
  size_t begin_ = 0;                 // first unconsumed byte
  size_t end_ = 0;                   // one past the last received byte
  size_t need_ = kFrameHeaderBytes;  // bytes from begin_ needed for the next step
  std::vector<MessageView> messages_;
  FrameError error_ = FrameError::kNone;
};

}  // namespace nori::net
