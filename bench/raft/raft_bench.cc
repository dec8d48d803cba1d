// Benchmarks of the Raft core alone (no I/O, no threads): what the protocol
// costs in CPU, with persistence and the network replaced by instant,
// in-memory stand-ins. Results on a shared 2-core CI machine are noisy:
// compare ratios measured in the same run.
//
//   BM_CommitThroughput/<batch>: entries proposed `batch` at a time on the
//     leader of a 3-node group, driven to commit and apply on all replicas.
//     Counters: entries_per_s (committed entries per CPU second, all three
//     replicas on this one thread) and cpu_per_entry_replica (CPU per
//     committed entry per replica; target < 1 us with batching).
//   BM_HeartbeatRound10kIdleGroups: one heartbeat round (leader tick,
//     followers answer, leader processes replies) for 10,000 idle 3-replica
//     groups, all three replicas on this one thread. Counter ns_per_group.
//   BM_HeartbeatRoundLeaderSide10kIdleGroups: the leader's share of that
//     round (what one node pays per group it leads; target < 300 ns).
//   BM_CodecHeartbeat, BM_CodecAppend64x64: encode + decode (raft/codec.h).
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "raft/codec.h"
#include "raft/raft.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;

// Durable storage stand-in that keeps only terms: in steady state the core
// never reads entries back (they are in its in-memory cache).
class TermsOnlyStorage final : public LogStorage {
 public:
  HardState hard_state() const override { return hs_; }
  Index first_index() const override { return 1; }
  Index last_index() const override { return terms_.size(); }
  base::Result<Term> term(Index i) const override {
    if (i == 0) return Term{0};
    if (i > terms_.size()) return base::err(base::ErrorKind::kNotFound, "beyond");
    return terms_[i - 1];
  }
  base::Status entries(Index, Index, uint64_t, std::vector<Entry>&) const override {
    return base::err(base::ErrorKind::kNotFound, "entries are not kept by the benchmark");
  }
  void persist(const Ready& r) {
    if (r.hard_state) hs_ = *r.hard_state;
    if (r.truncate_from && *r.truncate_from <= terms_.size()) terms_.resize(*r.truncate_from - 1);
    for (const Entry& e : r.entries) {
      if (e.index <= terms_.size()) terms_.resize(e.index - 1);
      terms_.push_back(e.term);
    }
  }

 private:
  HardState hs_;
  std::vector<Term> terms_;
};

struct Replica {
  TermsOnlyStorage disk;
  std::unique_ptr<Raft> raft;
};

// One Ready reused for every group, as a driver that drains groups one after
// another in its round would (it stays hot in the cache).
Ready& scratch_ready() {
  static Ready ready;
  return ready;
}

// One group of three replicas (node ids 1..3) on an instant network.
class Group {
 public:
  Group(GroupId group, TimePoint now, uint64_t log_cache_bytes_max = 64ull << 20) : now_(now) {
    for (NodeId id = 1; id <= 3; ++id) {
      Config c;
      c.id = id;
      c.group = group;
      c.voters = {1, 2, 3};
      c.random_seed = group * 7 + id;
      c.log_cache_bytes_max = log_cache_bytes_max;
      c.proposals_pending_max = 1 << 20;
      c.uncommitted_bytes_max = 1ull << 30;
      replicas_[id - 1].raft = std::make_unique<Raft>(c, replicas_[id - 1].disk, now);
    }
    replicas_[0].raft->campaign(now_);
    pump();
    NORI_ASSERT(replicas_[0].raft->is_leader());
  }

  Raft& leader() { return *replicas_[0].raft; }
  Raft& replica(NodeId id) { return *replicas_[id - 1].raft; }
  TimePoint now() const { return now_; }
  void set_now(TimePoint t) { now_ = t; }

  // Drains one replica: "persists" instantly, acknowledges, applies, and puts
  // its messages on the wire.
  void drain(Replica& r) {
    Ready& rd = scratch_ready();
    r.raft->take_ready(rd);
    if (rd.hard_state || rd.truncate_from || !rd.entries.empty()) {
      r.disk.persist(rd);
      if (rd.hard_state) r.raft->hard_state_persisted(*rd.hard_state, now_);
      if (!rd.entries.empty()) {
        r.raft->entries_persisted(rd.entries.back().index, rd.entries.back().term, now_);
      }
    }
    for (OutMessage& m : rd.messages)
      wire_.push_back(std::move(m.msg));
    if (!rd.committed.empty()) r.raft->applied(rd.committed.back().index, now_);
  }

  // Runs until no replica has output and the wire is empty. A replica is
  // drained right after it was stepped, while it is hot in the cache, as a
  // driver that knows which groups it touched would.
  void pump() {
    for (Replica& r : replicas_) {
      if (r.raft->has_ready()) drain(r);
    }
    pump_wire();
  }
  // After the caller touched only `r` (tick, propose).
  void pump_from(NodeId id) {
    Replica& r = replicas_[id - 1];
    if (r.raft->has_ready()) drain(r);
    pump_wire();
  }

