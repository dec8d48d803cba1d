// wal_bench: the per-core WAL against this machine's disk floor, in one run.
//
//   Floor/*        the device with the WAL's file flags (O_DIRECT; RWF_DSYNC per
//                  write, O_DSYNC at open, or write + fdatasync), queue depth 1:
//                  4 KiB (latency), 64 KiB, 1 MiB (bandwidth)
//   Wal/*          durable appends on a one-core runtime: entry size x groups
//                  appending concurrently (one writer coroutine per group, each
//                  appends `batch` entries then waits for durability; 512 KiB
//                  entries for the large-entry bandwidth case):
//                  entries/s, MB/s, p50/p99/p99.9 append->durable, entries/write
//   WalRwfDsync/*  the same WAL with RWF_DSYNC for every write (the default uses
//                  write + fdatasync below 256 KiB)
//   WalSyncAB      RWF_DSYNC vs write + fdatasync, interleaved rounds, medians
//   WalLinkAB      1 or 256 writers, 16 B entries: write + fdatasync linked vs two
//                  operations vs RWF_DSYNC, at the kernel's default EEVDF slice
//                  and at 100 us; latency and context switches per write
//   Recovery       reads a log of ~256 MiB cold (pages dropped): MB/s
//
// Data lives in $NORI_WAL_BENCH_DIR or wal-bench-data/ beside the executable
// (O_DIRECT: not tmpfs), removed at the end.
// Each WAL case runs for NORI_WAL_BENCH_SECONDS (default 0.6) of wall time;
// WalSyncAB alternates the two sync modes for 5 rounds each.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "runtime/base/clock.h"
#include "runtime/runtime.h"
#include "wal/posix_dir.h"
#include "wal/wal.h"

namespace {

using namespace nori;
using runtime::Task;
namespace fs = std::filesystem;

// Beside the executable (under the build directory, on the project's disk),
// unless NORI_WAL_BENCH_DIR says otherwise. Removed when the run ends.
std::string bench_dir() {
  static const std::string dir = [] {
    const char* d = std::getenv("NORI_WAL_BENCH_DIR");
    if (d) return std::string(d);
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("wal-bench-data") : (exe.parent_path() / "wal-bench-data").string();
  }();
  fs::create_directories(dir);
  return dir;
}

double run_seconds() {
  const char* s = std::getenv("NORI_WAL_BENCH_SECONDS");
  return s ? std::atof(s) : 0.6;
}

struct Percentiles {
  double p50_us = 0, p99_us = 0, p999_us = 0;
};
Percentiles percentiles(std::vector<int64_t>& ns) {
  Percentiles p;
  if (ns.empty()) return p;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    return static_cast<double>(ns[std::min(ns.size() - 1, static_cast<size_t>(q * ns.size()))]) /
           1e3;
  };
  p.p50_us = at(0.50);
  p.p99_us = at(0.99);
  p.p999_us = at(0.999);
  return p;
}

// ---- the device floor ---------------------------------------------------------

enum class Sync { kRwfDsync, kODsync, kFdatasync };
constexpr uint64_t kFloorFileBytes = uint64_t{64} << 20;

// One zero-filled file shared by every floor case (created once, then left
// to settle): a freshly written 256 MiB would keep the device busy flushing
// its cache and make the first cases look slow.
const std::string& floor_file() {
  static const std::string path = [] {
    const std::string p = bench_dir() + "/floor.dat";
    fs::remove(p);
    int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0644);
    NORI_ASSERT(fd >= 0, "open {}: {}", p, std::strerror(errno));
    NORI_ASSERT(::fallocate(fd, 0, 0, kFloorFileBytes) == 0);
    char* z = static_cast<char*>(std::aligned_alloc(4096, 1 << 20));
    std::memset(z, 0, 1 << 20);
    for (uint64_t off = 0; off < kFloorFileBytes; off += 1 << 20) {
      NORI_ASSERT(::pwrite(fd, z, 1 << 20, static_cast<off_t>(off)) == 1 << 20);
    }
    ::fdatasync(fd);
    ::close(fd);
    std::free(z);
    ::usleep(500'000);
    return p;
  }();
  return path;
}

