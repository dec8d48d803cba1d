// net_bench: two nodes' transports in one process (one reactor each) over
// loopback TCP, against blocking-socket baselines measured in the same run.
//
//   Throughput/<bytes>/<groups>   node 1 streams messages to node 2 through the
//                                 transport (batched, framed, checksummed)
//   ThroughputOwned/<bytes>       the same, each payload built in its own buffer
//                                 and moved in (sent by reference, not copied)
//   Baseline/<bytes>              one blocking send() per message (same framing
//                                 bytes: 12-byte header), a thread reading in bulk
//   RoundTrip                     32 B ping through the transport, pong back
//   BaselinePingPong              32 B blocking send()/recv() ping-pong
//
// The machine is shared: absolute numbers are noisy, the ratio to the
// baseline of the same run is what docs/net.md reports. Knobs for
// experiments: NET_BENCH_QUEUE_BYTES (queue_bytes_max), NET_BENCH_IDLE_POLL_US
// (the runtime's idle poll).
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "net/transport.h"
#include "runtime/base/bytes.h"
#include "runtime/runtime.h"

namespace nori::net {
namespace {

using namespace std::chrono_literals;
using runtime::Task;

// ---- the transport pair ----------------------------------------------------

struct Sink : TransportHandler {
  uint64_t received = 0;
  uint64_t target = 0;
  std::atomic<uint64_t> done{0};   // bumped when target is reached
  Transport* reply_via = nullptr;  // ping-pong: answer each message
  Transport* self = nullptr;
  uint64_t pongs_left = 0;

  void on_message(NodeId from, GroupId group, MessageType, std::string_view payload) override {
    if (reply_via != nullptr) {  // the pong side
      (void)reply_via->send(from, group, MessageType::kGroup, payload);
      return;
    }
    if (pongs_left > 0) {  // the ping side: next ping until done
      if (--pongs_left == 0) {
        done.fetch_add(1);
        done.notify_all();
      } else {
        (void)self->send(from, group, MessageType::kGroup, payload);
      }
      return;
    }
    if (++received == target) {
      done.fetch_add(1);
      done.notify_all();
    }
  }
  void on_heartbeats(NodeId, std::span<const HeartbeatEntry>) override {}
  void on_heartbeat_replies(NodeId, std::span<const HeartbeatReply>) override {}
  void on_dropped(NodeId, std::span<const GroupId>) override {}
};

runtime::RuntimeConfig bench_runtime_config() {
  runtime::RuntimeConfig c{.cores = 2};
  if (const char* p = getenv("NET_BENCH_IDLE_POLL_US"))
    c.idle_poll = std::chrono::microseconds(atol(p));
  return c;
}

class Pair {
 public:
  Pair() : rt_(bench_runtime_config()) {
    for (unsigned i = 0; i < 2; ++i) {
      TransportConfig cfg;
      cfg.self = {1, i + 1, 100 + i, 0, 1};
      cfg.cluster_secret = "bench";
      if (const char* q = getenv("NET_BENCH_QUEUE_BYTES")) cfg.queue_bytes_max = atol(q);
      rt_.block_on(i, [&, i] {
        auto t = Transport::create(cfg, sink_[i]);
        NORI_ASSERT(t.ok());
        t_[i] = std::move(t).value();
        sink_[i].self = t_[i].get();
      });
    }
    std::vector<Member> members{{1, 100}, {2, 101}};
    for (unsigned i = 0; i < 2; ++i) {
      rt_.block_on(i, [&, i] {
        t_[i]->set_members(members);
        NORI_ASSERT(t_[i]->set_peer_address(2 - i, "127.0.0.1", t_[1 - i]->port()).ok());
      });
    }
    while (!rt_.block_on(0, [&] { return t_[0]->connected(2); }))
      std::this_thread::sleep_for(1ms);
    while (!rt_.block_on(1, [&] { return t_[1]->connected(1); }))
      std::this_thread::sleep_for(1ms);
  }
  ~Pair() {
    for (unsigned i = 0; i < 2; ++i) {
      rt_.block_on(i, [&, i]() -> Task<void> { co_await t_[i]->shutdown(); });
      rt_.block_on(i, [&, i] { t_[i].reset(); });
    }
    rt_.stop();
  }

