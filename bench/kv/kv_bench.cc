// Micro-benchmarks of norikv's hot paths that involve no I/O: parsing a
// pipelined batch of RESP commands, applying SET entries (with their
// session bookkeeping) to a shard's Store, capturing a Store for a snapshot,
// and the Store's key map (kv::PersistentMap) against std::unordered_map in
// the same run, so that their ratio survives a noisy machine.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "kv/pmap.h"
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

// SET of 16-byte values to random keys of a key space of range(0) keys, with
// no session (client 0: nothing cached, every entry reaches the map), so
// that the map's share shows; at 10^6 keys it no longer fits in cache.
void BM_StoreApplySetKeys(benchmark::State& state) {
  nori::kv::Store store;
  const uint64_t key_space = static_cast<uint64_t>(state.range(0));
  const std::string value(16, 'v');
  const nori::kv::WriteHeader h{0, 0, 0, 1, false};
  uint64_t index = 0;
  for (uint64_t i = 0; i < key_space; ++i)
    store.apply(++index, nori::kv::encode_write(h, {"SET", "key:" + std::to_string(i), value}));
  std::vector<std::string> entries;  // encoded outside the timed loop
  std::mt19937_64 rng(4);
  for (int i = 0; i < 4096; ++i) {
    entries.push_back(
        nori::kv::encode_write(h, {"SET", "key:" + std::to_string(rng() % key_space), value}));
  }
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(store.apply(++index, entries[i++ & 4095]));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StoreApplySetKeys)->Arg(100000)->Arg(1000000);

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
BENCHMARK(BM_StoreCloneForSnapshot)->Arg(10000)->Arg(100000)->Unit(benchmark::kMicrosecond);

// What is left of the capture cost: the sessions, still deep-copied. A store
// of 10,000 keys written by N clients, each of which has one reply cached
// (the steady state of a client with one write in flight).
void BM_StoreCloneSessions(benchmark::State& state) {
  const int64_t clients = state.range(0);
  nori::kv::Store s;
  for (int64_t i = 0; i < 10000; ++i) {
    const uint64_t c = 1 + uint64_t(i % clients);
    const uint64_t seq = 1 + uint64_t(i / clients);
    nori::kv::WriteHeader h{c, seq, seq, 1000, seq == 1};
    s.apply(uint64_t(i) + 1,
            nori::kv::encode_write(h, {"SET", "key:" + std::to_string(i), std::string(100, 'v')}));
  }
  for (auto _ : state) {
    auto c = s.clone();
    benchmark::DoNotOptimize(c.get());
  }
  state.counters["sessions"] = double(s.sessions());
}
BENCHMARK(BM_StoreCloneSessions)->Arg(1)->Arg(256)->Arg(10000)->Unit(benchmark::kMicrosecond);

// ---- the key map: PersistentMap vs std::unordered_map ----------------------
//
// The value is the Store's: a string (16 bytes, inside the small-string
// buffer, so the map's own cost dominates) and an expiry. Keys "key:<i>".

struct BenchValue {
  std::string data;
  uint64_t expire_at_ms = 0;
};
using Pmap = nori::kv::PersistentMap<BenchValue>;
using StdMap = std::unordered_map<std::string, BenchValue>;

std::vector<std::string> bench_keys(int64_t n) {
  std::vector<std::string> keys;
  keys.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    keys.push_back("key:" + std::to_string(i));
  return keys;
}

// A map of the given keys, each with a 16-byte value.
template <class Map>
Map filled_map(const std::vector<std::string>& keys) {
  Map m;
  for (const auto& k : keys)
    m.insert_or_assign(k, BenchValue{"0123456789abcdef", 0});
  return m;
}

// 65,536 random indices below n (a fixed sequence per seed).
std::vector<uint32_t> random_order(size_t n, uint32_t seed) {
  std::vector<uint32_t> order(1 << 16);
  std::mt19937 rng(seed);
  for (auto& o : order)
    o = static_cast<uint32_t>(rng() % n);
  return order;
}