void BM_Floor(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  const Sync mode = static_cast<Sync>(state.range(1));
  const std::string& path = floor_file();
  const uint64_t file_bytes = kFloorFileBytes;
  int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | (mode == Sync::kODsync ? O_DSYNC : 0));
  NORI_ASSERT(fd >= 0, "open {}: {}", path, std::strerror(errno));
  char* buf = static_cast<char*>(std::aligned_alloc(4096, bytes));
  std::memset(buf, 0x5a, bytes);
  // Through io_uring like the WAL (a private ring, queue depth 1): the same
  // submission and completion path, not blocking syscalls.
  io_uring ring;
  NORI_ASSERT(io_uring_queue_init(8, &ring, 0) == 0);
  auto run_op = [&](auto prep) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    prep(sqe);
    io_uring_submit_and_wait(&ring, 1);
    io_uring_cqe* cqe = nullptr;
    NORI_ASSERT(io_uring_wait_cqe(&ring, &cqe) == 0);
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return res;
  };
  std::vector<int64_t> lat;
  uint64_t off = 0, n = 0;
  const auto t_start = base::BootClock::now();
  for (auto _ : state) {
    const auto t0 = base::BootClock::now();
    const int w = run_op([&](io_uring_sqe* s) {
      io_uring_prep_write(s, fd, buf, static_cast<unsigned>(bytes), off);
      s->rw_flags = mode == Sync::kRwfDsync ? RWF_DSYNC : 0;
    });
    NORI_ASSERT(w == static_cast<int>(bytes), "write: {}", w);
    if (mode == Sync::kFdatasync) {
      NORI_ASSERT(
          run_op([&](io_uring_sqe* s) { io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC); }) == 0);
    }
    lat.push_back(base::to_ns(base::BootClock::now() - t0));
    off = (off + bytes) % file_bytes;
    ++n;
  }
  io_uring_queue_exit(&ring);
  const double secs = base::to_ns(base::BootClock::now() - t_start) / 1e9;
  auto p = percentiles(lat);
  state.counters["writes/s"] = n / secs;
  state.counters["MB/s"] = n * bytes / secs / 1e6;
  state.counters["p50_us"] = p.p50_us;
  state.counters["p99_us"] = p.p99_us;
  state.counters["p99.9_us"] = p.p999_us;
  std::free(buf);
  ::close(fd);
}

// ---- the WAL -------------------------------------------------------------------

struct WalRun {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  double secs = 0;
  double cpu_secs = 0;  // the reactor thread's CPU time over the run
  std::vector<int64_t> lat;
  wal::WalStats stats;
  uint64_t ctx_switches = 0;  // all threads of the process, over the run
};

Task<void> group_writer(wal::Wal& w, uint64_t g, size_t entry_bytes, int batch,
                        base::TimePoint stop_at, WalRun& run, int& running) {
  std::string payload(entry_bytes, 'x');
  std::vector<std::string_view> views(static_cast<size_t>(batch), payload);
  std::vector<uint64_t> terms(static_cast<size_t>(batch), 1);
  uint64_t appends = 0;
  while (base::BootClock::now() < stop_at) {
    const wal::GroupLog* gl = w.group(g);
    const uint64_t first = (gl ? gl->last_index() : 0) + 1;
    const auto t0 = base::BootClock::now();
    auto pos = w.append_entries(g, first, terms, views);
    if (!pos) {
      NORI_ASSERT(pos.error().kind() == base::ErrorKind::kBusy, "{}", pos.error().to_string());
      (void)co_await w.wait_writable();
      continue;
    }
    // Like Raft after a snapshot: old entries go, so segments get recycled.
    if (++appends % 512 == 0 && first > 1024) (void)w.mark_compacted(g, first - 512, 1);
    (void)co_await w.wait_durable(*pos);
    run.lat.push_back(base::to_ns(base::BootClock::now() - t0));
    run.entries += static_cast<uint64_t>(batch);
    run.bytes += static_cast<uint64_t>(batch) * entry_bytes;
  }
  --running;
}