  // Streams n messages of `bytes` over `groups` groups from node 1 to node 2
  // and returns once node 2 has received them all.
  // owned: each payload is built in its own buffer and moved in (as a codec's
  // output would be), so payloads >= kInlinePayloadBytesMax go out by
  // reference instead of being copied into the batch.
  void stream(uint64_t n, size_t bytes, uint64_t groups, bool owned = false) {
    uint64_t before = sink_[1].done.load();
    rt_.block_on(1, [&] {
      sink_[1].received = 0;
      sink_[1].target = n;
    });
    rt_.spawn_on(0, [this, n, bytes, groups, owned]() -> Task<void> {
      std::string payload(bytes, 'p');
      for (uint64_t i = 0; i < n; ++i) {
        // Backpressure: a full queue waits for the writer to drain it.
        while (!(owned ? t_[0]->send(2, i % groups, MessageType::kGroup, std::string(bytes, 'o'))
                       : t_[0]->send(2, i % groups, MessageType::kGroup, payload))
                    .ok()) {
          (void)co_await t_[0]->wait_for_space(2, Lane::kPriority);
        }
        if (i % 256 == 255) co_await runtime::yield();  // let the writer run
      }
    });
    sink_[1].done.wait(before);
  }
  // n ping-pongs of `bytes`; returns when the last pong is back.
  void ping_pong(uint64_t n, size_t bytes) {
    rt_.block_on(1, [&] { sink_[1].reply_via = t_[1].get(); });
    uint64_t before = sink_[0].done.load();
    rt_.block_on(0, [&] {
      sink_[0].pongs_left = n;
      (void)t_[0]->send(2, 1, MessageType::kGroup, std::string(bytes, 'q'));
    });
    sink_[0].done.wait(before);
  }

