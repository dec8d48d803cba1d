// norikv's snapshot hooks (kv/snapshot.h): the captured view is point in
// time, streams through the node's sink, and restores through its source.
#include "kv/snapshot.h"

#include <gtest/gtest.h>

#include <cstring>

namespace nori::kv {
namespace {

class StringSink final : public raft::snapshot::SnapshotSink {
 public:
  base::Status write(std::string_view bytes) override {
    if (fail_after_ != 0 && out.size() + bytes.size() > fail_after_) {
      return base::Error(base::ErrorKind::kNoSpace, "disk full");
    }
    out.append(bytes);
    ++writes;
    return {};
  }
  std::string out;
  size_t writes = 0;
  size_t fail_after_ = 0;
};

class StringSource final : public raft::snapshot::SnapshotSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  base::Result<size_t> read(char* out, size_t n) override {
    const size_t k = std::min(n, data_.size() - pos_);
    std::memcpy(out, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

std::string set_entry(uint64_t client, uint64_t seq, std::string key, std::string value) {
  WriteHeader h{client, seq, seq, 1000, seq == 1};
  return encode_write(h, {"SET", std::move(key), std::move(value)});
}

TEST(KvSnapshot, CapturedViewIsPointInTimeWhileTheStoreGoesOn) {
  Store live;
  uint64_t index = 0;
  for (int i = 0; i < 2000; ++i)
    live.apply(++index, set_entry(1, i + 1, "k" + std::to_string(i), std::string(100, 'a')));
  auto view = capture_snapshot(live);
  // Writes after the capture must not show up in the snapshot.
  live.apply(++index, set_entry(1, 2001, "k0", "changed"));
  live.apply(++index, set_entry(1, 2002, "new", "x"));
  StringSink sink;
  ASSERT_TRUE(view->write(sink).ok());
  EXPECT_GT(sink.writes, 1u);  // streamed in buffers, not one blob

  Store restored;
  StringSource src(sink.out);
  ASSERT_TRUE(restore_snapshot(restored, src).ok());
  EXPECT_EQ(restored.applied_index(), 2000u);
  EXPECT_EQ(restored.size(), 2000u);
  EXPECT_EQ(restored.read({"GET", "k0"}, 1000), "$100\r\n" + std::string(100, 'a') + "\r\n");
  EXPECT_EQ(restored.read({"GET", "new"}, 1000), "$-1\r\n");
  // The session came along: a retry of an applied write returns its reply.
  EXPECT_EQ(restored.reply_for(1, 2000), std::optional<std::string>("+OK\r\n"));
  // And the restored store applies the next entries.
  EXPECT_EQ(restored.apply(2001, set_entry(1, 2001, "k0", "changed")), "+OK\r\n");
}

TEST(KvSnapshot, SinkErrorIsReturnedAsIs) {
  Store live;
  for (int i = 0; i < 2000; ++i)
    live.apply(i + 1, set_entry(1, i + 1, "k" + std::to_string(i), std::string(100, 'a')));
  StringSink sink;
  sink.fail_after_ = 100 * 1024;
  base::Status st = capture_snapshot(live)->write(sink);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kNoSpace);
}

TEST(KvSnapshot, TruncatedSnapshotLeavesTheStoreAsItWas) {
  Store live;
  for (int i = 0; i < 50; ++i)
    live.apply(i + 1, set_entry(1, i + 1, "k" + std::to_string(i), "v"));
  StringSink sink;
  ASSERT_TRUE(capture_snapshot(live)->write(sink).ok());
  Store other;
  other.apply(1, set_entry(2, 1, "mine", "kept"));
  StringSource src(sink.out.substr(0, sink.out.size() - 9));
  EXPECT_FALSE(restore_snapshot(other, src).ok());
  EXPECT_EQ(other.size(), 1u);
  EXPECT_EQ(other.applied_index(), 1u);
}

}  // namespace
}  // namespace nori::kv
