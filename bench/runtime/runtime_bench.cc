// Runtime micro-benchmarks, each with its baseline in the same run:
//   task create+resume, timer arm+fire / arm+cancel;
//   cross-core submit_to round trip (sleeping or polling target, MSG_RING or
//     eventfd wake-up) vs a pipe and an eventfd ping-pong between two threads;
//   cross-core one-way throughput (post) vs a std::mutex+condvar queue;
//   io_uring 4 KiB writes (QD1, QD16) vs pwrite(2).
// Counters: items/s or bytes/s, and cpu_us_per_op (process CPU time per
// operation, from getrusage: what an operation costs the machine, including
// any polling).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/combinators.h"
#include "runtime/io.h"
#include "runtime/runtime.h"

namespace nori::runtime {
namespace {

using namespace std::chrono_literals;

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

// Adds cpu_us_per_op for the iterations of `state`.
struct CpuMeter {
  explicit CpuMeter(benchmark::State& s, int64_t ops_per_iteration = 1)
      : state(s), per(ops_per_iteration), t0(process_cpu_seconds()) {}
  ~CpuMeter() {
    const double ops = static_cast<double>(state.iterations() * per);
    if (ops > 0) state.counters["cpu_us_per_op"] = (process_cpu_seconds() - t0) * 1e6 / ops;
  }
  benchmark::State& state;
  int64_t per;
  double t0;
};

// ---------------------------------------------------------------- tasks, timers

Task<int> trivial(int v) {
  co_return v + 1;
}

void BM_TaskCreateResume(benchmark::State& state) {
  Runtime rt({.cores = 1});
  rt.block_on(0, [&]() -> Task<void> {
    int acc = 0;
    for (auto _ : state)
      acc = co_await trivial(acc);
    benchmark::DoNotOptimize(acc);
  });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TaskCreateResume)->UseRealTime();

void BM_SpawnRun(benchmark::State& state) {
  Runtime rt({.cores = 1});
  rt.block_on(0, [&]() -> Task<void> {
    int done = 0;
    for (auto _ : state) {
      spawn([](int& d) -> Task<void> {
        ++d;
        co_return;
      }(done));
      co_await yield();
    }
    benchmark::DoNotOptimize(done);
  });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpawnRun)->UseRealTime();

// Arm a timer that is already due and let the loop fire it, with
// `range(0)` other timers pending (the tree's depth).
void BM_TimerArmFire(benchmark::State& state) {
  Runtime rt({.cores = 1});
  rt.block_on(0, [&]() -> Task<void> {
    std::vector<std::unique_ptr<Timer>> others;
    for (int64_t i = 0; i < state.range(0); ++i) {
      others.push_back(std::make_unique<Timer>([] {}));
      others.back()->arm_in(1h + std::chrono::microseconds(i));
    }
    int fired = 0;
    Timer t([&] { ++fired; });
    for (auto _ : state) {
      t.arm_at(base::BootClock::now());
      co_await yield();  // next loop round fires it
    }
    benchmark::DoNotOptimize(fired);
  });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerArmFire)->Arg(0)->Arg(10000)->UseRealTime();

void BM_TimerArmCancel(benchmark::State& state) {
  Runtime rt({.cores = 1});
  rt.block_on(0, [&]() -> Task<void> {
    std::vector<std::unique_ptr<Timer>> others;
    for (int64_t i = 0; i < state.range(0); ++i) {
      others.push_back(std::make_unique<Timer>([] {}));
      others.back()->arm_in(1h + std::chrono::microseconds(i));
    }
    Timer t([] {});
    auto d = 30min;
    for (auto _ : state) {
      t.arm_in(d);
      t.cancel();
    }
    co_return;
  });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerArmCancel)->Arg(0)->Arg(10000);

// ---------------------------------------------------------------- round trips

// range(0): 0 = MSG_RING, 1 = eventfd; range(1): idle poll in microseconds;
// range(2): 1 = reactors pinned to CPUs, 0 = unpinned.
void BM_SubmitToRoundTrip(benchmark::State& state) {
  Runtime rt({.cores = 2,
              .pin = state.range(2) ? PinMode::kWrap : PinMode::kNone,
              .wake = state.range(0) == 0 ? WakeMode::kMsgRing : WakeMode::kEventfd,
              .idle_poll = std::chrono::microseconds(state.range(1))});
  CpuMeter cpu(state);
  rt.block_on(0, [&]() -> Task<void> {
    int acc = 0;
    for (auto _ : state)
      acc += co_await submit_to(1, [] { return 1; });
    benchmark::DoNotOptimize(acc);
  });
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::string(state.range(0) == 0 ? "msg_ring" : "eventfd") +
                 (state.range(1) == 0 ? " sleeping-target" : " polling-target") +
                 (state.range(2) ? " pinned" : " unpinned"));
}
BENCHMARK(BM_SubmitToRoundTrip)
    ->ArgNames({"eventfd", "poll_us", "pinned"})
    ->Args({0, 0, 0})
    ->Args({1, 0, 0})
    ->Args({0, 0, 1})
    ->Args({1, 0, 1})
    ->Args({0, 20, 0})
    ->Args({1, 20, 0})
    ->Args({0, 50, 0})
    ->UseRealTime();

// Baseline: two threads bouncing one byte through a pair of pipes.
void BM_PipePingPong(benchmark::State& state) {
  int ab[2], ba[2];
  if (pipe2(ab, O_CLOEXEC) != 0 || pipe2(ba, O_CLOEXEC) != 0) {
    state.SkipWithError("pipe");
    return;
  }
  std::thread peer([&] {
    char c;
    while (::read(ab[0], &c, 1) == 1 && c != 'q')
      (void)!::write(ba[1], &c, 1);
  });
  CpuMeter cpu(state);
  char c = 'x';
  for (auto _ : state) {
    (void)!::write(ab[1], &c, 1);
    (void)!::read(ba[0], &c, 1);
  }
  c = 'q';
  (void)!::write(ab[1], &c, 1);
  peer.join();
  for (int fd : {ab[0], ab[1], ba[0], ba[1]})
    ::close(fd);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PipePingPong)->UseRealTime();

// Baseline: two threads bouncing through a pair of eventfds.
void BM_EventfdPingPong(benchmark::State& state) {
  int a = eventfd(0, EFD_CLOEXEC), b = eventfd(0, EFD_CLOEXEC);
  std::atomic<bool> stop{false};
  std::thread peer([&] {
    uint64_t v;
    while (::read(a, &v, 8) == 8 && !stop.load()) {
      v = 1;
      (void)!::write(b, &v, 8);
    }
  });
  CpuMeter cpu(state);
  uint64_t v = 1;
  for (auto _ : state) {
    (void)!::write(a, &v, 8);
    (void)!::read(b, &v, 8);
    v = 1;
  }
  stop.store(true);
  (void)!::write(a, &v, 8);
  peer.join();
  ::close(a);
  ::close(b);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EventfdPingPong)->UseRealTime();

// Baseline: round trip through two std::mutex + std::condition_variable slots.
void BM_MutexCondvarRoundTrip(benchmark::State& state) {
  std::mutex mu;
  std::condition_variable cv;
  int request = 0, reply = 0;
  bool stop = false;
  std::thread peer([&] {
    std::unique_lock lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return request != 0 || stop; });
      if (stop) return;
      reply = request;
      request = 0;
      cv.notify_all();
    }
  });
  CpuMeter cpu(state);
  for (auto _ : state) {
    std::unique_lock lk(mu);
    request = 1;
    cv.notify_all();
    cv.wait(lk, [&] { return reply != 0; });
    reply = 0;
  }
  {
    std::lock_guard lk(mu);
    stop = true;
  }
  cv.notify_all();
  peer.join();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MutexCondvarRoundTrip)->UseRealTime();

