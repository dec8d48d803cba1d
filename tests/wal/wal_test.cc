// The io_uring driver on real O_DIRECT files (under the build directory: not
// tmpfs), on a one-core runtime.
#include "wal/wal.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "runtime/runtime.h"
#include "wal/posix_dir.h"

namespace nori::wal {
namespace {

using runtime::Task;
namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  std::string d = std::string(NORI_WAL_TEST_DIR) + "/" + name;
  fs::remove_all(d);
  fs::create_directories(NORI_WAL_TEST_DIR);
  return d;
}

WalOptions test_options() {
  WalOptions o;
  o.segment_bytes = 1 << 20;
  o.write_bytes_max = 64 << 10;
  o.writes_in_flight_max = 4;
  o.cache_bytes_max = 128 << 10;
  return o;
}

std::string payload_for(uint64_t g, uint64_t i, size_t len) {
  std::string p = fmt::format("g{}i{}|", g, i);
  while (p.size() < len)
    p.push_back(static_cast<char>('a' + (g * 7 + i + p.size()) % 26));
  p.resize(std::max(len, p.size()));
  return p;
}

// Appends n entries of len bytes to group g (one append per entry).
Task<base::Status> append_n(Wal& w, uint64_t g, int n, size_t len) {
  for (int k = 0; k < n; ++k) {
    const uint64_t i = (w.group(g) ? w.group(g)->last_index() : 0) + 1;
    std::string p = payload_for(g, i, len);
    std::string_view v = p;
    uint64_t t = 1;
    auto pos = w.append_entries(g, i, std::span<const uint64_t>(&t, 1),
                                std::span<const std::string_view>(&v, 1));
    while (!pos && pos.error().kind() == base::ErrorKind::kBusy) {
      NORI_CO_TRY(co_await w.wait_writable());
      pos = w.append_entries(g, i, std::span<const uint64_t>(&t, 1),
                             std::span<const std::string_view>(&v, 1));
    }
    if (!pos) co_return pos.error();
    NORI_CO_TRY(co_await w.wait_durable(*pos));
  }
  co_return base::Status{};
}

TEST(WalTest, AppendsSurviveCloseAndReopenAndReadBackFromDisk) {
  runtime::Runtime rt({.cores = 1});
  const std::string dir = fresh_dir("reopen");
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, test_options());
    EXPECT_TRUE(w.ok()) << w.error().to_string();
    if (!w) co_return;
    for (uint64_t g = 1; g <= 4; ++g)
      EXPECT_TRUE((co_await append_n(**w, g, 50, 300)).ok());
    auto hs = (*w)->persist_hard_state(2, HardState{7, 3, 40});
    EXPECT_TRUE(hs.ok());
    EXPECT_TRUE((co_await (*w)->wait_durable(*hs)).ok());
    co_await (*w)->close();
  });
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, test_options());
    EXPECT_TRUE(w.ok()) << w.error().to_string();
    if (!w) co_return;
    for (uint64_t g = 1; g <= 4; ++g) {
      const GroupLog* gl = (*w)->group(g);
      EXPECT_NE(gl, nullptr);
      if (!gl) continue;
      EXPECT_EQ(gl->last_index(), 50u);
      auto entries = co_await (*w)->read_entries(g, 1, 51, UINT64_MAX);
      EXPECT_TRUE(entries.ok());
      if (!entries) continue;
      EXPECT_EQ(entries->size(), 50u);
      for (const auto& e : *entries)
        EXPECT_EQ(e.payload, payload_for(g, e.index, 300));
    }
    EXPECT_EQ((*w)->group(2)->hard_state(), (HardState{7, 3, 40}));
    EXPECT_GT((*w)->stats().disk_reads, 0u) << "recovered entries are read from disk";
    std::vector<Entry> cached;
    auto st = (*w)->read_cached(1, 1, 51, UINT64_MAX, cached);
    EXPECT_EQ(st.ok() ? base::ErrorKind::kIo : st.error().kind(), base::ErrorKind::kUnavailable)
        << "after a restart nothing is cached";
    EXPECT_TRUE(cached.empty());
    // A new append is served from memory.
    EXPECT_TRUE((co_await append_n(**w, 1, 1, 300)).ok());
    st = (*w)->read_cached(1, 51, 52, UINT64_MAX, cached);
    EXPECT_TRUE(st.ok());
    EXPECT_EQ(cached.size(), 1u);
    if (!cached.empty()) EXPECT_EQ(cached[0].payload, payload_for(1, 51, 300));
    co_await (*w)->close();
  });
}

