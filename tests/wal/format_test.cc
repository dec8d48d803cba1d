#include "wal/format.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nori::wal {
namespace {

TEST(WalFormatTest, SegmentHeaderRoundTrips) {
  SegmentHeader h;
  h.log_id = 0x1234;
  h.seq = 7;
  h.created_unix_ns = 99;
  h.tail_window_bytes = 4 << 20;
  h.segment_bytes = 64 << 20;
  std::string block(kSegmentHeaderBytes, 'x');
  encode_segment_header(h, block);
  auto d = decode_segment_header(block);
  ASSERT_TRUE(d.ok()) << d.error().to_string();
  EXPECT_EQ(d->log_id, h.log_id);
  EXPECT_EQ(d->seq, h.seq);
  EXPECT_EQ(d->tail_window_bytes, h.tail_window_bytes);
  EXPECT_EQ(d->segment_bytes, h.segment_bytes);
}

TEST(WalFormatTest, SegmentHeaderBitFlipIsCorruption) {
  SegmentHeader h;
  h.log_id = 1;
  h.seq = 1;
  std::string block(kSegmentHeaderBytes, '\0');
  encode_segment_header(h, block);
  for (size_t i = 0; i < kSegmentHeaderFixedBytes; ++i) {
    std::string b = block;
    b[i] ^= 0x10;
    EXPECT_FALSE(decode_segment_header(b).ok()) << "flip at byte " << i;
  }
  EXPECT_EQ(decode_segment_header(block.substr(0, 40)).error().kind(),
            base::ErrorKind::kCorruption);
}

TEST(WalFormatTest, NewerFormatVersionIsRefused) {
  SegmentHeader h;
  h.version = kFormatVersion + 1;
  std::string block(kSegmentHeaderBytes, '\0');
  encode_segment_header(h, block);
  auto d = decode_segment_header(block);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().kind(), base::ErrorKind::kInvalidArgument);
}

// Encodes one entries record at `offset` of a fake segment.
std::string entries_segment(uint64_t log_id, uint64_t seq, uint64_t offset) {
  std::vector<uint64_t> terms = {3, 3, 4};
  std::vector<std::string_view> payloads = {"a", "", "hello"};
  const size_t body = entries_body_bytes(terms, payloads);
  std::string seg(offset + record_span(body), '\0');
  uint32_t offs[3];
  encode_entries(std::span<char>(seg.data() + offset + kRecordHeaderBytes, body), 9, 10, terms,
                 payloads, offs);
  seal_record(std::span<char>(seg.data() + offset, record_span(body)), RecordKind::kEntries,
              static_cast<uint32_t>(body), RecordPlace{log_id, seq, offset});
  return seg;
}

TEST(WalFormatTest, EntriesRecordRoundTrips) {
  std::string seg = entries_segment(5, 2, 4096);
  RecordView rec;
  ASSERT_EQ(check_record(seg, 4096, 5, 2, &rec), RecordCheck::kValid);
  auto e = decode_entries(rec.body);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  EXPECT_EQ(e->group, 9u);
  EXPECT_EQ(e->first_index, 10u);
  ASSERT_EQ(e->runs.size(), 2u);
  EXPECT_EQ(e->runs[0].term, 3u);
  EXPECT_EQ(e->runs[0].count, 2u);
  EXPECT_EQ(e->runs[1].term, 4u);
  ASSERT_EQ(e->payloads.size(), 3u);
  EXPECT_EQ(e->payloads[0], "a");
  EXPECT_EQ(e->payloads[1], "");
  EXPECT_EQ(e->payloads[2], "hello");
}

TEST(WalFormatTest, ChecksumIsBoundToLogSegmentAndOffset) {
  std::string seg = entries_segment(5, 2, 4096);
  RecordView rec;
  EXPECT_EQ(check_record(seg, 4096, 6, 2, &rec), RecordCheck::kInvalid) << "other log";
  EXPECT_EQ(check_record(seg, 4096, 5, 3, &rec), RecordCheck::kInvalid) << "other segment";
  // The same bytes moved 16 bytes later (a misdirected write) do not validate.
  std::string moved = std::string(16, '\0') + seg;
  EXPECT_EQ(check_record(moved, 4096 + 16, 5, 2, &rec), RecordCheck::kInvalid);
}

