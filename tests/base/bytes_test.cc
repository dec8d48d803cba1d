#include "runtime/base/bytes.h"

#include <gtest/gtest.h>

#include <limits>

namespace nori::base {
namespace {

TEST(BytesTest, VarintsRoundTripAtEveryWidth) {
  std::string buf;
  ByteWriter w(buf);
  std::vector<uint64_t> values;
  for (unsigned shift = 0; shift < 64; ++shift) {
    values.push_back((uint64_t{1} << shift) - 1);
    values.push_back(uint64_t{1} << shift);
  }
  values.push_back(std::numeric_limits<uint64_t>::max());
  for (uint64_t v : values)
    w.varint(v);
  ByteReader r(buf);
  for (uint64_t v : values) {
    uint64_t got;
    ASSERT_TRUE(r.varint(got));
    EXPECT_EQ(got, v);
  }
  EXPECT_TRUE(r.empty());
}

TEST(BytesTest, TruncatedVarintIsRejectedWithoutConsuming) {
  std::string buf = "\x80\x80";
  ByteReader r(buf);
  uint64_t v;
  EXPECT_FALSE(r.varint(v));
  EXPECT_EQ(r.remaining(), 2u);
}

TEST(BytesTest, OverlongVarintIsRejected) {
  std::string eleven(10, '\xff');
  eleven.push_back('\x01');
  ByteReader r(eleven);
  uint64_t v;
  EXPECT_FALSE(r.varint(v));
  std::string overflow(9, '\xff');
  overflow.push_back('\x02');  // bit 64 set
  ByteReader r2(overflow);
  EXPECT_FALSE(r2.varint(v));
}

TEST(BytesTest, LengthBeyondInputIsRejected) {
  std::string buf;
  ByteWriter w(buf);
  w.varint(1000);
  w.bytes("short");
  ByteReader r(buf);
  std::string_view out;
  EXPECT_FALSE(r.length_prefixed(out, 1 << 20));
  EXPECT_EQ(r.remaining(), buf.size());
}

TEST(BytesTest, LengthAboveBoundIsRejected) {
  std::string buf;
  ByteWriter w(buf);
  w.length_prefixed("hello");
  ByteReader r(buf);
  std::string_view out;
  EXPECT_FALSE(r.length_prefixed(out, 4));
  EXPECT_TRUE(r.length_prefixed(out, 5));
  EXPECT_EQ(out, "hello");
}

TEST(BytesTest, FixedWidthIntegersAreLittleEndian) {
  std::string buf;
  ByteWriter w(buf);
  w.u32(0x04030201);
  EXPECT_EQ(buf, std::string("\x01\x02\x03\x04", 4));
  ByteReader r(buf);
  uint64_t v64;
  EXPECT_FALSE(r.u64(v64));
  uint32_t v32;
  EXPECT_TRUE(r.u32(v32));
  EXPECT_EQ(v32, 0x04030201u);
}

TEST(BytesTest, ChecksumDependsOnSeed) {
  EXPECT_NE(xxh3_64("abc", 1), xxh3_64("abc", 2));
  EXPECT_EQ(xxh3_64("abc", 7), xxh3_64("abc", 7));
}

}  // namespace
}  // namespace nori::base
