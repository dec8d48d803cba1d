#include "net/frame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "net/heartbeat.h"
#include "runtime/base/bytes.h"

namespace nori::net {
namespace {

constexpr uint64_t kSeed = 0x5eed;

std::string flatten(FrameBuilder& b) {
  std::string out;
  for (const iovec& v : b.iovecs())
    out.append(static_cast<const char*>(v.iov_base), v.iov_len);
  return out;
}

struct Got {
  MessageType type;
  GroupId group;
  std::string payload;
};

// Feeds wire bytes to a reader in chunks of `chunk` bytes; collects messages.
FrameReader::Status feed(FrameReader& r, std::string_view wire, size_t chunk, std::vector<Got>& got,
                         size_t* frames = nullptr) {
  size_t at = 0;
  while (true) {
    FrameReader::Status st;
    while ((st = r.next()) == FrameReader::kFrame) {
      if (frames) ++*frames;
      for (const MessageView& m : r.messages())
        got.push_back({m.type, m.group, std::string(m.payload)});
    }
    if (st == FrameReader::kError) return st;
    if (at == wire.size()) return st;
    auto w = r.writable();
    size_t n = std::min({chunk, w.size(), wire.size() - at});
    std::memcpy(w.data(), wire.data() + at, n);
    r.produced(n);
    at += n;
  }
}

std::string payload_for(size_t i, size_t len) {
  std::string p(len, '\0');
  for (size_t k = 0; k < len; ++k)
    p[k] = static_cast<char>((i * 31 + k * 7) & 0xff);
  return p;
}

// A frame whose body is given raw (for malformed bodies with a valid checksum).
std::string raw_frame(std::string_view body, uint32_t count, uint64_t seed = kSeed) {
  std::string out(kFrameHeaderBytes, '\0');
  iovec v{const_cast<char*>(body.data()), body.size()};
  encode_frame_header(reinterpret_cast<uint8_t*>(out.data()),
                      {static_cast<uint32_t>(body.size()), count}, {&v, 1}, seed);
  out.append(body);
  return out;
}

TEST(FrameTest, RoundTripKeepsOrderAndBytesForInlineAndOwnedPayloads) {
  FrameBuilder b(kSeed);
  std::vector<Got> sent;
  for (size_t i = 0; i < 300; ++i) {
    size_t len = (i % 10 == 0) ? 5000 + i : i % 97;  // every tenth is sent by reference
    std::string p = payload_for(i, len);
    auto type = i % 3 == 0 ? MessageType::kGroupUrgent : MessageType::kGroup;
    sent.push_back({type, i % 7, p});
    if (len >= kInlinePayloadBytesMax) {
      b.add_owned(type, i % 7, std::move(p));
    } else {
      b.add(type, i % 7, p);
    }
  }
  b.seal();
  EXPECT_EQ(b.messages(), 300u);
  std::string wire = flatten(b);
  EXPECT_EQ(wire.size(), b.bytes());

  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kNeedMore);
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].type, sent[i].type) << i;
    EXPECT_EQ(got[i].group, sent[i].group) << i;
    EXPECT_EQ(got[i].payload, sent[i].payload) << i;
  }
}

TEST(FrameTest, BytesArrivingOneAtATimeAssembleTheSameFrames) {
  FrameBuilder b(kSeed);
  for (size_t i = 0; i < 50; ++i)
    b.add(MessageType::kGroup, i, payload_for(i, i * 3));
  b.seal();
  b.add_keepalive();
  for (size_t i = 0; i < 5; ++i)
    b.add_owned(MessageType::kGroupBulk, 9, payload_for(i, 3000));
  b.seal();
  EXPECT_EQ(b.frames(), 3u);
  std::string wire = flatten(b);
  FrameReader r(kSeed);
  std::vector<Got> got;
  size_t frames = 0;
  EXPECT_EQ(feed(r, wire, 1, got, &frames), FrameReader::kNeedMore);
  EXPECT_EQ(frames, 3u);
  ASSERT_EQ(got.size(), 55u);
  EXPECT_EQ(got[49].payload, payload_for(49, 49 * 3));
  EXPECT_EQ(got[54].payload, payload_for(4, 3000));
  EXPECT_EQ(r.buffered_bytes(), 0u);
}