// Context switches of every thread of this process so far (the reactor and
// the kernel's io-wq workers, which are threads of the process).
uint64_t process_ctx_switches() {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& t : fs::directory_iterator("/proc/self/task", ec)) {
    FILE* f = std::fopen((t.path() / "status").c_str(), "r");
    if (f == nullptr) continue;
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long long v = 0;
      if (std::sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
          std::sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1) {
        total += v;
      }
    }
    std::fclose(f);
  }
  return total;
}

// sync: 0 = the default policy, 1 = always RWF_DSYNC, 2 = always write + fdatasync
// (linked chain, the default), 3 = write + fdatasync as two operations.
WalRun run_wal(size_t entry_bytes, int groups, int batch, int sync, uint32_t slice_us = 0) {
  const std::string dir = bench_dir() + "/wal";
  fs::remove_all(dir);
  wal::WalOptions o;
  o.segment_bytes = uint64_t{64} << 20;
  o.write_bytes_max = 1 << 20;
  o.writes_in_flight_max = 4;
  o.use_rwf_dsync = sync == 1;
  if (sync >= 2) o.rwf_dsync_min_bytes = UINT32_MAX;
  o.linked_sync = sync != 3;
  o.free_segments_max = 4;
  WalRun run;
  runtime::Runtime rt({.cores = 1, .sched_slice_us = slice_us});
  const uint64_t cs0 = process_ctx_switches();
  rt.block_on(0, [&]() -> Task<void> {
    auto w = co_await wal::Wal::open(dir, o);
    NORI_ASSERT(w.ok(), "{}", w.error().to_string());
    int running = groups;
    const auto t0 = base::BootClock::now();
    const base::Duration cpu0 = base::thread_cpu_time();
    const auto stop_at = t0 + std::chrono::nanoseconds(static_cast<int64_t>(run_seconds() * 1e9));
    for (int g = 1; g <= groups; ++g) {
      runtime::spawn(
          group_writer(**w, static_cast<uint64_t>(g), entry_bytes, batch, stop_at, run, running));
    }
    while (running > 0)
      (void)co_await runtime::sleep_for(std::chrono::milliseconds(2));
    run.secs = base::to_ns(base::BootClock::now() - t0) / 1e9;
    run.cpu_secs = base::to_ns(base::thread_cpu_time() - cpu0) / 1e9;
    run.stats = (*w)->stats();
    run.ctx_switches = process_ctx_switches() - cs0;
    co_await (*w)->close();
  });
  fs::remove_all(dir);
  return run;
}

void report(benchmark::State& state, WalRun& run) {
  auto p = percentiles(run.lat);
  state.counters["entries/s"] = run.entries / run.secs;
  // Load-independent capacity: entries per second of the reactor's CPU time
  // (the machine is shared; wall-clock rates depend on who else runs).
  state.counters["entries/cpu_s"] = run.cpu_secs > 0 ? run.entries / run.cpu_secs : 0;
  state.counters["cpu%"] = 100 * run.cpu_secs / run.secs;
  state.counters["MB/s"] = run.bytes / run.secs / 1e6;
  state.counters["p50_us"] = p.p50_us;
  state.counters["p99_us"] = p.p99_us;
  state.counters["p99.9_us"] = p.p999_us;
  state.counters["entries/write"] =
      run.stats.durable_writes ? double(run.stats.engine.entries) / run.stats.durable_writes : 0;
  state.counters["KiB/write"] =
      run.stats.durable_writes ? run.stats.engine.write_bytes / 1024.0 / run.stats.durable_writes
                               : 0;
}

