#include "net/heartbeat.h"

#include <gtest/gtest.h>

#include "runtime/base/bytes.h"

namespace nori::net {
namespace {

TEST(HeartbeatTest, BatchRoundTripsWithDeltaEncodedGroups) {
  std::vector<HeartbeatEntry> in;
  for (uint64_t g = 1; g < 5000; g += 3)
    in.push_back({g, 7 + g, g * 100, g % 11});
  in.push_back({UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX});
  std::string wire;
  encode_heartbeats(in, wire);
  EXPECT_LE(wire.size(), heartbeats_bytes_max(in.size()));
  std::vector<HeartbeatEntry> out;
  ASSERT_TRUE(decode_heartbeats(wire, out));
  EXPECT_EQ(out, in);
  EXPECT_TRUE(validate_heartbeats(wire));
}

TEST(HeartbeatTest, RepliesRoundTrip) {
  std::vector<HeartbeatReply> in = {
      {3, 1, 9, 0}, {4, 2, 10, kHeartbeatReplyNeedsAppend}, {1000000, 3, 11, UINT32_MAX}};
  std::string wire;
  encode_heartbeat_replies(in, wire);
  std::vector<HeartbeatReply> out;
  ASSERT_TRUE(decode_heartbeat_replies(wire, out));
  EXPECT_EQ(out, in);
}

TEST(HeartbeatTest, DuplicateGroupIsRejected) {
  std::string wire;
  base::ByteWriter w(wire);
  w.varint(2);
  for (int i = 0; i < 2; ++i) {
    w.varint(i == 0 ? 5 : 0);  // second delta 0: the same group again
    w.varint(1);
    w.varint(1);
    w.varint(1);
  }
  std::vector<HeartbeatEntry> out;
  EXPECT_FALSE(decode_heartbeats(wire, out));
  EXPECT_FALSE(validate_heartbeats(wire));
}

TEST(HeartbeatTest, CountLargerThanThePayloadIsRejectedBeforeDecoding) {
  std::string wire;
  base::ByteWriter w(wire);
  w.varint(kHeartbeatEntriesMax);  // within the global bound, far beyond the bytes present
  w.varint(1);
  std::vector<HeartbeatEntry> out;
  EXPECT_FALSE(decode_heartbeats(wire, out));
  EXPECT_TRUE(out.empty());
  std::string huge;
  base::ByteWriter h(huge);
  h.varint(kHeartbeatEntriesMax + 1);
  EXPECT_FALSE(validate_heartbeats(huge));
}

TEST(HeartbeatTest, TrailingBytesAreRejected) {
  std::vector<HeartbeatEntry> in = {{1, 1, 1, 1}};
  std::string wire;
  encode_heartbeats(in, wire);
  wire.push_back('\0');
  std::vector<HeartbeatEntry> out;
  EXPECT_FALSE(decode_heartbeats(wire, out));
}

TEST(HeartbeatTest, GroupIdOverflowIsRejected) {
  std::string wire;
  base::ByteWriter w(wire);
  w.varint(2);
  w.varint(UINT64_MAX);
  w.varint(1);
  w.varint(1);
  w.varint(1);
  w.varint(1);  // UINT64_MAX + 1 wraps
  w.varint(1);
  w.varint(1);
  w.varint(1);
  EXPECT_FALSE(validate_heartbeats(wire));
}

TEST(HeartbeatTest, ReplyFlagsBeyond32BitsAreRejected) {
  std::string wire;
  base::ByteWriter w(wire);
  w.varint(1);
  w.varint(1);
  w.varint(1);
  w.varint(1);
  w.varint(uint64_t{1} << 32);
  std::vector<HeartbeatReply> out;
  EXPECT_FALSE(decode_heartbeat_replies(wire, out));
  EXPECT_FALSE(validate_heartbeat_replies(wire));
}

TEST(HeartbeatTest, SortDedupeKeepsTheRoundStagedLast) {
  std::vector<HeartbeatEntry> v = {{5, 1, 1, 1}, {2, 1, 1, 1}, {5, 1, 2, 2}, {2, 1, 1, 3}};
  sort_dedupe_latest(v);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0], (HeartbeatEntry{2, 1, 1, 3}));
  EXPECT_EQ(v[1], (HeartbeatEntry{5, 1, 2, 2}));
}

}  // namespace
}  // namespace nori::net
