// Histogram helpers of nori-bench: differences between snapshots (per-second
// figures from cumulative histograms) and bucket lists as JSON.
#pragma once

#include <nlohmann/json.hpp>

#include "runtime/metrics.h"

namespace nori::raft::tools {

using runtime::metrics::HistogramSnapshot;
using runtime::metrics::LogLinear;

// a - b, bucket by bucket (b must be an earlier state of the same histogram).
inline HistogramSnapshot diff(const HistogramSnapshot& a, const HistogramSnapshot& b) {
  HistogramSnapshot out;
  for (size_t i = 0; i < a.buckets().size(); ++i) {
    const uint64_t n = a.buckets()[i] - b.buckets()[i];
    if (n != 0)
      out.record(LogLinear::lower(i) + (LogLinear::upper(i) - LogLinear::lower(i)) / 2, n);
  }
  return out;
}

// Successive differences of a cumulative histogram.
class Interval {
 public:
  HistogramSnapshot next(const HistogramSnapshot& now) {
    HistogramSnapshot d = diff(now, prev_);
    prev_ = now;
    return d;
  }

 private:
  HistogramSnapshot prev_;
};

// [[bucket, count], ...] -> merged into h (bucket midpoints).
inline void merge_json(const nlohmann::json& buckets, HistogramSnapshot& h) {
  for (const auto& b : buckets) {
    const size_t i = b[0].get<size_t>();
    const uint64_t n = b[1].get<uint64_t>();
    if (i < LogLinear::kBuckets && n > 0)
      h.record(LogLinear::lower(i) + (LogLinear::upper(i) - LogLinear::lower(i)) / 2, n);
  }
}

}  // namespace nori::raft::tools