TEST(WalTest, OneReactorRoundOfAppendsIsOneDurableWrite) {
  runtime::Runtime rt({.cores = 1});
  const std::string dir = fresh_dir("group_commit");
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, test_options());
    EXPECT_TRUE(w.ok());
    if (!w) co_return;
    Wal& wal = **w;
    const uint64_t writes_before = wal.stats().durable_writes;
    // 64 groups append in the same round, then all wait.
    std::vector<Position> pos;
    for (uint64_t g = 1; g <= 64; ++g) {
      std::string p = payload_for(g, 1, 100);
      std::string_view v = p;
      uint64_t t = 1;
      auto r = wal.append_entries(g, 1, std::span<const uint64_t>(&t, 1),
                                  std::span<const std::string_view>(&v, 1));
      EXPECT_TRUE(r.ok());
      pos.push_back(*r);
    }
    for (Position p : pos)
      EXPECT_TRUE((co_await wal.wait_durable(p)).ok());
    EXPECT_EQ(wal.stats().durable_writes - writes_before, 1u)
        << "every append of the round must share one durable write";
    co_await wal.close();
  });
}

TEST(WalTest, WaitersOnOlderPositionsRegisteredLaterAreWoken) {
  runtime::Runtime rt({.cores = 1});
  const std::string dir = fresh_dir("waiters");
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, test_options());
    EXPECT_TRUE(w.ok());
    if (!w) co_return;
    Wal& wal = **w;
    std::vector<Position> pos;
    for (uint64_t g = 1; g <= 3; ++g) {
      auto p = wal.persist_hard_state(g, HardState{g, g, 0});
      EXPECT_TRUE(p.ok());
      pos.push_back(*p);
    }
    int woken = 0;
    // Newest first: the list must stay sorted so each wakes at its position.
    for (int k = 2; k >= 0; --k) {
      runtime::spawn([](Wal& wal, Position p, int& woken) -> Task<void> {
        EXPECT_TRUE((co_await wal.wait_durable(p)).ok());
        EXPECT_GE(wal.durable_position(), p);
        ++woken;
      }(wal, pos[static_cast<size_t>(k)], woken));
    }
    while (woken < 3)
      (void)co_await runtime::sleep_for(std::chrono::milliseconds(1));
    co_await wal.close();
  });
}

// A batch delay longer than this test's timeout: the hard state must not wait
// for it (a vote reply waits for the hard state), so the test fails by
// timing out if it does.
TEST(WalTest, HardStateIsNotHeldByTheBatchDelay) {
  runtime::Runtime rt({.cores = 1});
  const std::string dir = fresh_dir("batch_delay");
  WalOptions o = test_options();
  o.batch_delay_us = 600'000'000;
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, o);
    EXPECT_TRUE(w.ok());
    if (!w) co_return;
    auto p = (*w)->persist_hard_state(5, HardState{3, 1, 0});
    EXPECT_TRUE(p.ok());
    EXPECT_TRUE((co_await (*w)->wait_durable(*p)).ok());
    EXPECT_EQ((*w)->durable_position(), (*w)->append_position());
    co_await (*w)->close();
  });
}