const BenchValue* map_find(const Pmap& m, const std::string& k) {
  return m.find(k);
}
const BenchValue* map_find(const StdMap& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? nullptr : &it->second;
}

// Lookups of present keys in random order, N keys in the map.
template <class Map>
void BM_MapFind(benchmark::State& state) {
  const auto keys = bench_keys(state.range(0));
  Map m = filled_map<Map>(keys);
  const auto order = random_order(keys.size(), 1);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(map_find(m, keys[order[i++ & 0xFFFF]]));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_MapFind, Pmap)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK_TEMPLATE(BM_MapFind, StdMap)->Arg(1000)->Arg(100000)->Arg(1000000);

// Building a map of N fresh keys from empty (key strings copied in, as an
// apply copies them out of the entry). Reported per insert.
template <class Map>
void BM_MapInsertFresh(benchmark::State& state) {
  const auto keys = bench_keys(state.range(0));
  for (auto _ : state) {
    Map m;
    for (const auto& k : keys)
      m.insert_or_assign(k, BenchValue{"0123456789abcdef", 0});
    benchmark::DoNotOptimize(m.size());
    state.PauseTiming();
    m = Map();  // destruction is not an insert
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK_TEMPLATE(BM_MapInsertFresh, Pmap)->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_MapInsertFresh, StdMap)->Arg(100000)->Unit(benchmark::kMillisecond);

// Overwriting existing keys in random order (SET's steady state), no
// snapshot alive: the persistent map writes in place.
template <class Map>
void BM_MapAssignExisting(benchmark::State& state) {
  const auto keys = bench_keys(state.range(0));
  Map m = filled_map<Map>(keys);
  const auto order = random_order(keys.size(), 2);
  size_t i = 0;
  for (auto _ : state) {
    m.insert_or_assign(keys[order[i++ & 0xFFFF]], BenchValue{"fedcba9876543210", 0});
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_MapAssignExisting, Pmap)->Arg(100000)->Arg(1000000);
BENCHMARK_TEMPLATE(BM_MapAssignExisting, StdMap)->Arg(100000)->Arg(1000000);

// The price of a snapshot for the writer: overwrites of random keys while a
// snapshot taken every `range(1)` writes is alive (each write copies the
// nodes of its path still shared with the latest snapshot). Compare with
// BM_MapAssignExisting<Pmap> (no snapshot).
void BM_PmapAssignWithSnapshotAlive(benchmark::State& state) {
  const auto keys = bench_keys(state.range(0));
  const int64_t every = state.range(1);
  Pmap m = filled_map<Pmap>(keys);
  const auto order = random_order(keys.size(), 3);
  Pmap snap = m.snapshot();
  size_t i = 0;
  int64_t since = 0;
  for (auto _ : state) {
    if (++since == every) {
      snap = m.snapshot();
      since = 0;
    }
    m.insert_or_assign(keys[order[i++ & 0xFFFF]], BenchValue{"fedcba9876543210", 0});
  }
  state.SetItemsProcessed(state.iterations());
}
// The worst single write: the first one after a snapshot, which copies the
// 4096-slot root and one path (and, here, also releases the previous
// snapshot's copy of them). This is the reactor's whole capture cost for keys.
void BM_PmapFirstWriteAfterSnapshot(benchmark::State& state) {
  const auto keys = bench_keys(state.range(0));
  Pmap m = filled_map<Pmap>(keys);
  Pmap snap;
  size_t i = 0;
  for (auto _ : state) {
    snap = m.snapshot();
    m.insert_or_assign(keys[(i++ * 7919) % keys.size()], BenchValue{"fedcba9876543210", 0});
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PmapFirstWriteAfterSnapshot)->Arg(100000)->Arg(1000000)->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_PmapAssignWithSnapshotAlive)->Args({100000, 100000})->Args({1000000, 1000000});

}  // namespace

BENCHMARK_MAIN();
