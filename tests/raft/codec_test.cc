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
  add(Heartbeat{.commit = 12, .round = 100, .quiesce = true});
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

TEST(RaftCodec, QuiesceFlagSurvivesAndPlainHeartbeatKeepsVersionOneBytes) {
  Message plain{7, 1, 2, 3, Heartbeat{.commit = 12, .round = 99}};
  Message quiet{7, 1, 2, 3, Heartbeat{.commit = 12, .round = 99, .quiesce = true}};
  std::string a, b;
  encode_message(plain, a);
  encode_message(quiet, b);
  // The flags byte is appended only when set: a plain heartbeat is what
  // codec version 1 always produced.
  ASSERT_EQ(b.size(), a.size() + 1);
  EXPECT_EQ(b.substr(0, a.size()), a);
  EXPECT_EQ(encoded_size(quiet), b.size());
  auto d = decode_message(b);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(std::get<Heartbeat>(d->body).quiesce);
  auto p = decode_message(a);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(std::get<Heartbeat>(p->body).quiesce);
}

TEST(RaftCodec, HeartbeatWithZeroOrUnknownFlagsIsRejected) {
  std::string a;
  encode_message(Message{7, 1, 2, 3, Heartbeat{.commit = 12, .round = 99}}, a);
  for (uint8_t flags : {uint8_t{0}, uint8_t{2}, uint8_t{0x81}}) {
    std::string bad = a;
    bad.push_back(static_cast<char>(flags));
    EXPECT_FALSE(decode_message(bad).ok()) << "flags " << int{flags};
  }
  std::string two = a;
  two.push_back(1);
  two.push_back(1);
  EXPECT_FALSE(decode_message(two).ok());  // trailing bytes after the flags
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
      const auto* hb = std::get_if<Heartbeat>(&m.body);
      if (hb != nullptr && hb->quiesce && n + 1 == buf.size()) {
        // The optional flags byte cut off leaves a plain heartbeat: the
        // follower then does not quiesce, the safe direction (and frames
        // are checksummed below the codec anyway).
        ASSERT_TRUE(d.ok());
        EXPECT_FALSE(std::get<Heartbeat>(d->body).quiesce);
        continue;
      }
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

// The header of a SnapshotChunk up to (not including) its membership.
std::string chunk_prefix(uint8_t flags, uint64_t offset, uint64_t total) {
  std::string buf;
  base::ByteWriter w(buf);
  w.u8(kCodecVersion);
  w.u8(static_cast<uint8_t>(MessageType::kSnapshotChunk));
  for (int i = 0; i < 4; ++i)
    w.varint(1);  // group, from, to, term
  w.u8(flags);
  w.varint(100);  // index
  w.varint(1);    // index term
  w.varint(offset);
  w.varint(total);
  w.u64(0);  // digest
  return buf;
}

TEST(SnapshotCodec, ChunkDataLengthBeyondTheBoundIsRejectedBeforeAllocating) {
  // A length prefix one past the bound with nothing behind it, then exactly
  // the bound with nothing behind it: both refused without reading further.
  for (uint64_t len : {kDecodeSnapshotChunkBytesMax + 1, kDecodeSnapshotChunkBytesMax}) {
    std::string buf = chunk_prefix(0, 0, UINT64_MAX);
    base::ByteWriter w(buf);
    w.varint(0);  // membership
    w.varint(len);
    auto d = decode_message(buf);
    ASSERT_FALSE(d.ok()) << len;
    EXPECT_EQ(d.error().kind(), base::ErrorKind::kCorruption);
  }
}

TEST(SnapshotCodec, MembershipBeyondTheBoundIsRejected) {
  std::string buf = chunk_prefix(0, 0, 10);
  base::ByteWriter w(buf);
  w.length_prefixed(std::string(kDecodeSnapshotMembershipBytesMax + 1, 'm'));
  w.length_prefixed("abc");
  EXPECT_FALSE(decode_message(buf).ok());
}

TEST(SnapshotCodec, ChunkOffsetOverflowIsRejected) {
  // offset + len(data) wraps around to below total_bytes.
  std::string buf = chunk_prefix(0, UINT64_MAX - 1, UINT64_MAX);
  base::ByteWriter w(buf);
  w.varint(0);
  w.length_prefixed("abc");
  EXPECT_FALSE(decode_message(buf).ok());
}

TEST(SnapshotCodec, UnknownChunkAndReplyFlagsAreRejected) {
  std::string buf = chunk_prefix(0x02, 0, 3);
  base::ByteWriter w(buf);
  w.varint(0);
  w.length_prefixed("abc");
  EXPECT_FALSE(decode_message(buf).ok());
  buf[6] = 0x01;  // "last": now valid (header: version, type, 4 one-byte varints)
  EXPECT_TRUE(decode_message(buf).ok());
  Message rep{1, 2, 3, 4, SnapshotReply{.index = 5, .index_term = 1, .done = true}};
  std::string r;
  encode_message(rep, r);
  r[6] = 0x03;
  EXPECT_FALSE(decode_message(r).ok());
}

TEST(SnapshotCodec, ChunkDataSurvivesEveryByteValue) {
  std::string data;
  for (int i = 0; i < 4096; ++i)
    data.push_back(static_cast<char>(i * 131 + 7));
  Message m{9, 1, 2, 3,
            SnapshotChunk{.index = 77,
                          .index_term = 3,
                          .offset = 4096,
                          .total_bytes = 3 * 4096,
                          .digest = 42,
                          .membership = std::string("\0\1\2", 3),
                          .data = data}};
  std::string buf;
  encode_message(m, buf);
  auto d = decode_message(buf);
  ASSERT_TRUE(d.ok());
  const SnapshotChunk& c = *std::get<SnapshotChunkMsg>(d->body);
  EXPECT_EQ(c.data, data);
  EXPECT_EQ(c.membership, std::string("\0\1\2", 3));
  EXPECT_EQ(c.offset, 4096u);
  EXPECT_FALSE(c.last);
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
