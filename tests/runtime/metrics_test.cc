#include "runtime/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace nori::runtime::metrics {
namespace {

TEST(Histogram, BucketBoundsTileTheRangeWithoutGaps) {
  for (size_t i = 0; i + 1 < LogLinear::kBuckets; ++i) {
    ASSERT_EQ(LogLinear::upper(i), LogLinear::lower(i + 1)) << i;
    ASSERT_EQ(LogLinear::index(LogLinear::lower(i)), i);
    ASSERT_EQ(LogLinear::index(LogLinear::upper(i) - 1), i);
  }
  EXPECT_EQ(LogLinear::index(UINT64_MAX), LogLinear::kBuckets - 1);
}

TEST(Histogram, PercentilesStayWithinBoundedRelativeErrorFromNanosToMinutes) {
  std::mt19937_64 rng(1);
  std::vector<uint64_t> values;
  HistogramSnapshot h;
  // Log-uniform over 1 ns .. ~10 minutes.
  std::uniform_real_distribution<double> exp(0, std::log(600e9));
  for (int i = 0; i < 200000; ++i) {
    uint64_t v = static_cast<uint64_t>(std::exp(exp(rng)));
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    size_t rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(q * values.size())));
    double exact = static_cast<double>(values[rank - 1]);
    double got = static_cast<double>(h.percentile(q));
    EXPECT_LE(std::abs(got - exact), exact / 32 + 1) << "q=" << q;
  }
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.min(), values.front());
}

TEST(Histogram, MergingPerCoreHistogramsEqualsRecordingIntoOne) {
  Histogram a, b;
  HistogramSnapshot all;
  std::mt19937_64 rng(2);
  for (int i = 0; i < 10000; ++i) {
    uint64_t v = rng() % 5'000'000;
    (i % 2 ? a : b).record(v);
    all.record(v);
  }
  HistogramSnapshot merged = a.snapshot();
  merged.merge(b.snapshot());
  EXPECT_EQ(merged.buckets(), all.buckets());
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.sum(), all.sum());
  EXPECT_EQ(merged.percentile(0.99), all.percentile(0.99));
}

TEST(Histogram, EmptyHistogramReportsZeros) {
  HistogramSnapshot h;
  EXPECT_EQ(h.percentile(0.5), 0u);
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
}

TEST(Prometheus, SeriesFromAllCoresAreSummedInTextFormat) {
  Registry core0, core1;
  core0.counter("raft_elections_total", "Elections started").inc(2);
  core1.counter("raft_elections_total", "Elections started").inc(3);
  core0.gauge("raft_role", "Role", {{"group", "7"}}).set(2);
  auto& h0 = core0.histogram("raft_commit_ms", "Propose to commit", kMillis);
  auto& h1 = core1.histogram("raft_commit_ms", "Propose to commit", kMillis);
  h0.record(base::Duration(1'500'000));   // 1.5 ms
  h1.record(base::Duration(30'000'000));  // 30 ms
  std::string text = render_prometheus({&core0, &core1});
  EXPECT_NE(text.find("# TYPE raft_elections_total counter\nraft_elections_total 5\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("raft_role{group=\"7\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE raft_commit_ms histogram\n"), std::string::npos);
  EXPECT_NE(text.find("raft_commit_ms_bucket{le=\"1\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("raft_commit_ms_bucket{le=\"2\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("raft_commit_ms_bucket{le=\"50\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("raft_commit_ms_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("raft_commit_ms_count 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("raft_commit_ms_sum 31.5\n"), std::string::npos) << text;
}

TEST(Prometheus, RetiredSeriesLeavesTheScrapeUntilRegisteredAgain) {
  // A removed group's role gauge must not be reported as a live follower.
  Registry r;
  r.gauge("raft_role", "Role", {{"group", "7"}}).set(2);
  r.gauge("raft_role", "Role", {{"group", "8"}}).set(1);
  r.retire("raft_role", {{"group", "7"}});
  std::string text = render_prometheus({&r});
  EXPECT_EQ(text.find("group=\"7\""), std::string::npos) << text;
  EXPECT_NE(text.find("raft_role{group=\"8\"} 1\n"), std::string::npos) << text;
  r.retire("raft_role", {{"group", "8"}});
  EXPECT_EQ(render_prometheus({&r}).find("raft_role"), std::string::npos)
      << "a family with no live series still printed its header";
  // The group is created again: the series is back, from 0.
  Gauge& g = r.gauge("raft_role", "Role", {{"group", "7"}});
  EXPECT_NE(render_prometheus({&r}).find("raft_role{group=\"7\"} 0\n"), std::string::npos);
  g.set(2);
  EXPECT_NE(render_prometheus({&r}).find("raft_role{group=\"7\"} 2\n"), std::string::npos);
}

TEST(Prometheus, LabelValuesAreEscaped) {
  Registry r;
  r.counter("x_total", "x", {{"path", "a\"b\\c"}}).inc();
  EXPECT_NE(render_prometheus({&r}).find("x_total{path=\"a\\\"b\\\\c\"} 1"), std::string::npos);
}

}  // namespace
}  // namespace nori::runtime::metrics
