// Micro-benchmarks of norikv's hot paths that involve no I/O: parsing a
// pipelined batch of RESP commands and applying SET entries (with their
// session bookkeeping) to a shard's Store.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "kv/resp.h"
#include "kv/store.h"

namespace {

std::string set_command(int i, size_t value_bytes) {
  const std::string key = "key:" + std::to_string(i);
  const std::string value(value_bytes, 'v');
  std::string out;
  nori::kv::reply::array_header(out, 3);
  nori::kv::reply::bulk(out, "SET");
  nori::kv::reply::bulk(out, key);
  nori::kv::reply::bulk(out, value);
  return out;
}

// A 16-command pipeline as redis-benchmark -P 16 sends it, fed in one read.
void BM_ParsePipeline(benchmark::State& state) {
  const size_t value_bytes = static_cast<size_t>(state.range(0));
  std::string batch;
  for (int i = 0; i < 16; ++i)
    batch += set_command(i, value_bytes);
  std::vector<std::string> argv;
  for (auto _ : state) {
    nori::kv::RequestParser p;
    (void)p.feed(batch);
    int n = 0;
    while (true) {
      auto r = p.next(argv);
      if (!r.ok() || !*r) break;
      ++n;
    }
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(state.iterations() * 16);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(batch.size()));
}
BENCHMARK(BM_ParsePipeline)->Arg(16)->Arg(128)->Arg(4096);

void BM_StoreApplySet(benchmark::State& state) {
  nori::kv::Store store;
  uint64_t index = 0, seq = 0;
  const std::string value(static_cast<size_t>(state.range(0)), 'v');
  for (auto _ : state) {
    nori::kv::WriteHeader h;
    h.client = 1 + (seq % 64);  // 64 concurrent clients
    h.seq = ++seq;
    h.ack_below = h.seq;
    h.now_ms = 1;
    h.opens_session = true;
    const std::string e =
        nori::kv::encode_write(h, {"SET", "key:" + std::to_string(seq % 100000), value});
    benchmark::DoNotOptimize(store.apply(++index, e));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StoreApplySet)->Arg(16)->Arg(128);

// What a snapshot capture costs the shard's reactor: Store::clone() of a
// store with N keys of 100-byte values (kv/snapshot.h). Reported per key.
void BM_StoreCloneForSnapshot(benchmark::State& state) {
  const int64_t keys = state.range(0);
  nori::kv::Store s;
  for (int64_t i = 0; i < keys; ++i) {
    nori::kv::WriteHeader h{1, uint64_t(i) + 1, uint64_t(i) + 1, 1000, i == 0};
    s.apply(uint64_t(i) + 1,
            nori::kv::encode_write(h, {"SET", "key:" + std::to_string(i), std::string(100, 'v')}));
  }
  for (auto _ : state) {
    auto c = s.clone();
    benchmark::DoNotOptimize(c.get());
  }
  state.counters["ns/key"] =
      benchmark::Counter(double(keys) * double(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_StoreCloneForSnapshot)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