// ---------------------------------------------------------------- one-way throughput

constexpr int kBatch = 10000;

// Core 0 posts kBatch messages per iteration to core 1 (each bumps a counter
// there); the iteration ends when a final round trip confirms all ran.
// range(0): idle poll in microseconds; range(1): mailbox slots per ring;
// range(2): messages per mid-round publish; range(3): mailbox_wake_backlog
// (0 = auto, slots/2; 1 = check for a sleeping consumer at every publish,
// the behaviour before that option existed).
void BM_PostThroughput(benchmark::State& state) {
  Runtime rt({.cores = 2,
              .pin = PinMode::kNone,
              .wake = WakeMode::kMsgRing,
              .idle_poll = std::chrono::microseconds(state.range(0)),
              .mailbox_slots = static_cast<uint32_t>(state.range(1)),
              .mailbox_publish_batch = static_cast<uint32_t>(state.range(2)),
              .mailbox_wake_backlog = static_cast<uint32_t>(state.range(3))});
  uint64_t received = 0;  // touched only on core 1
  const ReactorStats& consumer = rt.reactor(1).stats();
  const ReactorStats& producer = rt.reactor(0).stats();
  const uint64_t sleeps0 = consumer.sleeps.load(), loops0 = consumer.loops.load();
  const uint64_t wakes0 = producer.wakeups_sent.load(), psleeps0 = producer.sleeps.load();
  CpuMeter cpu(state, kBatch);
  rt.block_on(0, [&]() -> Task<void> {
    for (auto _ : state) {
      for (int i = 0; i < kBatch; ++i)
        co_await post(1, [&received] { ++received; });
      (void)co_await submit_to(1, [] { return 0; });
    }
  });
  if (received != static_cast<uint64_t>(state.iterations()) * kBatch) state.SkipWithError("lost");
  state.SetItemsProcessed(state.iterations() * kBatch);
  // Where the time goes besides the ring: per 1000 messages, how often the
  // consumer slept (and had to be woken) and how many loop rounds it ran,
  // and how often the producer slept (ring full, waiting for slots).
  const double kmsgs = static_cast<double>(state.iterations()) * kBatch / 1000.0;
  if (kmsgs > 0) {
    state.counters["c_sleeps_per_kmsg"] = (consumer.sleeps.load() - sleeps0) / kmsgs;
    state.counters["c_rounds_per_kmsg"] = (consumer.loops.load() - loops0) / kmsgs;
    state.counters["p_wakes_per_kmsg"] = (producer.wakeups_sent.load() - wakes0) / kmsgs;
    state.counters["p_sleeps_per_kmsg"] = (producer.sleeps.load() - psleeps0) / kmsgs;
  }
}
BENCHMARK(BM_PostThroughput)
    ->ArgNames({"poll_us", "slots", "publish", "wake_backlog"})
    ->Args({0, 512, 32, 0})
    ->Args({0, 4096, 32, 0})
    ->Args({0, 4096, 32, 1})
    ->Args({0, 4096, 32, 1024})
    ->Args({20, 4096, 32, 0})
    ->UseRealTime();