TEST(FrameTest, LargeBatchIsCutIntoFramesWithinTheLimits) {
  FrameBuilder b(kSeed);
  const size_t n = kFrameMessagesMax + 10;
  for (size_t i = 0; i < n; ++i)
    b.add(MessageType::kGroup, 1, "");
  b.add(MessageType::kGroup, 2, std::string(kFrameBodyBytesTarget * 2, 'L'));  // own frame
  b.seal();
  std::string wire = flatten(b);
  // Walk the headers: every frame within the count and size bounds.
  size_t at = 0, frames = 0, messages = 0;
  while (at < wire.size()) {
    uint32_t body = base::load_u32(wire.data() + at + kFrameBodyLengthOffset);
    uint32_t count = base::load_u32(wire.data() + at + kFrameMessageCountOffset);
    EXPECT_LE(count, kFrameMessagesMax);
    EXPECT_LE(body, kFrameBodyBytesMax);
    if (count > 1) EXPECT_LE(body, kFrameBodyBytesTarget);
    messages += count;
    ++frames;
    at += kFrameHeaderBytes + body;
  }
  EXPECT_EQ(at, wire.size());
  EXPECT_EQ(messages, n + 1);
  EXPECT_EQ(frames, b.frames());
  EXPECT_GE(frames, 3u);
  FrameReader r(kSeed);
  std::vector<Got> got;
  feed(r, wire, 1 << 20, got);
  EXPECT_EQ(got.size(), n + 1);
  EXPECT_EQ(got.back().payload.size(), kFrameBodyBytesTarget * 2);
}

TEST(FrameTest, BatchQueuedBeforeAReconnectIsChecksummedWithTheNewSessionSeed) {
  FrameBuilder b(kSeed);
  // Enough to close several frames while the old seed was current.
  for (size_t i = 0; i < 3000; ++i)
    b.add(MessageType::kGroup, i, std::string(100, 'r'));
  b.set_seed(kSeed + 1);
  b.seal();
  std::string wire = flatten(b);
  FrameReader r(kSeed + 1);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kNeedMore);
  EXPECT_EQ(got.size(), 3000u);
}

TEST(FrameTest, LargeFrameGrowsTheBufferAndItShrinksBackWhenDrained) {
  FrameBuilder b(kSeed);
  b.add_owned(MessageType::kGroupBulk, 3, std::string(kMessageBytesMax, 'z'));
  b.seal();
  std::string wire = flatten(b);
  FrameReader r(kSeed, 64 * 1024);
  std::vector<Got> got;
  feed(r, wire, 100000, got);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload.size(), kMessageBytesMax);
  r.writable();
  EXPECT_EQ(r.capacity(), 64u * 1024);
}

TEST(FrameTest, OversizedBodyLengthIsRefusedBeforeTheBodyArrives) {
  std::string h(kFrameHeaderBytes, '\0');
  base::store_u32(h.data(), kFrameMagic);
  h[kFrameVersionOffset] = kFrameVersion;
  base::store_u32(h.data() + kFrameBodyLengthOffset, kFrameBodyBytesMax + 1);
  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, h, h.size(), got), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kOversized);
  EXPECT_LE(r.capacity(), 64u * 1024);  // nothing was allocated for the claimed body
}

TEST(FrameTest, MessageCountThatCannotFitTheBodyIsRefused) {
  std::string body = "abc";
  std::string wire = raw_frame(body, 2);  // two messages cannot fit in 3 bytes
  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kOversized);
}

TEST(FrameTest, CorruptedBodyByteFailsTheChecksum) {
  FrameBuilder b(kSeed);
  b.add(MessageType::kGroup, 1, "hello world");
  b.seal();
  std::string wire = flatten(b);
  wire[kFrameHeaderBytes + 5] ^= 0x01;
  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kBadChecksum);
  EXPECT_TRUE(got.empty());
}