// range(0) = entry bytes, range(1) = groups, range(2) = entries per append
void BM_Wal(benchmark::State& state) {
  WalRun run;
  for (auto _ : state) {
    run = run_wal(static_cast<size_t>(state.range(0)), static_cast<int>(state.range(1)),
                  static_cast<int>(state.range(2)), 0);
  }
  report(state, run);
}

void BM_WalRwfDsync(benchmark::State& state) {
  WalRun run;
  for (auto _ : state) {
    run = run_wal(static_cast<size_t>(state.range(0)), static_cast<int>(state.range(1)),
                  static_cast<int>(state.range(2)), 1);
  }
  report(state, run);
}

// RWF_DSYNC against write + fdatasync, interleaved (A, B, A, B, ...) so that
// both see the same disk weather; medians of the rounds.
// range(0) = entry bytes, range(1) = groups
void BM_WalSyncAB(benchmark::State& state) {
  constexpr int kRounds = 5;
  std::vector<double> p50[2], mbs[2];
  for (auto _ : state) {
    for (int r = 0; r < kRounds; ++r) {
      for (int mode = 0; mode < 2; ++mode) {
        WalRun run = run_wal(static_cast<size_t>(state.range(0)), static_cast<int>(state.range(1)),
                             1, mode == 0 ? 1 : 2);
        p50[mode].push_back(percentiles(run.lat).p50_us);
        mbs[mode].push_back(run.bytes / run.secs / 1e6);
      }
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  state.counters["rwf_p50_us"] = median(p50[0]);
  state.counters["fdsync_p50_us"] = median(p50[1]);
  state.counters["rwf_MB/s"] = median(mbs[0]);
  state.counters["fdsync_MB/s"] = median(mbs[1]);
}

// 16 B entries, each waited for by its writer (one writer: the leader's WAL at
// one proposal in flight; 256: a loaded core), write + fdatasync as one
// linked chain, as two operations, and
// RWF_DSYNC, interleaved (A, B, C, A, ...) so all see the same disk and CPU
// weather; medians of the rounds. range(0) = EEVDF slice of the reactor (us,
// 0 = kernel default), range(1) = writers (groups). `cs/write` counts context switches of all
// threads (the reactor and io-wq workers) per durable write.
void BM_WalLinkAB(benchmark::State& state) {
  constexpr int kRounds = 5;
  constexpr int kModes = 3;
  constexpr int kSync[kModes] = {2, 3, 1};
  const char* kName[kModes] = {"linked", "two_ops", "rwf"};
  std::vector<double> p50[kModes], p99[kModes], cs[kModes], rate[kModes];
  for (auto _ : state) {
    for (int r = 0; r < kRounds; ++r) {
      for (int m = 0; m < kModes; ++m) {
        WalRun run = run_wal(16, static_cast<int>(state.range(1)), 1, kSync[m],
                             static_cast<uint32_t>(state.range(0)));
        rate[m].push_back(run.entries / run.secs);
        const Percentiles p = percentiles(run.lat);
        p50[m].push_back(p.p50_us);
        p99[m].push_back(p.p99_us);
        cs[m].push_back(run.stats.durable_writes
                            ? double(run.ctx_switches) / double(run.stats.durable_writes)
                            : 0.0);
      }
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  for (int m = 0; m < kModes; ++m) {
    state.counters[fmt::format("{}_p50_us", kName[m])] = median(p50[m]);
    state.counters[fmt::format("{}_p99_us", kName[m])] = median(p99[m]);
    state.counters[fmt::format("{}_cs/write", kName[m])] = median(cs[m]);
    state.counters[fmt::format("{}_entries/s", kName[m])] = median(rate[m]);
  }
}

// ---- recovery ------------------------------------------------------------------

void BM_Recovery(benchmark::State& state) {
  const std::string dir = bench_dir() + "/recovery";
  fs::remove_all(dir);
  wal::WalOptions o;
  o.segment_bytes = uint64_t{64} << 20;
  const uint64_t target = uint64_t{256} << 20;
  {
    runtime::Runtime rt({.cores = 1});
    rt.block_on(0, [&]() -> Task<void> {
      auto w = co_await wal::Wal::open(dir, o);
      NORI_ASSERT(w.ok());
      std::string payload(4000, 'r');
      std::vector<std::string_view> views(16, payload);
      std::vector<uint64_t> terms(16, 1);
      uint64_t g = 0;
      while ((*w)->append_position() < target) {
        g = g % 64 + 1;
        const wal::GroupLog* gl = (*w)->group(g);
        auto pos = (*w)->append_entries(g, (gl ? gl->last_index() : 0) + 1, terms, views);
        if (!pos) {
          (void)co_await (*w)->wait_writable();
          continue;
        }
        if ((*w)->append_position() - (*w)->durable_position() > (32 << 20)) {
          (void)co_await (*w)->wait_durable(*pos);
        }
      }
      (void)co_await (*w)->wait_durable((*w)->append_position());
      co_await (*w)->close();
    });
  }
  uint64_t bytes = 0, records = 0;
  double secs = 0;
  for (auto _ : state) {
    // Cold: drop these files' pages (only ours, not the machine's cache).
    for (const auto& e : fs::directory_iterator(dir)) {
      int fd = ::open(e.path().c_str(), O_RDONLY);
      ::fdatasync(fd);
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      ::close(fd);
    }
    wal::PosixSegmentSource src(dir);
    const auto t0 = base::BootClock::now();
    auto rec = wal::recover(src);
    secs = base::to_ns(base::BootClock::now() - t0) / 1e9;
    NORI_ASSERT(rec.ok(), "{}", rec.error().to_string());
    fmt::print(stderr, "recovery pass: {:.0f} ms\n", secs * 1e3);
    bytes = rec->bytes_read;
    records = rec->records;
  }
  state.counters["MB/s"] = bytes / secs / 1e6;
  state.counters["MB"] = bytes / 1e6;
  state.counters["records/s"] = records / secs;
  if (!std::getenv("NORI_WAL_BENCH_KEEP")) fs::remove_all(dir);
}

constexpr int64_t kRwf = static_cast<int64_t>(Sync::kRwfDsync);
constexpr int64_t kOds = static_cast<int64_t>(Sync::kODsync);
constexpr int64_t kFds = static_cast<int64_t>(Sync::kFdatasync);

BENCHMARK(BM_Floor)
    ->ArgNames({"bytes", "sync"})
    ->Args({4096, kFds})
    ->Args({4096, kRwf})
    ->Args({4096, kOds})
    ->Args({64 << 10, kFds})
    ->Args({64 << 10, kRwf})
    ->Args({1 << 20, kFds})
    ->Args({1 << 20, kRwf})
    ->Args({1 << 20, kOds})
    ->MinTime(0.5)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_Wal)
    ->ArgNames({"entry", "groups", "batch"})
    ->ArgsProduct({{16, 128, 1024, 16384}, {1, 64, 1024}, {1}})
    ->Args({16, 64, 64})
    ->Args({16, 1024, 16})
    ->Args({512 << 10, 4, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_WalRwfDsync)
    ->ArgNames({"entry", "groups", "batch"})
    ->Args({16, 1, 1})
    ->Args({1024, 64, 1})
    ->Args({16384, 64, 1})
    ->Args({512 << 10, 4, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_WalSyncAB)
    ->ArgNames({"entry", "groups"})
    ->Args({16, 1})
    ->Args({65536, 8})
    ->Args({512 << 10, 4})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_WalLinkAB)
    ->ArgNames({"slice_us", "writers"})
    ->Args({0, 1})
    ->Args({100, 1})
    ->Args({0, 256})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_Recovery)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!std::getenv("NORI_WAL_BENCH_KEEP")) fs::remove_all(bench_dir());
  return 0;
}