TEST(WalTest, ConcurrentWritersAllBecomeDurable) {
  runtime::Runtime rt({.cores = 1});
  const std::string dir = fresh_dir("concurrent");
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, test_options());
    EXPECT_TRUE(w.ok());
    if (!w) co_return;
    Wal& wal = **w;
    int done = 0;
    std::vector<Task<void>> tasks;
    for (uint64_t g = 1; g <= 16; ++g) {
      runtime::spawn([](Wal& wal, uint64_t g, int& done) -> Task<void> {
        auto st = co_await append_n(wal, g, 40, 3000);
        EXPECT_TRUE(st.ok()) << st.error().to_string();
        ++done;
      }(wal, g, done));
    }
    while (done < 16)
      (void)co_await runtime::sleep_for(std::chrono::milliseconds(1));
    EXPECT_LT(wal.stats().durable_writes, 16u * 40u) << "writes must be shared";
    EXPECT_GT(wal.stats().engine.rotations, 0u);
    co_await wal.close();
  });
  PosixSegmentSource src(dir);
  auto rec = recover(src);
  ASSERT_TRUE(rec.ok()) << rec.error().to_string();
  for (uint64_t g = 1; g <= 16; ++g)
    EXPECT_EQ(rec->groups.at(g).last_index(), 40u);
}

TEST(WalTest, CompactedSegmentsAreReclaimedAndPinningGroupsReported) {
  runtime::Runtime rt({.cores = 1});
  const std::string dir = fresh_dir("reclaim");
  WalOptions o = test_options();
  o.log_bytes_max = 3 * o.segment_bytes;
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, o);
    EXPECT_TRUE(w.ok());
    if (!w) co_return;
    Wal& wal = **w;
    std::vector<uint64_t> pinned;
    wal.set_pinned_callback([&](const std::vector<uint64_t>& g) { pinned = g; });
    EXPECT_TRUE((co_await append_n(wal, 9, 1, 100)).ok());  // group 9 pins segment 1
    EXPECT_TRUE((co_await append_n(wal, 1, 400, 20000)).ok());
    EXPECT_TRUE(wal.mark_compacted(1, 300, 1).ok());  // group 1 no longer pins segment 1
    EXPECT_TRUE((co_await wal.reclaim()).ok());
    EXPECT_GT(wal.engine().live_segments().size(), 3u);
    EXPECT_EQ(pinned, std::vector<uint64_t>{9});
    // Both snapshot: everything but the active segment can go.
    EXPECT_TRUE(wal.mark_compacted(1, 400, 1).ok());
    EXPECT_TRUE(wal.mark_compacted(9, 1, 1).ok());
    EXPECT_TRUE((co_await wal.reclaim()).ok());
    EXPECT_EQ(wal.engine().live_segments().size(), 1u);
    EXPECT_GT(wal.stats().segments_dropped, 0u);
    EXPECT_TRUE((co_await append_n(wal, 1, 100, 20000)).ok());
    EXPECT_GT(wal.stats().segments_recycled, 0u) << "dropped segments are reused";
    co_await wal.close();
  });
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, o);
    EXPECT_TRUE(w.ok()) << w.error().to_string();
    if (!w) co_return;
    EXPECT_EQ((*w)->group(1)->last_index(), 500u);
    EXPECT_EQ((*w)->group(1)->compact_index(), 400u);
    EXPECT_EQ((*w)->group(9)->compact_index(), 1u);
    auto e = co_await (*w)->read_entries(1, 401, 501, UINT64_MAX);
    EXPECT_TRUE(e.ok());
    if (e) {
      EXPECT_EQ(e->size(), 100u);
      for (const auto& x : *e)
        EXPECT_EQ(x.payload, payload_for(1, x.index, 20000));
    }
    co_await (*w)->close();
  });
}

