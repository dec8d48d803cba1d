// The linked write + fdatasync chain (wal/write_sync.h) on a one-core
// runtime: one completion per chain whatever happens, a short write breaks
// the link and the sync does not run, failures are reported by part; and the
// WAL's durable writes go through it (and through the two-operation fallback
// when it is off).
#include "wal/write_sync.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/runtime.h"
#include "wal/wal.h"

namespace nori::wal {
namespace {

using runtime::Task;
namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  std::string d = std::string(NORI_WAL_TEST_DIR) + "/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Runs a few more reactor rounds that sleep in the kernel: a stray second
// CQE for a finished chain would arrive here and touch a dead awaitable
// (ASan reports it; the op count assertion in finish() fires otherwise).
Task<void> settle() {
  for (int i = 0; i < 3; ++i)
    (void)co_await runtime::sleep_for(std::chrono::milliseconds(2));
}

class WriteSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!write_sync_supported()) GTEST_SKIP() << "kernel without IORING_FEAT_CQE_SKIP";
  }
};

void full_write_is_synced_and_reads_back(bool defer_taskrun) {
  const std::string path = fresh_dir("write_sync_full") + "/f";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  std::string data(8192, 'x');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>('a' + i % 26);
  runtime::Runtime rt({.cores = 1, .ring_defer_taskrun = defer_taskrun});
  WriteSyncResult r;
  rt.block_on(0, [&]() -> Task<void> {
    r = co_await WriteSync(fd, data.data(), static_cast<uint32_t>(data.size()), 4096);
    co_await settle();
  });
  EXPECT_EQ(r.written, 8192);
  EXPECT_EQ(r.sync_res, 0);
  EXPECT_TRUE(r.durable(8192));
  std::string back(8192, '\0');
  ASSERT_EQ(::pread(fd, back.data(), back.size(), 4096), 8192);
  EXPECT_EQ(back, data);
  ::close(fd);
}

TEST_F(WriteSyncTest, FullWriteIsSyncedAndReadsBack) {
  full_write_is_synced_and_reads_back(true);
}

// The ring set-up older kernels get (COOP_TASKRUN instead of DEFER_TASKRUN):
// the write's completion runs as task work by another route; one CQE still.
TEST_F(WriteSyncTest, FullWriteIsSyncedWithoutDeferTaskrun) {
  full_write_is_synced_and_reads_back(false);
}

// A chain must reach the kernel in one submission, so WriteSync first makes
// room (Reactor::reserve_sqes submits what is queued). With 0..ring_entries
// no-ops queued before the chain, one round leaves a single free slot and
// takes that path; every chain must still complete once, in full and synced.
// (Whether the kernel saw the two halves in one submission cannot be observed
// from here: an unlinked sync would usually succeed too.)
TEST_F(WriteSyncTest, ChainCompletesWhenTheSubmissionQueueIsNearlyFull) {
  const std::string path = fresh_dir("write_sync_sq_full") + "/f";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  constexpr uint32_t kRingEntries = 8;
  const std::string data(4096, 'q');
  runtime::Runtime rt({.cores = 1, .ring_entries = kRingEntries});
  std::vector<WriteSyncResult> results;
  rt.block_on(0, [&]() -> Task<void> {
    for (uint32_t queued = 0; queued <= kRingEntries; ++queued) {
      for (uint32_t k = 0; k < queued; ++k) {
        io_uring_sqe* sqe = runtime::Reactor::here().get_sqe();
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, runtime::kIgnoreUserData);
      }
      results.push_back(co_await WriteSync(fd, data.data(), 4096, uint64_t{queued} * 4096));
    }
    co_await settle();
  });
  ASSERT_EQ(results.size(), kRingEntries + 1);
  for (const WriteSyncResult& r : results)
    EXPECT_TRUE(r.durable(4096)) << r.written << " " << r.sync_res;
  ::close(fd);
}

// A pipe holds one page: an 8 KiB write is cut to 4 KiB. A short write fails
// the link, so the sync must not have run (sync_res -ECANCELED, from the
// write's own CQE) and exactly one completion arrives.
TEST_F(WriteSyncTest, ShortWriteBreaksTheLinkAndTheSyncDoesNotRun) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_GE(::fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
  const long cap = ::fcntl(p[1], F_GETPIPE_SZ);
  std::vector<char> data(static_cast<size_t>(cap) * 2, 'y');
  runtime::Runtime rt({.cores = 1});
  WriteSyncResult r;
  rt.block_on(0, [&]() -> Task<void> {
    r = co_await WriteSync(p[1], data.data(), static_cast<uint32_t>(data.size()), 0);
    co_await settle();
  });
  EXPECT_GT(r.written, 0);
  EXPECT_LT(r.written, static_cast<int32_t>(data.size()));
  EXPECT_EQ(r.sync_res, -ECANCELED);
  EXPECT_FALSE(r.durable(static_cast<uint32_t>(data.size())));
  ::close(p[0]);
  ::close(p[1]);
}

