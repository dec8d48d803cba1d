// The snapshot file store on real files: atomic visibility, whole-file
// digest, chunked receive with identity checks, streaming reads, pins and
// recovery of temporary and superseded files.
#include "raft/snapshot/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace nori::raft::snapshot {
namespace {

namespace fs = std::filesystem;

class SnapshotStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("nori-snap-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    auto s = SnapshotStore::open(dir_.string());
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
  }
  void TearDown() override { fs::remove_all(dir_); }

  SnapshotMeta meta(Index i, Term t) {
    return SnapshotMeta{i, t, Membership{.voters = {1, 2, 3}, .learners = {4}}};
  }
  // A payload streamed in pieces, never held whole by the writer.
  SnapshotFile write(Index i, Term t, size_t pieces, char fill = 'a') {
    auto w = store_->begin(meta(i, t));
    EXPECT_TRUE(w.ok());
    for (size_t k = 0; k < pieces; ++k)
      EXPECT_TRUE((*w)->write(std::string(1000, static_cast<char>(fill + k % 3))).ok());
    auto f = (*w)->commit();
    EXPECT_TRUE(f.ok()) << f.error().to_string();
    return *f;
  }
  std::vector<std::string> files() {
    std::vector<std::string> out;
    for (auto& e : fs::directory_iterator(dir_))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
  std::unique_ptr<SnapshotStore> store_;
};

TEST_F(SnapshotStoreTest, UncommittedSnapshotIsNeverVisible) {
  {
    auto w = store_->begin(meta(10, 2));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write("partial").ok());
    auto r = store_->recover();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->meta.index, 0u) << "a snapshot still being written was recovered";
  }  // abandoned: the temporary file goes
  EXPECT_TRUE(files().empty());
}

TEST_F(SnapshotStoreTest, CommittedSnapshotRoundTripsThroughAStream) {
  SnapshotFile f = write(10, 2, 50);
  EXPECT_EQ(f.meta, meta(10, 2));
  auto v = verify_file(f.path);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->digest, f.digest);
  auto src = store_->open_payload(f);
  ASSERT_TRUE(src.ok());
  std::string got;
  char buf[333];
  for (;;) {
    auto n = (*src)->read(buf, sizeof buf);
    ASSERT_TRUE(n.ok());
    if (*n == 0) break;
    got.append(buf, *n);
  }
  ASSERT_EQ(got.size(), 50'000u);
  EXPECT_EQ(got[0], 'a');
  EXPECT_EQ(got[1000], 'b');
}

TEST_F(SnapshotStoreTest, FlippedBitFailsTheWholeFileDigest) {
  SnapshotFile f = write(10, 2, 5);
  {
    std::fstream io(f.path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(2500);
    io.put('Z');
  }
  auto v = verify_file(f.path);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().kind(), base::ErrorKind::kCorruption);
  EXPECT_FALSE(store_->open_payload(f).ok());
}

TEST_F(SnapshotStoreTest, RecoveryRemovesTemporaryAndSupersededButKeepsPinned) {
  SnapshotFile old1 = write(10, 2, 2);
  SnapshotFile old2 = write(20, 2, 2);
  SnapshotFile newest = write(30, 3, 2);
  { std::ofstream(dir_ / "snap-x.snap.tmp") << "crash mid-write"; }
  store_->pin(old2);  // being sent to a follower
  auto r = store_->recover();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->meta.index, 30u);
  EXPECT_FALSE(fs::exists(old1.path));
  EXPECT_TRUE(fs::exists(old2.path)) << "a pinned snapshot was removed";
  EXPECT_TRUE(fs::exists(newest.path));
  EXPECT_FALSE(fs::exists(dir_ / "snap-x.snap.tmp"));
  store_->unpin(old2);
  ASSERT_TRUE(store_->recover().ok());
  EXPECT_FALSE(fs::exists(old2.path));
}

TEST_F(SnapshotStoreTest, ChunkedReceiveInstallsOnlyTheAnnouncedFile) {
  SnapshotFile src = write(40, 5, 20);
  auto other = SnapshotStore::open((dir_ / "follower").string());
  ASSERT_TRUE(other.ok());
  auto recv = (*other)->begin_receive(src.meta);
  ASSERT_TRUE(recv.ok());
  for (uint64_t off = 0; off < src.size; off += 777) {
    auto chunk = store_->read_file_range(src, off, 777);
    ASSERT_TRUE(chunk.ok());
    ASSERT_TRUE((*recv)->write_chunk(off, *chunk).ok());
  }
  EXPECT_FALSE((*recv)->write_chunk(3, "x").ok()) << "out-of-order chunk accepted";
  auto f = (*recv)->finish(src.meta, src.digest);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->meta, src.meta);
  EXPECT_EQ(f->digest, src.digest);
  // The same bytes announced as another snapshot are refused.
  auto recv2 = (*other)->begin_receive(meta(41, 5));
  ASSERT_TRUE(recv2.ok());
  for (uint64_t off = 0; off < src.size; off += 4096)
    ASSERT_TRUE((*recv2)->write_chunk(off, *store_->read_file_range(src, off, 4096)).ok());
  auto bad = (*recv2)->finish(meta(41, 5), src.digest);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind(), base::ErrorKind::kCorruption);
}

}  // namespace
}  // namespace nori::raft::snapshot