// Baseline: a std::deque guarded by std::mutex, consumer waiting on a
// std::condition_variable, one notify per push.
void BM_MutexQueueThroughput(benchmark::State& state) {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<uint64_t> q;
  uint64_t received = 0;
  std::atomic<uint64_t> acked{0};
  bool stop = false;
  std::thread consumer([&] {
    std::unique_lock lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return !q.empty() || stop; });
      if (q.empty() && stop) return;
      while (!q.empty()) {
        q.pop_front();
        ++received;
      }
      acked.store(received, std::memory_order_release);
    }
  });
  CpuMeter cpu(state, kBatch);
  uint64_t sent = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      {
        std::lock_guard lk(mu);
        q.push_back(++sent);
      }
      cv.notify_one();
    }
    while (acked.load(std::memory_order_acquire) != sent)
      std::this_thread::yield();
  }
  {
    std::lock_guard lk(mu);
    stop = true;
  }
  cv.notify_one();
  consumer.join();
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_MutexQueueThroughput)->UseRealTime();

// The same message shape for the baselines as post's inline closure: a
// function pointer and one pointer of state, run by the consumer.
struct PlainMessage {
  void (*run)(void*);
  void* arg;
};
void bump_counter(void* p) {
  ++*static_cast<uint64_t*>(p);
}

