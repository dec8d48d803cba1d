#include "runtime/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "runtime/base/assert.h"

namespace nori::runtime::metrics {

namespace {

std::vector<double> one_two_five(double lo, double hi) {
  std::vector<double> v;
  for (double d = lo; d <= hi * 1.0001; d *= 10) {
    v.push_back(d);
    v.push_back(2 * d);
    v.push_back(5 * d);
  }
  return v;
}
std::vector<double> powers_of_four() {
  std::vector<double> v;
  for (double d = 1; d <= 1e12; d *= 4)
    v.push_back(d);
  return v;
}

bool valid_name(const std::string& n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!(alpha || (i > 0 && c >= '0' && c <= '9'))) return false;
  }
  return true;
}

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// {a="x",b="y"} plus an optional extra label (le), or "" when empty.
std::string label_text(const Labels& labels, const char* extra_key = nullptr,
                       const std::string& extra_value = {}) {
  if (labels.empty() && extra_key == nullptr) return {};
  std::string s = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) s += ",";
    first = false;
    s += fmt::format("{}=\"{}\"", k, escape_label(v));
  }
  if (extra_key != nullptr) {
    if (!first) s += ",";
    s += fmt::format("{}=\"{}\"", extra_key, extra_value);
  }
  return s + "}";
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

}  // namespace

const Unit kMillis{1e6, one_two_five(0.001, 100000)};
const Unit kSeconds{1e9, one_two_five(0.000001, 100)};
const Unit kPlain{1, powers_of_four()};

// ---------------------------------------------------------------- histogram

void HistogramSnapshot::record(uint64_t v, uint64_t n) {
  counts_[LogLinear::index(v)] += n;
  count_ += n;
  sum_ += v * n;
  min_ = std::min(min_, v);
  max_ = std::max(max_, v);
}

void HistogramSnapshot::merge(const HistogramSnapshot& o) {
  for (size_t i = 0; i < counts_.size(); ++i)
    counts_[i] += o.counts_[i];
  count_ += o.count_;
  sum_ += o.sum_;
  if (o.count_ > 0) {
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }
}

uint64_t HistogramSnapshot::percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const uint64_t lo = LogLinear::lower(i), hi = LogLinear::upper(i);
      const uint64_t mid = lo + (hi - lo - 1) / 2;
      return std::clamp(mid, min(), max_);
    }
  }
  return max_;
}

uint64_t HistogramSnapshot::count_below(uint64_t bound) const {
  uint64_t n = 0;
  for (size_t i = 0; i < counts_.size() && LogLinear::upper(i) <= bound; ++i)
    n += counts_[i];
  return n;
}

void Histogram::snapshot_into(HistogramSnapshot& out) const {
  uint64_t total = 0;
  for (size_t i = 0; i < LogLinear::kBuckets; ++i) {
    const uint64_t c = counts_[i].get();
    out.counts_[i] += c;
    total += c;
  }
  // Read racily against the writer: use the bucket total as the count so
  // percentiles stay consistent with the buckets read.
  out.count_ += total;
  out.sum_ += sum_.get();
  if (total > 0) {
    out.min_ = std::min(out.min_, min_.get());
    out.max_ = std::max(out.max_, max_.get());
  }
}

// ---------------------------------------------------------------- registry

Registry::Series& Registry::get(const std::string& name, const std::string& help, Type type,
                                const Labels& labels, const Unit* unit) {
  NORI_ASSERT(valid_name(name), "invalid metric name '{}'", name);
  std::lock_guard lk(mu_);
  for (Series& s : series_) {
    if (s.name == name) {
      NORI_ASSERT(s.type == type, "metric '{}' registered with two types", name);
      if (s.labels == labels) {
        s.retired = false;
        return s;
      }
    }
  }
  Series& s = series_.emplace_back();
  s.name = name;
  s.help = help;
  s.type = type;
  s.labels = labels;
  s.unit = unit;
  if (type == Type::kHistogram) s.histogram = std::make_unique<Histogram>();
  return s;
}

void Registry::retire(const std::string& name, const Labels& labels) {
  std::lock_guard lk(mu_);
  for (Series& s : series_) {
    if (s.name != name || s.labels != labels) continue;
    if (s.type == Type::kGauge) s.gauge.set(0);  // registered again, it starts from 0
    s.retired = true;
  }
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& l) {
  return get(name, help, Type::kCounter, l, nullptr).counter;
}
Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& l) {
  return get(name, help, Type::kGauge, l, nullptr).gauge;
}
Histogram& Registry::histogram(const std::string& name, const std::string& help, const Unit& unit,
                               const Labels& l) {
  return *get(name, help, Type::kHistogram, l, &unit).histogram;
}

std::string render_prometheus(std::initializer_list<const Registry*> regs) {
  return render_prometheus(std::vector<const Registry*>(regs));
}

std::string render_prometheus(const std::vector<const Registry*>& regs) {
  struct Merged {
    uint64_t counter = 0;
    int64_t gauge = 0;
    HistogramSnapshot hist;
  };
  struct Family {
    std::string help;
    int type = 0;
    const Unit* unit = nullptr;
    std::map<std::string, std::pair<Labels, Merged>> series;  // by rendered labels
  };
  std::map<std::string, Family> families;
  for (const Registry* r : regs) {
    std::lock_guard lk(r->mu_);
    for (const auto& s : r->series_) {
      if (s.retired) continue;
      Family& f = families[s.name];
      f.help = s.help;
      f.type = static_cast<int>(s.type);
      f.unit = s.unit;
      auto& [labels, m] = f.series[label_text(s.labels)];
      labels = s.labels;
      switch (s.type) {
        case Registry::Type::kCounter:
          m.counter += s.counter.value();
          break;
        case Registry::Type::kGauge:
          m.gauge += s.gauge.value();
          break;
        case Registry::Type::kHistogram:
          s.histogram->snapshot_into(m.hist);
          break;
      }
    }
  }
  std::string out;
  static const char* kTypeNames[] = {"counter", "gauge", "histogram"};
  for (const auto& [name, f] : families) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, kTypeNames[f.type]);
    for (const auto& [ltext, entry] : f.series) {
      const auto& [labels, m] = entry;
      if (f.type == 0) {
        out += fmt::format("{}{} {}\n", name, ltext, m.counter);
      } else if (f.type == 1) {
        out += fmt::format("{}{} {}\n", name, ltext, m.gauge);
      } else {
        const double div = f.unit->divisor;
        for (double b : f.unit->bounds) {
          // Values <= b (in units): all buckets whose upper bound <= b*div + 1.
          const uint64_t raw = static_cast<uint64_t>(std::floor(b * div)) + 1;
          out += fmt::format("{}_bucket{} {}\n", name, label_text(labels, "le", number(b)),
                             m.hist.count_below(raw));
        }
        out +=
            fmt::format("{}_bucket{} {}\n", name, label_text(labels, "le", "+Inf"), m.hist.count());
        out += fmt::format("{}_sum{} {}\n", name, ltext,
                           number(static_cast<double>(m.hist.sum()) / div));
        out += fmt::format("{}_count{} {}\n", name, ltext, m.hist.count());
      }
    }
  }
  return out;
}

}  // namespace nori::runtime::metrics