TEST(FrameTest, FrameOfAnotherSessionFailsTheChecksum) {
  FrameBuilder b(kSeed);
  b.add(MessageType::kGroup, 1, "hello");
  b.seal();
  std::string wire = flatten(b);
  FrameReader r(kSeed + 1);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kBadChecksum);
}

TEST(FrameTest, BadMagicVersionOrFlagsAreRefused) {
  FrameBuilder b(kSeed);
  b.add(MessageType::kGroup, 1, "x");
  b.seal();
  const std::string good = flatten(b);
  struct Case {
    size_t offset;
    FrameError want;
  } cases[] = {{kFrameMagicOffset, FrameError::kBadMagic},
               {kFrameVersionOffset, FrameError::kBadVersion},
               {kFrameFlagsOffset, FrameError::kBadFlags},
               {kFrameReservedOffset + 1, FrameError::kBadFlags}};
  for (const Case& c : cases) {
    std::string wire = good;
    wire[c.offset] ^= 0x40;
    FrameReader r(kSeed);
    std::vector<Got> got;
    EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kError) << c.offset;
    EXPECT_EQ(r.error(), c.want) << c.offset;
  }
}

TEST(FrameTest, UnknownMessageTypeIsRefused) {
  std::string body;
  base::ByteWriter w(body);
  w.u8(kMessageTypeMax + 1);
  w.varint(1);
  w.varint(1);
  w.u8('x');
  std::string wire = raw_frame(body, 1);
  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kUnknownType);
}

TEST(FrameTest, PayloadLongerThanTheBodyIsRefused) {
  std::string body;
  base::ByteWriter w(body);
  w.u8(static_cast<uint8_t>(MessageType::kGroup));
  w.varint(1);
  w.varint(100);  // claims 100 bytes, has 3
  w.bytes("abc");
  std::string wire = raw_frame(body, 1);
  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kMalformedBody);
}

TEST(FrameTest, TrailingGarbageInTheBodyDeliversNothing) {
  std::string body;
  base::ByteWriter w(body);
  w.u8(static_cast<uint8_t>(MessageType::kGroup));
  w.varint(1);
  w.length_prefixed("abc");
  w.bytes("garbage");
  std::string wire = raw_frame(body, 1);
  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kMalformedBody);
  EXPECT_TRUE(got.empty());
}

TEST(FrameTest, MalformedHeartbeatBatchDeliversNothingOfItsFrame) {
  std::string body;
  base::ByteWriter w(body);
  w.u8(static_cast<uint8_t>(MessageType::kGroup));
  w.varint(1);
  w.length_prefixed("first");
  w.u8(static_cast<uint8_t>(MessageType::kHeartbeats));
  w.varint(0);
  w.length_prefixed(std::string("\x05\x01\x01", 3));  // claims 5 entries
  std::string wire = raw_frame(body, 2);
  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kMalformedBody);
  EXPECT_TRUE(got.empty());
}

TEST(FrameTest, TruncatedFrameWaitsAndDeliversNothing) {
  FrameBuilder b(kSeed);
  b.add(MessageType::kGroup, 1, "hello world");
  b.seal();
  std::string wire = flatten(b);
  wire.resize(wire.size() - 1);
  FrameReader r(kSeed);
  std::vector<Got> got;
  EXPECT_EQ(feed(r, wire, wire.size(), got), FrameReader::kNeedMore);
  EXPECT_TRUE(got.empty());
}

TEST(FrameTest, RandomGarbageNeverCrashesAndIsRefusedOrAwaited) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string wire(rng() % 200, '\0');
    for (char& c : wire)
      c = static_cast<char>(rng());
    if (i % 2 == 0 && wire.size() >= 8) base::store_u32(wire.data(), kFrameMagic);
    FrameReader r(kSeed);
    std::vector<Got> got;
    auto st = feed(r, wire, 1 + rng() % 64, got);
    EXPECT_NE(st, FrameReader::kFrame);
    EXPECT_TRUE(got.empty());
  }
}

}  // namespace
}  // namespace nori::net