// The write succeeds in full, the sync cannot (fsync of a pipe): the sync's
// error is what comes back, with the write counted as complete.
TEST_F(WriteSyncTest, FailedSyncIsReportedAfterAFullWrite) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const char data[16] = "0123456789abcde";
  runtime::Runtime rt({.cores = 1});
  WriteSyncResult r;
  rt.block_on(0, [&]() -> Task<void> {
    r = co_await WriteSync(p[1], data, sizeof data, 0);
    co_await settle();
  });
  EXPECT_EQ(r.written, static_cast<int32_t>(sizeof data));
  EXPECT_EQ(r.sync_res, -EINVAL);
  EXPECT_FALSE(r.durable(sizeof data));
  ::close(p[0]);
  ::close(p[1]);
}

TEST_F(WriteSyncTest, FailedWriteSkipsTheSync) {
  const std::string path = fresh_dir("write_sync_ro") + "/f";
  int wfd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(wfd, 0);
  ::close(wfd);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const char data[16] = "0123456789abcde";
  runtime::Runtime rt({.cores = 1});
  WriteSyncResult r;
  rt.block_on(0, [&]() -> Task<void> {
    r = co_await WriteSync(fd, data, sizeof data, 0);
    co_await settle();
  });
  EXPECT_EQ(r.written, -EBADF);
  EXPECT_EQ(r.sync_res, -ECANCELED);
  ::close(fd);
}

// Appends on the real WAL with the linked chain and with the two-operation
// fallback: every acknowledged entry reads back after reopening, and the
// linked mode really was used (or really was not).
void durable_appends_survive_reopen(bool linked) {
  const std::string dir = fresh_dir(linked ? "wal_linked" : "wal_unlinked");
  WalOptions o;
  o.segment_bytes = 1 << 20;
  o.write_bytes_max = 64 << 10;
  o.cache_bytes_max = 128 << 10;
  o.linked_sync = linked;
  constexpr int kEntries = 300;  // crosses segments: rotation under both modes
  runtime::Runtime rt({.cores = 1});
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, o);
    EXPECT_TRUE(w.ok()) << w.error().to_string();
    if (!w) co_return;
    for (uint64_t i = 1; i <= kEntries; ++i) {
      std::string p(3000, static_cast<char>('a' + i % 26));
      std::string_view v = p;
      uint64_t t = 1;
      auto pos = (*w)->append_entries(7, i, std::span<const uint64_t>(&t, 1),
                                      std::span<const std::string_view>(&v, 1));
      while (!pos && pos.error().kind() == base::ErrorKind::kBusy) {
        EXPECT_TRUE((co_await (*w)->wait_writable()).ok());
        pos = (*w)->append_entries(7, i, std::span<const uint64_t>(&t, 1),
                                   std::span<const std::string_view>(&v, 1));
      }
      EXPECT_TRUE(pos.ok());
      if (!pos) co_return;
      EXPECT_TRUE((co_await (*w)->wait_durable(*pos)).ok());
    }
    const WalStats st = (*w)->stats();
    EXPECT_GE(st.durable_writes, uint64_t{kEntries});
    if (linked && write_sync_supported()) {
      EXPECT_EQ(st.linked_writes, st.durable_writes);
    } else {
      EXPECT_EQ(st.linked_writes, 0u);
    }
    co_await (*w)->close();
  });
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, o);
    EXPECT_TRUE(w.ok()) << w.error().to_string();
    if (!w) co_return;
    const GroupLog* g = (*w)->group(7);
    EXPECT_NE(g, nullptr);
    if (g != nullptr) EXPECT_EQ(g->last_index(), uint64_t{kEntries});
    auto e = co_await (*w)->read_entries(7, 1, kEntries + 1, UINT64_MAX);
    EXPECT_TRUE(e.ok());
    if (e) {
      EXPECT_EQ(e->size(), size_t{kEntries});
      for (const Entry& x : *e)
        EXPECT_EQ(x.payload, std::string(3000, static_cast<char>('a' + x.index % 26)));
    }
    co_await (*w)->close();
  });
}

TEST(WalWriteSyncTest, LinkedDurableWritesSurviveReopen) {
  durable_appends_survive_reopen(true);
}

TEST(WalWriteSyncTest, UnlinkedFallbackDurableWritesSurviveReopen) {
  durable_appends_survive_reopen(false);
}

}  // namespace
}  // namespace nori::wal