 private:
  void pump_wire() {
    while (!wire_.empty()) {
      delivering_.swap(wire_);
      for (Message& m : delivering_) {
        Replica& to = replicas_[m.to - 1];
        to.raft->step(std::move(m), now_);
        if (to.raft->has_ready()) drain(to);
      }
      delivering_.clear();
    }
  }

  TimePoint now_;
  Replica replicas_[3];
  std::vector<Message> wire_;
  std::vector<Message> delivering_;
};

void BM_CommitThroughput(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const std::string payload(64, 'p');
  Group g(1, base::time_from_ns(1'000'000'000'000));
  uint64_t entries = 0;
  uint64_t pid = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      auto r = g.leader().propose(payload, ++pid, g.now(), TimePoint::max());
      if (!r.ok()) state.SkipWithError(r.error().to_string().c_str());
    }
    g.pump_from(1);
    entries += batch;
  }
  if (g.leader().commit_index() < entries) state.SkipWithError("entries did not commit");
  for (NodeId id = 2; id <= 3; ++id) {
    // Followers learn the commit index lazily (next append or heartbeat).
    benchmark::DoNotOptimize(g.replica(id).applied_index());
  }
  state.counters["entries_per_s"] =
      benchmark::Counter(static_cast<double>(entries), benchmark::Counter::kIsRate);
  state.counters["cpu_per_entry_replica"] = benchmark::Counter(
      static_cast<double>(entries) * 3, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_CommitThroughput)->Arg(1)->Arg(16)->Arg(256)->Unit(benchmark::kMicrosecond);

void BM_HeartbeatRound10kIdleGroups(benchmark::State& state) {
  constexpr int kGroups = 10'000;
  TimePoint now = base::time_from_ns(1'000'000'000'000);
  std::vector<std::unique_ptr<Group>> groups;
  groups.reserve(kGroups);
  for (int i = 0; i < kGroups; ++i) {
    groups.push_back(std::make_unique<Group>(static_cast<GroupId>(i + 1), now, 1 << 20));
  }
  for (auto _ : state) {
    now += 150ms;  // one heartbeat interval: every leader's tick sends a round
    for (auto& g : groups) {
      g->set_now(now);
      g->leader().tick(now);
      g->pump_from(1);
    }
  }
  state.counters["ns_per_group"] = benchmark::Counter(
      static_cast<double>(kGroups),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["groups"] = kGroups;
}
BENCHMARK(BM_HeartbeatRound10kIdleGroups)->Unit(benchmark::kMillisecond);

// The leader's share of the same round, which is what one node pays per
// group it leads: tick (builds the round), drain, and the two replies (built
// here, as the transport would decode them, without follower objects).
void BM_HeartbeatRoundLeaderSide10kIdleGroups(benchmark::State& state) {
  constexpr int kGroups = 10'000;
  TimePoint now = base::time_from_ns(1'000'000'000'000);
  std::vector<std::unique_ptr<Group>> groups;
  groups.reserve(kGroups);
  for (int i = 0; i < kGroups; ++i) {
    groups.push_back(std::make_unique<Group>(static_cast<GroupId>(i + 1), now, 1 << 20));
  }
  Ready ready;
  for (auto _ : state) {
    now += 150ms;
    for (auto& g : groups) {
      Raft& l = g->leader();
      l.tick(now);
      l.take_ready(ready);
      for (const OutMessage& m : ready.messages) {
        const auto* hb = std::get_if<Heartbeat>(&m.msg.body);
        if (hb == nullptr) continue;
        l.step(Message{m.msg.group, m.msg.to, m.msg.from, m.msg.term, HeartbeatReply{hb->round}},
               now);
      }
      if (l.has_ready()) l.take_ready(ready);
    }
  }
  if (!groups.front()->leader().lease_valid(now)) state.SkipWithError("lease was not renewed");
  state.counters["ns_per_group"] = benchmark::Counter(
      static_cast<double>(kGroups),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_HeartbeatRoundLeaderSide10kIdleGroups)->Unit(benchmark::kMillisecond);

// The codec the transport runs on every message: a heartbeat, and an append
// of 64 entries of 64 bytes, encoded then decoded (bytes_per_second counts
// the encoded size once).
void BM_CodecHeartbeat(benchmark::State& state) {
  Message m{42, 1, 2, 7, Heartbeat{.commit = 123456, .round = 789}};
  std::string buf;
  for (auto _ : state) {
    buf.clear();
    encode_message(m, buf);
    auto d = decode_message(buf);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_CodecHeartbeat);

void BM_CodecAppend64x64(benchmark::State& state) {
  Append app{.prev_index = 1000, .prev_term = 7, .commit = 990, .entries = {}};
  for (Index i = 0; i < 64; ++i) {
    app.entries.push_back(Entry{7, 1001 + i, EntryType::kNormal, std::string(64, 'x')});
  }
  Message m{42, 1, 2, 7, std::move(app)};
  std::string buf;
  for (auto _ : state) {
    buf.clear();
    encode_message(m, buf);
    auto d = decode_message(buf);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_CodecAppend64x64);

}  // namespace
}  // namespace nori::raft

BENCHMARK_MAIN();