 private:
  runtime::Runtime rt_;
  Sink sink_[2];
  std::unique_ptr<Transport> t_[2];
};

Pair& pair() {
  static Pair* p = new Pair();  // lives for the whole run (one connection setup)
  return *p;
}

uint64_t messages_for(size_t bytes) {
  return bytes <= 256 ? 200000 : 50000;
}

// CPU time of the whole process (every thread: reactors, baseline threads).
double process_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

void BM_Throughput(benchmark::State& state) {
  const size_t bytes = state.range(0);
  const uint64_t groups = state.range(1);
  const uint64_t n = messages_for(bytes);
  pair();
  double cpu0 = process_cpu_ns();
  for (auto _ : state)
    pair().stream(n, bytes, groups);
  state.counters["cpu_ns/msg"] = (process_cpu_ns() - cpu0) / (double(n) * state.iterations());
  state.counters["msgs/s"] =
      benchmark::Counter(double(n) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["MB/s"] =
      benchmark::Counter(double(n * bytes) * state.iterations() / 1e6, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Throughput)
    ->ArgsProduct({{32, 256, 4096}, {1, 1000}})
    ->ArgNames({"bytes", "groups"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

void BM_ThroughputOwned(benchmark::State& state) {
  const size_t bytes = state.range(0);
  const uint64_t n = messages_for(bytes);
  pair();
  double cpu0 = process_cpu_ns();
  for (auto _ : state)
    pair().stream(n, bytes, 1000, /*owned=*/true);
  state.counters["cpu_ns/msg"] = (process_cpu_ns() - cpu0) / (double(n) * state.iterations());
  state.counters["msgs/s"] =
      benchmark::Counter(double(n) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["MB/s"] =
      benchmark::Counter(double(n * bytes) * state.iterations() / 1e6, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ThroughputOwned)
    ->Arg(4096)
    ->ArgName("bytes")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

// ---- blocking baselines ----------------------------------------------------

// A connected loopback TCP pair (client, server), TCP_NODELAY on both.
std::pair<int, int> tcp_pair() {
  int l = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  NORI_ASSERT(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(l, 1) == 0);
  socklen_t len = sizeof a;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  int c = ::socket(AF_INET, SOCK_STREAM, 0);
  NORI_ASSERT(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  int s = ::accept(l, nullptr, nullptr);
  ::close(l);
  int one = 1;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return {c, s};
}

constexpr size_t kBaselineHeaderBytes = 12;  // u32 length + u64 group

// Reads length-prefixed messages until n have arrived (the receiver does the
// same parsing work per message as a transport receiver would).
void baseline_reader(int fd, uint64_t n) {
  std::vector<char> buf(1 << 20);
  size_t have = 0;
  uint64_t got = 0;
  while (got < n) {
    ssize_t r = ::recv(fd, buf.data() + have, buf.size() - have, 0);
    NORI_ASSERT(r > 0);
    have += r;
    size_t at = 0;
    while (have - at >= kBaselineHeaderBytes) {
      uint32_t len = base::load_u32(buf.data() + at);
      if (have - at < kBaselineHeaderBytes + len) break;
      at += kBaselineHeaderBytes + len;
      ++got;
    }
    std::memmove(buf.data(), buf.data() + at, have - at);
    have -= at;
  }
}

void BM_Baseline(benchmark::State& state) {
  const size_t bytes = state.range(0);
  const uint64_t n = messages_for(bytes);
  auto [c, s] = tcp_pair();
  std::string msg(kBaselineHeaderBytes + bytes, 'b');
  base::store_u32(msg.data(), static_cast<uint32_t>(bytes));
  double cpu0 = process_cpu_ns();
  for (auto _ : state) {
    std::thread reader(baseline_reader, s, n);
    for (uint64_t i = 0; i < n; ++i) {
      base::store_u64(msg.data() + 4, i);
      NORI_ASSERT(::send(c, msg.data(), msg.size(), MSG_NOSIGNAL) == ssize_t(msg.size()));
    }
    reader.join();
  }
  state.counters["cpu_ns/msg"] = (process_cpu_ns() - cpu0) / (double(n) * state.iterations());
  ::close(c);
  ::close(s);
  state.counters["msgs/s"] =
      benchmark::Counter(double(n) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["MB/s"] =
      benchmark::Counter(double(n * bytes) * state.iterations() / 1e6, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Baseline)
    ->Arg(32)
    ->Arg(256)
    ->Arg(4096)
    ->ArgName("bytes")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

constexpr uint64_t kPingPongs = 2000;

void BM_RoundTrip(benchmark::State& state) {
  for (auto _ : state)
    pair().ping_pong(kPingPongs, 32);
  state.counters["rtt_us"] = benchmark::Counter(
      double(kPingPongs) * state.iterations(),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_RoundTrip)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

void BM_BaselinePingPong(benchmark::State& state) {
  auto [c, s] = tcp_pair();
  std::thread echo([s = s] {
    char buf[kBaselineHeaderBytes + 32];
    while (true) {
      size_t got = 0;
      while (got < sizeof buf) {
        ssize_t r = ::recv(s, buf + got, sizeof buf - got, 0);
        if (r <= 0) return;
        got += r;
      }
      ::send(s, buf, sizeof buf, MSG_NOSIGNAL);
    }
  });
  char buf[kBaselineHeaderBytes + 32] = {};
  for (auto _ : state) {
    for (uint64_t i = 0; i < kPingPongs; ++i) {
      NORI_ASSERT(::send(c, buf, sizeof buf, MSG_NOSIGNAL) == ssize_t(sizeof buf));
      size_t got = 0;
      while (got < sizeof buf) {
        ssize_t r = ::recv(c, buf + got, sizeof buf - got, 0);
        NORI_ASSERT(r > 0);
        got += r;
      }
    }
  }
  ::shutdown(c, SHUT_RDWR);
  echo.join();
  ::close(c);
  ::close(s);
  state.counters["rtt_us"] = benchmark::Counter(
      double(kPingPongs) * state.iterations(),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_BaselinePingPong)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

}  // namespace
}  // namespace nori::net

BENCHMARK_MAIN();
