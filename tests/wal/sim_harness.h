// The simulated-disk harness of the WAL tests: a SimWal on a SimDisk plus
// the reference model (tests/wal/model.h) of every operation applied, and the
// check that a reopened log holds exactly the state after some prefix of the
// operations that includes every acknowledged one. Header-only, test code.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/wal/model.h"
#include "wal/sim_wal.h"

namespace nori::wal::testing {

inline WalOptions small_options() {
  WalOptions o;
  o.write_bytes_max = 16 << 10;
  o.segment_bytes = 128 << 10;
  o.writes_in_flight_max = 2;
  o.cache_bytes_max = 32 << 10;
  o.segments_ahead = 1;
  o.free_segments_max = 2;
  return o;
}

inline std::string make_payload(std::mt19937_64& rng, uint64_t group, uint64_t index,
                                size_t max_len) {
  std::string p = fmt::format("g{}i{}:", group, index);
  const size_t extra = rng() % (max_len + 1);
  for (size_t i = 0; i < extra; ++i)
    p.push_back(static_cast<char>('a' + rng() % 26));
  return p;
}

// A log on a SimDisk, with the model of everything applied to it.
struct Harness {
  SimDisk disk;
  WalOptions opts = small_options();
  std::unique_ptr<SimWal> wal;
  ModelState base;      // state at open
  std::vector<Op> ops;  // applied since open
  std::vector<Position> pos;

  base::Status open() {
    auto w = SimWal::open(disk, opts, 0xfeed);
    if (!w) return w.error();
    wal = std::move(*w);
    ops.clear();
    pos.clear();
    return {};
  }
  LogEngine& e() { return wal->engine(); }

  base::Status append(uint64_t g, std::vector<uint64_t> terms, std::vector<std::string> payloads) {
    const GroupLog* gl = e().group(g);
    const uint64_t first = gl ? gl->last_index() + 1 : 1;
    std::vector<std::string_view> views(payloads.begin(), payloads.end());
    auto p = e().append_entries(g, first, terms, views);
    if (!p) return p.error();
    Op op{Op::kAppend, g, first, 0, std::move(terms), std::move(payloads), {}};
    record(std::move(op), *p);
    return {};
  }
  base::Status append_random(std::mt19937_64& rng, uint64_t g, size_t max_len = 200) {
    const GroupLog* gl = e().group(g);
    const uint64_t first = gl ? gl->last_index() + 1 : 1;
    const size_t n = 1 + rng() % 4;
    std::vector<uint64_t> terms;
    std::vector<std::string> payloads;
    const uint64_t t0 = gl ? std::max<uint64_t>(gl->hard_state().term, 1) : 1;
    for (size_t k = 0; k < n; ++k) {
      terms.push_back(t0 + (k == n - 1 && rng() % 5 == 0 ? 1 : 0));
      payloads.push_back(make_payload(rng, g, first + k, max_len));
    }
    return append(g, std::move(terms), std::move(payloads));
  }
  base::Status hard_state(uint64_t g, HardState hs) {
    auto p = e().persist_hard_state(g, hs);
    if (!p) return p.error();
    Op op{Op::kHardState, g, 0, 0, {}, {}, hs};
    record(std::move(op), *p);
    return {};
  }
  base::Status truncate(uint64_t g, uint64_t last_kept) {
    auto p = e().truncate_suffix(g, last_kept);
    if (!p) return p.error();
    record(Op{Op::kTruncate, g, last_kept, 0, {}, {}, {}}, *p);
    return {};
  }
  base::Status compact(uint64_t g, uint64_t index, uint64_t term) {
    auto p = e().mark_compacted(g, index, term);
    if (!p) return p.error();
    record(Op{Op::kCompact, g, index, term, {}, {}, {}}, *p);
    return {};
  }
  base::Status reset(uint64_t g, uint64_t index, uint64_t term) {
    auto p = e().reset_group(g, index, term);
    if (!p) return p.error();
    record(Op{Op::kReset, g, index, term, {}, {}, {}}, *p);
    return {};
  }
  void record(Op op, Position p) {
    ops.push_back(std::move(op));
    pos.push_back(p);
  }

  ModelState model_after(size_t n) const {
    ModelState s = base;
    for (size_t i = 0; i < n; ++i)
      apply_op(s, ops[i]);
    return testing::normalized(s);
  }

  ModelState disk_state(const GroupMap& groups) {
    std::map<uint64_t, std::string> files;
    return testing::state_of(groups, [&](const EntryLoc& l) {
      auto it = files.find(l.seq);
      if (it == files.end()) it = files.emplace(l.seq, disk.read(segment_file_name(l.seq))).first;
      return it->second.substr(l.offset, l.len);
    });
  }
};

// Opens (recovers) again after a crash or restart, and checks the recovered
// state is the state after some prefix of ops that includes every op whose
// position was durable.
inline void crash_reopen_check(Harness& h, Position durable, std::mt19937_64* crash_rng,
                               size_t* matched_prefix = nullptr) {
  size_t acked = 0;
  while (acked < h.pos.size() && h.pos[acked] <= durable)
    ++acked;
  std::vector<Op> ops = h.ops;
  ModelState base = h.base;
  if (crash_rng) h.disk.crash(*crash_rng);
  h.wal.reset();
  auto st = h.open();
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  ModelState got = h.disk_state(h.wal->recovery().groups);
  ModelState s = base;
  for (size_t i = 0; i < acked; ++i)
    apply_op(s, ops[i]);
  size_t p = acked;
  while (testing::normalized(s) != got && p < ops.size())
    apply_op(s, ops[p++]);
  ASSERT_EQ(testing::normalized(s), got)
      << "recovered state is not the state after any prefix of " << ops.size()
      << " ops including the " << acked << " acknowledged ones";
  h.base = got;
  if (matched_prefix) *matched_prefix = p;
}

// Appends n entries of one term to group g at its next index (payloads of
// `len` bytes naming group, index and term); a full buffer is flushed once.
inline void append_n(Harness& h, uint64_t g, int n, uint64_t term, size_t len = 100) {
  for (int k = 0; k < n; ++k) {
    const GroupLog* gl = h.e().group(g);
    const uint64_t i = gl ? gl->last_index() + 1 : 1;
    std::string p = fmt::format("g{}i{}t{}:", g, i, term);
    p.resize(std::max(p.size(), len), '.');
    auto st = h.append(g, {term}, {p});
    if (!st.ok() && st.error().kind() == base::ErrorKind::kBusy) {
      ASSERT_TRUE(h.wal->flush_all().ok());
      st = h.append(g, {term}, {p});
    }
    ASSERT_TRUE(st.ok()) << st.error().to_string();
  }
}

}  // namespace nori::wal::testing
