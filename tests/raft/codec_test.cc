#include "raft/codec.h"

#include <gtest/gtest.h>

#include "runtime/base/bytes.h"

namespace nori::raft {
namespace {

bool same(const Message& a, const Message& b) {
  std::string x, y;
  encode_message(a, x);
  encode_message(b, y);
  return x == y && a.group == b.group && a.from == b.from && a.to == b.to && a.term == b.term &&
         a.body.index() == b.body.index();
}

std::vector<Message> samples() {
  std::vector<Message> out;
  auto add = [&](MessageBody body) {
    out.push_back(Message{0xfeedfacecafe, 3, UINT64_MAX, 1ull << 40, std::move(body)});
  };
  add(VoteRequest{.pre_vote = true, .last_index = 9, .last_term = 2});
  add(VoteRequest{
      .last_index = 1ull << 50, .last_term = 7, .transfer_leader = 2, .transfer_term = 6});
  add(VoteReply{.pre_vote = false, .granted = true, .promise_remaining_ns = 2'104'000'000});
  add(VoteReply{.pre_vote = true, .granted = false});
  add(Append{
      .prev_index = 41,
      .prev_term = 3,
      .commit = 40,
      .entries = {Entry{3, 42, EntryType::kNoop, ""}, Entry{4, 43, EntryType::kNormal, "hello"},
                  Entry{4, 44, EntryType::kNormal, std::string(300, '\0')}}});
  add(Append{.prev_index = 0, .prev_term = 0, .commit = 0, .entries = {}});
  add(AppendReply{.success = true, .match_index = 44});
  add(AppendReply{.success = false,
                  .conflict_index = 10,
                  .conflict_term = 2,
                  .last_index = 20,
                  .rejected_index = 30});
  add(Heartbeat{.commit = 12, .round = 99});
  add(HeartbeatReply{.round = 99});
  add(TimeoutNow{.leader_wait_remaining_ns = 5});
  add(SnapshotChunk{.index = 1000,
                    .index_term = 7,
                    .offset = 1 << 20,
                    .total_bytes = (1 << 20) + 5,
                    .digest = 0x0123456789abcdefull,
                    .last = true,
                    .membership = "m",
                    .data = "tail!"});
  add(SnapshotReply{.index = 1000, .index_term = 7, .next_offset = 1 << 20});
  add(SnapshotReply{.index = 1000, .index_term = 7, .done = true, .match_index = 1000});
  return out;
}

TEST(RaftCodec, EveryMessageTypeRoundTrips) {
  for (const Message& m : samples()) {
    std::string buf;
    encode_message(m, buf);
    EXPECT_EQ(buf.size(), encoded_size(m));
    auto d = decode_message(buf);
    ASSERT_TRUE(d.ok()) << to_string(m.type()) << ": " << d.error().to_string();
    EXPECT_TRUE(same(m, *d)) << to_string(m.type());
    if (auto* a = std::get_if<Append>(&m.body)) {
      EXPECT_EQ(a->entries, std::get<Append>(d->body).entries);
    }
  }
}

TEST(RaftCodec, EveryTruncationIsRejected) {
  for (const Message& m : samples()) {
    std::string buf;
    encode_message(m, buf);
    for (size_t n = 0; n < buf.size(); ++n) {
      auto d = decode_message(std::string_view(buf.data(), n));
      ASSERT_FALSE(d.ok()) << to_string(m.type()) << " truncated to " << n;
      EXPECT_EQ(d.error().kind(), base::ErrorKind::kCorruption);
    }
  }
}

TEST(RaftCodec, TrailingBytesAreRejected) {
  std::string buf;
  encode_message(samples()[0], buf);
  buf.push_back('\0');
  EXPECT_FALSE(decode_message(buf).ok());
}

TEST(RaftCodec, HugeEntryCountIsRejectedBeforeAllocating) {
  std::string buf;
  base::ByteWriter w(buf);
  w.u8(kCodecVersion);
  w.u8(static_cast<uint8_t>(MessageType::kAppend));
  for (int i = 0; i < 4; ++i)
    w.varint(1);                // group, from, to, term
  w.varint(5);                  // prev index
  w.varint(1);                  // prev term
  w.varint(1);                  // commit
  w.varint(kDecodeEntriesMax);  // count, with no entries behind it
  EXPECT_FALSE(decode_message(buf).ok());
  buf.resize(buf.size() - base::varint_size(kDecodeEntriesMax));
  w.varint(kDecodeEntriesMax + 1);
  EXPECT_FALSE(decode_message(buf).ok());
}

TEST(SnapshotCodec, ChunkClaimingBytesBeyondTheFileIsRejected) {
  Message m{1, 2, 3, 4, SnapshotChunk{.offset = 10, .total_bytes = 12, .data = "abc"}};
  std::string buf;
  encode_message(m, buf);
  EXPECT_FALSE(decode_message(buf).ok());
  std::get<SnapshotChunkMsg>(m.body)->total_bytes = 14;
  std::get<SnapshotChunkMsg>(m.body)->last = true;  // "last" but 1 byte short of the end
  buf.clear();
  encode_message(m, buf);
  EXPECT_FALSE(decode_message(buf).ok());
  std::get<SnapshotChunkMsg>(m.body)->total_bytes = 13;
  buf.clear();
  encode_message(m, buf);
  EXPECT_TRUE(decode_message(buf).ok());
}

TEST(RaftCodec, UnknownTypeFlagsAndReservedTypesAreRejected) {
  std::string buf;
  encode_message(samples()[0], buf);
  std::string bad = buf;
  bad[1] = static_cast<char>(kMessageTypeMax + 1);
  EXPECT_FALSE(decode_message(bad).ok());
  bad[1] = 0;
  EXPECT_FALSE(decode_message(bad).ok());
  bad = buf;
  bad[0] = 2;  // version
  EXPECT_FALSE(decode_message(bad).ok());
  Message m{1, 2, 3, 4, VoteRequest{}};
  std::string v;
  encode_message(m, v);
  v[6] = 0x04;  // unknown flag bit (header: version, type, 4 one-byte varints)
  EXPECT_FALSE(decode_message(v).ok());
}

TEST(RaftCodec, NegativeDurationsAreEncodedAsZero) {
  Message m{1, 2, 3, 4, VoteReply{.granted = true, .promise_remaining_ns = -5}};
  std::string buf;
  encode_message(m, buf);
  auto d = decode_message(buf);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(std::get<VoteReply>(d->body).promise_remaining_ns, 0);
}

}  // namespace
}  // namespace nori::raft