// reset_group on the io_uring driver: durable once awaited, reads follow the
// new start point (from memory and from disk), appends continue after it,
// and a reset whose dropped entries filled old segments lets them be
// reclaimed; all of it the same after a reopen.
TEST(WalTest, ResetGroupIsDurableAndReadsAndAppendsFollowIt) {
  runtime::Runtime rt({.cores = 1});
  const std::string dir = fresh_dir("reset");
  const WalOptions o = test_options();
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, o);
    EXPECT_TRUE(w.ok());
    if (!w) co_return;
    Wal& wal = **w;
    EXPECT_TRUE((co_await append_n(wal, 2, 200, 20000)).ok());  // several segments
    EXPECT_TRUE((co_await append_n(wal, 1, 60, 300)).ok());
    const size_t live_before = wal.engine().live_segments().size();
    EXPECT_GT(live_before, 2u);
    auto keep = wal.reset_group(1, 40, 1);   // matches: 41..60 stay
    auto drop = wal.reset_group(2, 500, 3);  // conflicts: the whole log goes
    EXPECT_TRUE(keep.ok() && drop.ok());
    if (!keep || !drop) co_return;
    EXPECT_TRUE((co_await wal.wait_durable(std::max(*keep, *drop))).ok());
    EXPECT_EQ(wal.group(1)->first_index(), 41u);
    EXPECT_EQ(wal.group(2)->first_index(), 501u);
    EXPECT_EQ(wal.group(2)->last_index(), 500u);
    auto gone = co_await wal.read_entries(2, 200, 201, UINT64_MAX);
    EXPECT_FALSE(gone.ok());
    if (!gone) EXPECT_EQ(gone.error().kind(), base::ErrorKind::kNotFound);
    std::vector<Entry> cached;
    EXPECT_EQ(wal.read_cached(1, 40, 41, UINT64_MAX, cached).error().kind(),
              base::ErrorKind::kNotFound);
    // Group 2's old entries pinned every segment; now nothing does.
    EXPECT_TRUE((co_await wal.reclaim()).ok());
    EXPECT_LT(wal.engine().live_segments().size(), live_before);
    co_await wal.close();
  });
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, o);
    EXPECT_TRUE(w.ok()) << w.error().to_string();
    if (!w) co_return;
    Wal& wal = **w;
    EXPECT_EQ(wal.group(1)->compact_index(), 40u);
    EXPECT_EQ(wal.group(1)->last_index(), 60u);
    EXPECT_EQ(wal.group(2)->compact_index(), 500u);
    EXPECT_EQ(wal.group(2)->compact_term(), 3u);
    EXPECT_EQ(wal.group(2)->entry_count(), 0u);
    auto kept = co_await wal.read_entries(1, 41, 61, UINT64_MAX);  // from disk
    EXPECT_TRUE(kept.ok());
    if (kept) {
      EXPECT_EQ(kept->size(), 20u);
      for (const auto& x : *kept)
        EXPECT_EQ(x.payload, payload_for(1, x.index, 300));
    }
    EXPECT_TRUE((co_await append_n(wal, 2, 3, 100)).ok());
    EXPECT_EQ(wal.group(2)->first_index(), 501u);
    EXPECT_EQ(wal.group(2)->last_index(), 503u);
    auto fresh = co_await wal.read_entries(2, 501, 504, UINT64_MAX);
    EXPECT_TRUE(fresh.ok() && fresh->size() == 3u &&
                (*fresh)[0].payload == payload_for(2, 501, 100));
    co_await wal.close();
  });
}

TEST(WalTest, CorruptSealedSegmentFailsOpenWithFileAndOffset) {
  runtime::Runtime rt({.cores = 1});
  const std::string dir = fresh_dir("corrupt");
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, test_options());
    EXPECT_TRUE(w.ok());
    if (!w) co_return;
    EXPECT_TRUE((co_await append_n(**w, 1, 100, 30000)).ok());
    co_await (*w)->close();
  });
  {
    const std::string seg = dir + "/" + segment_file_name(1);
    std::FILE* f = std::fopen(seg.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, kSegmentHeaderBytes + 100, SEEK_SET);
    std::fputc(0x5a, f);
    std::fclose(f);
  }
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await Wal::open(dir, test_options());
    EXPECT_FALSE(w.ok());
    if (w.ok()) {
      co_await (*w)->close();
      co_return;
    }
    EXPECT_EQ(w.error().kind(), base::ErrorKind::kCorruption);
    EXPECT_NE(w.error().message().find(segment_file_name(1)), std::string::npos);
  });
}

}  // namespace
}  // namespace nori::wal