// Fairer baseline: the mutex queue gets the same batching freedom as the
// rings. The producer appends range(0) messages per lock acquisition and
// notifies only when the consumer said it is waiting; the consumer swaps the
// whole queue out under the lock and runs the messages outside it.
void BM_MutexQueueBatchedThroughput(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  std::mutex mu;
  std::condition_variable cv;
  std::vector<PlainMessage> q;
  bool consumer_waiting = false, stop = false;
  uint64_t received = 0;  // consumer thread only
  std::atomic<uint64_t> acked{0};
  std::thread consumer([&] {
    std::vector<PlainMessage> mine;
    for (;;) {
      {
        std::unique_lock lk(mu);
        consumer_waiting = true;
        cv.wait(lk, [&] { return !q.empty() || stop; });
        consumer_waiting = false;
        if (q.empty() && stop) return;
        mine.swap(q);
      }
      for (const PlainMessage& m : mine)
        m.run(m.arg);
      mine.clear();
      acked.store(received, std::memory_order_release);
    }
  });
  CpuMeter cpu(state, kBatch);
  uint64_t sent = 0;
  std::vector<PlainMessage> staged;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      staged.push_back({&bump_counter, &received});
      ++sent;
      if (static_cast<int>(staged.size()) >= batch || i + 1 == kBatch) {
        bool wake;
        {
          std::lock_guard lk(mu);
          q.insert(q.end(), staged.begin(), staged.end());
          wake = consumer_waiting;
        }
        staged.clear();
        if (wake) cv.notify_one();
      }
    }
    while (acked.load(std::memory_order_acquire) != sent)
      std::this_thread::yield();
  }
  {
    std::lock_guard lk(mu);
    stop = true;
  }
  cv.notify_one();
  consumer.join();
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_MutexQueueBatchedThroughput)->ArgName("batch")->Arg(1)->Arg(32)->UseRealTime();

// The ring alone, no reactor: the floor for one-way throughput. range(0) = 0:
// one thread stages 32 messages, publishes, drains them (instructions only, no
// cache-line transfer). range(0) = 1: two plain threads, unpinned; the
// producer publishes every 32 messages, the consumer drains up to 256 and
// releases once; both spin on memory (yielding the CPU when empty or full),
// so no sleep or wake-up is ever paid. The gap between this and
// BM_PostThroughput is what the reactor path (loop rounds, sleeps, wake-ups)
// costs on top of the ring.
void BM_SpscRingThroughput(benchmark::State& state) {
  constexpr uint32_t kPublish = 32, kDrainMax = 256;
  Runtime rt({.cores = 1, .pin = PinMode::kNone});
  Reactor& any_reactor = rt.reactor(0);  // run_inline ignores it
  SpscRing ring(4096);
  uint64_t received = 0;
  auto fn = [&received] { ++received; };
  auto drain = [&]() -> uint32_t {
    uint32_t n = ring.available();
    if (n > kDrainMax) n = kDrainMax;
    for (uint32_t i = 0; i < n; ++i) {
      Slot& s = ring.peek(i);
      s.run(s, any_reactor);
    }
    if (n > 0) ring.release(n);
    return n;
  };
  CpuMeter cpu(state, kBatch);
  if (state.range(0) == 0) {
    for (auto _ : state) {
      for (int i = 0; i < kBatch; i += kPublish) {
        const int n = std::min<int>(kPublish, kBatch - i);
        for (int j = 0; j < n; ++j)
          if (!ring.try_push_inline(fn)) std::abort();
        (void)ring.publish();
        while (drain() != 0) {
        }
      }
    }
  } else {
    std::atomic<bool> stop{false};
    std::thread consumer([&] {
      for (;;) {
        if (drain() != 0) continue;
        if (stop.load(std::memory_order_acquire) && ring.available() == 0) return;
        std::this_thread::yield();
      }
    });
    uint64_t sent = 0;
    for (auto _ : state) {
      for (int i = 0; i < kBatch; ++i) {
        while (!ring.try_push_inline(fn)) {
          (void)ring.publish();
          std::this_thread::yield();
        }
        if (++sent % kPublish == 0) (void)ring.publish();
      }
      (void)ring.publish();
    }
    stop.store(true, std::memory_order_release);
    consumer.join();
  }
  if (received != static_cast<uint64_t>(state.iterations()) * kBatch) state.SkipWithError("lost");
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_SpscRingThroughput)->ArgName("threads2")->Arg(0)->Arg(1)->UseRealTime();