TEST(WalFormatTest, EveryBitFlipInARecordIsDetected) {
  std::string seg = entries_segment(5, 2, 4096);
  RecordView rec;
  ASSERT_EQ(check_record(seg, 4096, 5, 2, &rec), RecordCheck::kValid);
  const size_t end = 4096 + kRecordHeaderBytes + rec.body.size();
  for (size_t i = 4096; i < end; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string s = seg;
      s[i] ^= static_cast<char>(1 << bit);
      EXPECT_EQ(check_record(s, 4096, 5, 2, &rec), RecordCheck::kInvalid) << i << ":" << bit;
    }
  }
}

TEST(WalFormatTest, ZerosAreNeverARecord) {
  std::string zeros(8192, '\0');
  RecordView rec;
  EXPECT_EQ(check_record(zeros, 4096, 0, 0, &rec), RecordCheck::kInvalid);
}

TEST(WalFormatTest, MalformedEntriesBodiesAreCorruption) {
  std::string body(kEntriesFixedBytes, '\0');
  EXPECT_FALSE(decode_entries(body).ok()) << "zero entries";
  EXPECT_FALSE(decode_entries("short").ok());
  // A run count that does not add up.
  std::vector<uint64_t> terms = {1, 1};
  std::vector<std::string_view> payloads = {"x", "y"};
  std::string b(entries_body_bytes(terms, payloads), '\0');
  uint32_t offs[2];
  encode_entries(b, 1, 1, terms, payloads, offs);
  ASSERT_TRUE(decode_entries(b).ok());
  std::string bad = b;
  bad[kEntriesFixedBytes + 8] = 5;  // run count 5 of 2 entries
  EXPECT_FALSE(decode_entries(bad).ok());
  bad = b;
  bad.push_back('z');  // payload lengths do not cover the body
  EXPECT_FALSE(decode_entries(bad).ok());
}

TEST(WalFormatTest, ResetRecordRoundTripsAndIsRequired) {
  char body[kResetBodyBytes];
  ASSERT_EQ(encode_reset(body, ResetBody{7, 1000, 5}), kResetBodyBytes);
  auto d = decode_reset(std::string_view(body, kResetBodyBytes));
  ASSERT_TRUE(d.ok()) << d.error().to_string();
  EXPECT_EQ(d->group, 7u);
  EXPECT_EQ(d->index, 1000u);
  EXPECT_EQ(d->term, 5u);
  EXPECT_EQ(kind_name(static_cast<uint8_t>(RecordKind::kReset)), "reset");
  // Required: a reader that did not know it must refuse the log, not skip it.
  EXPECT_LT(static_cast<uint8_t>(RecordKind::kReset), kFirstOptionalKind);
}

TEST(WalFormatTest, MalformedResetBodiesAreCorruption) {
  char body[kResetBodyBytes];
  for (auto [index, term] : {std::pair<uint64_t, uint64_t>{0, 1}, {1, 0}, {UINT64_MAX, 3}}) {
    encode_reset(body, ResetBody{1, index, term});
    auto d = decode_reset(std::string_view(body, kResetBodyBytes));
    ASSERT_FALSE(d.ok()) << index << "/" << term;
    EXPECT_EQ(d.error().kind(), base::ErrorKind::kCorruption);
  }
  encode_reset(body, ResetBody{1, 2, 3});
  EXPECT_FALSE(decode_reset(std::string_view(body, kResetBodyBytes - 8)).ok());
  EXPECT_FALSE(decode_reset(std::string(body, kResetBodyBytes) + "x").ok());
}

TEST(WalFormatTest, FileNamesParse) {
  uint64_t n = 0;
  EXPECT_TRUE(parse_segment_file_name(segment_file_name(42), &n));
  EXPECT_EQ(n, 42u);
  EXPECT_FALSE(parse_segment_file_name(temp_file_name(42), &n));
  EXPECT_TRUE(parse_prefixed_file_name(free_file_name(3), "free-", &n));
  EXPECT_EQ(n, 3u);
  EXPECT_FALSE(parse_segment_file_name("0042.wal", &n));
  EXPECT_FALSE(parse_segment_file_name("9999999999999999999a.wal", &n));
}

}  // namespace
}  // namespace nori::wal
