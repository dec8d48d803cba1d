// Metrics primitives: Counter, Gauge, a log-linear latency Histogram, and a
// Registry that renders them in the Prometheus text exposition format.
//
// Ownership and threads: each core (or component) owns its own Registry and
// is the single writer of its metrics (updates are relaxed atomic load+store,
// no locked instructions). Any thread may scrape: `render_prometheus` reads
// several registries (one per core) and sums series with the same name and
// labels, merging histograms bucket by bucket. Registration takes a mutex
// (rare, at start-up); updates never do.
//
//   metrics::Registry reg;                      // per core
//   auto& commits = reg.histogram("raft_commit_ms", "Propose to commit", metrics::kMillis);
//   commits.record(base::Duration(t1 - t0));    // nanoseconds in, ms out
//   std::string text = metrics::render_prometheus({&reg0, &reg1});
//
// Histogram: values are non-negative integers (nanoseconds for latencies).
// Buckets are exact below 32 and then 32 per power of two, so a value's
// bucket is at most 1/32 (3.1%) wider than its lower bound: percentiles are
// within 3.1% (midpoint estimate: 1.6%) of the exact order statistic over
// 1 ns .. 2^43 ns (~2.4 hours); larger values land in the top bucket. About
// 10 KiB per histogram.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/base/clock.h"

namespace nori::runtime::metrics {

// Single-writer relaxed cell: the owner updates, anyone reads.
class Cell {
 public:
  void add(uint64_t n) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void set(uint64_t v) { v_.store(v, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Counter {
 public:
  void inc(uint64_t n = 1) { c_.add(n); }
  uint64_t value() const { return c_.get(); }

 private:
  Cell c_;
};

class Gauge {
 public:
  void set(int64_t v) { c_.set(static_cast<uint64_t>(v)); }
  void add(int64_t d) { c_.add(static_cast<uint64_t>(d)); }  // two's complement wraps correctly
  int64_t value() const { return static_cast<int64_t>(c_.get()); }

 private:
  Cell c_;
};

// Bucket layout, shared by Histogram and HistogramSnapshot.
struct LogLinear {
  static constexpr unsigned kSubBucketBits = 5;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;  // 32 per octave
  static constexpr unsigned kMaxBits = 43;  // values >= 2^43 go to the top bucket
  static constexpr size_t kBuckets = (kMaxBits - kSubBucketBits + 1) * kSubBuckets;
  static_assert(kBuckets == 1248);

  static size_t index(uint64_t v) {
    if (v < kSubBuckets) return static_cast<size_t>(v);
    const unsigned e = 63u - static_cast<unsigned>(std::countl_zero(v));  // >= kSubBucketBits
    if (e >= kMaxBits) return kBuckets - 1;
    const uint64_t sub = (v >> (e - kSubBucketBits)) & (kSubBuckets - 1);
    return static_cast<size_t>((e - kSubBucketBits + 1) * kSubBuckets + sub);
  }
  static uint64_t lower(size_t i) {
    if (i < kSubBuckets) return i;
    const unsigned e = static_cast<unsigned>(i / kSubBuckets) + kSubBucketBits - 1;
    const uint64_t sub = i % kSubBuckets;
    return (kSubBuckets + sub) << (e - kSubBucketBits);
  }
  // Exclusive upper bound.
  static uint64_t upper(size_t i) {
    if (i < kSubBuckets) return i + 1;
    const unsigned e = static_cast<unsigned>(i / kSubBuckets) + kSubBucketBits - 1;
    return lower(i) + (uint64_t{1} << (e - kSubBucketBits));
  }
};

// A plain, mergeable copy of a histogram's state (not thread-safe).
class HistogramSnapshot {
 public:
  HistogramSnapshot() : counts_(LogLinear::kBuckets, 0) {}

  void record(uint64_t v, uint64_t n = 1);
  void merge(const HistogramSnapshot& o);

  uint64_t count() const { return count_; }
  uint64_t sum() const { return sum_; }
  uint64_t max() const { return max_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  // The q-quantile (q in [0, 1]): midpoint of the bucket holding the
  // ceil(q * count)-th smallest value, clamped to [min, max]. 0 when empty.
  uint64_t percentile(double q) const;
  // Number of recorded values < bound (exact at bucket boundaries, else the
  // buckets entirely below bound).
  uint64_t count_below(uint64_t bound) const;
  const std::vector<uint64_t>& buckets() const { return counts_; }

 private:
  friend class Histogram;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

class Histogram {
 public:
  Histogram() : counts_(std::make_unique<Cell[]>(LogLinear::kBuckets)) { min_.set(UINT64_MAX); }

  void record(uint64_t v) {
    counts_[LogLinear::index(v)].add(1);
    count_.add(1);
    sum_.add(v);
    if (v > max_.get()) max_.set(v);
    if (v < min_.get()) min_.set(v);
  }
  void record(base::Duration d) { record(static_cast<uint64_t>(d.count() < 0 ? 0 : d.count())); }
  uint64_t count() const { return count_.get(); }
  // Adds this histogram's current state to `out`.
  void snapshot_into(HistogramSnapshot& out) const;
  HistogramSnapshot snapshot() const {
    HistogramSnapshot s;
    snapshot_into(s);
    return s;
  }

 private:
  std::unique_ptr<Cell[]> counts_;
  Cell count_;
  Cell sum_;
  Cell max_;
  Cell min_;
};

// Rendering unit of a histogram: recorded integers are divided by it.
struct Unit {
  double divisor;
  // Bucket bounds exported as `le` labels, in rendered units (ascending).
  std::vector<double> bounds;
};
// Nanoseconds rendered as milliseconds / seconds, with 1-2-5 bounds from 1 us to 100 s.
extern const Unit kMillis;
extern const Unit kSeconds;
// Plain integers (counts, bytes) with power-of-4 bounds.
extern const Unit kPlain;

using Labels = std::vector<std::pair<std::string, std::string>>;

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Returns the metric registered under (name, labels), creating it. Names
  // follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*); re-registering the same
  // name with another type is an invariant violation.
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, const Unit& unit,
                       const Labels& labels = {});
  // The series (name, labels) is no longer rendered (a removed group's
  // gauge), until registered again. Its memory stays (addresses handed out
  // are stable); callers bound how many such series they ever create.
  void retire(const std::string& name, const Labels& labels);

 private:
  friend std::string render_prometheus(std::initializer_list<const Registry*> regs);
  friend std::string render_prometheus(const std::vector<const Registry*>& regs);
  enum class Type : uint8_t { kCounter, kGauge, kHistogram };
  struct Series {
    std::string name;
    std::string help;
    Type type;
    Labels labels;
    const Unit* unit = nullptr;
    Counter counter;
    Gauge gauge;
    std::unique_ptr<Histogram> histogram;
    bool retired = false;
  };
  Series& get(const std::string& name, const std::string& help, Type type, const Labels& labels,
              const Unit* unit);

  mutable std::mutex mu_;  // reactor-ok: registration and scrape only, never per sample
  // One Series per metric name + labels, registered at start-up; a deque for
  // stable addresses.
  std::deque<Series> series_;  // reactor-ok: bounded by the metric names
};

// Prometheus text format (version 0.0.4) of the given registries, series with
// equal name and labels summed/merged. Families sorted by name.
std::string render_prometheus(const std::vector<const Registry*>& regs);
std::string render_prometheus(std::initializer_list<const Registry*> regs);

}  // namespace nori::runtime::metrics