// ---------------------------------------------------------------- file writes

constexpr size_t kWriteBytes = 4096;
constexpr uint64_t kFileBytes = 16ull << 20;

// Writes the whole file once (zeros) and syncs it, so the measured writes are
// overwrites of allocated, written blocks: no extent conversion or size
// change, as for the WAL's prepared segments.
bool prepare_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::vector<char> zeros(1 << 20, 0);
  bool ok = true;
  for (uint64_t off = 0; off < kFileBytes && ok; off += zeros.size()) {
    ok = ::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(off)) ==
         static_cast<ssize_t>(zeros.size());
  }
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

std::string bench_file() {
  return (std::filesystem::current_path() / "runtime_bench.tmp").string();
}

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};
std::unique_ptr<char, FreeDeleter> aligned_buffer(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, n) != 0) std::abort();
  std::memset(p, 'x', n);
  return std::unique_ptr<char, FreeDeleter>(static_cast<char*>(p));
}

// range(0): queue depth (writes in flight); range(1): 1 = O_DIRECT.
// Buffered writes on ext4 cannot complete inline, so io_uring punts each to
// an io-wq worker; O_DIRECT writes (what the WAL does) are truly async.
void BM_UringWrite(benchmark::State& state) {
  const std::string path = bench_file();
  const int depth = static_cast<int>(state.range(0));
  const int direct = state.range(1) ? O_DIRECT : 0;
  if (!prepare_file(path)) {
    state.SkipWithError("prepare");
    return;
  }
  Runtime rt({.cores = 1});
  CpuMeter cpu(state, depth);
  rt.block_on(0, [&]() -> Task<void> {
    auto fd = co_await io::openat(AT_FDCWD, path.c_str(), O_RDWR | direct, 0644);
    if (!fd.ok()) {
      state.SkipWithError("open");
      co_return;
    }
    auto owned = aligned_buffer(kWriteBytes * depth);
    char* buf_data = owned.get();
    uint64_t off = 0;
    for (auto _ : state) {
      std::vector<Task<base::Result<size_t>>> batch;
      for (int i = 0; i < depth; ++i) {
        batch.push_back([](int fd, const char* p, uint64_t o) -> Task<base::Result<size_t>> {
          co_return co_await io::write(fd, p, kWriteBytes, o);
        }(*fd, buf_data + i * kWriteBytes, off));
        off = (off + kWriteBytes) % kFileBytes;
      }
      auto results = co_await when_all(std::move(batch));
      for (auto& r : results) {
        if (!r.ok()) state.SkipWithError("write");
      }
    }
    (void)co_await io::close(*fd);
  });
  std::filesystem::remove(path);
  state.SetBytesProcessed(state.iterations() * depth * kWriteBytes);
}
BENCHMARK(BM_UringWrite)
    ->ArgNames({"qd", "direct"})
    ->Args({1, 0})
    ->Args({16, 0})
    ->Args({1, 1})
    ->Args({16, 1})
    ->UseRealTime();

// Baseline: pwrite(2) from one thread; range(0): 1 = O_DIRECT.
void BM_Pwrite(benchmark::State& state) {
  const std::string path = bench_file();
  const int direct = state.range(0) ? O_DIRECT : 0;
  int fd = prepare_file(path) ? ::open(path.c_str(), O_RDWR | O_CLOEXEC | direct) : -1;
  if (fd < 0) {
    state.SkipWithError("prepare/open");
    return;
  }
  auto owned = aligned_buffer(kWriteBytes);
  char* buf = owned.get();
  uint64_t off = 0;
  CpuMeter cpu(state);
  for (auto _ : state) {
    if (::pwrite(fd, buf, kWriteBytes, static_cast<off_t>(off)) != kWriteBytes) {
      state.SkipWithError("pwrite");
    }
    off = (off + kWriteBytes) % kFileBytes;
  }
  ::close(fd);
  std::filesystem::remove(path);
  state.SetBytesProcessed(state.iterations() * kWriteBytes);
}
BENCHMARK(BM_Pwrite)->ArgName("direct")->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
}  // namespace nori::runtime

BENCHMARK_MAIN();
