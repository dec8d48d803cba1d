// The project's one clock: CLOCK_BOOTTIME, which keeps counting while the
// machine is suspended, so a lease measured on it cannot silently stretch
// across a suspend (DESIGN.md, "Time").
//
// Read it fresh where a decision depends on it (a lease check): never cache a
// loop-iteration time for such decisions. The pure Raft core never calls it;
// drivers pass `now()` in, and the simulator passes simulated times of the
// same type.
//
//   base::TimePoint t0 = base::BootClock::now();
//   ... ; auto waited = base::BootClock::now() - t0;
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>

namespace nori::base {

struct BootClock {
  using rep = int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<BootClock, duration>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_BOOTTIME, &ts);
    return time_point(duration(int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec));
  }
};

using Duration = std::chrono::nanoseconds;
using TimePoint = BootClock::time_point;

inline constexpr int64_t to_ns(Duration d) {
  return d.count();
}
inline constexpr int64_t to_ns(TimePoint t) {
  return t.time_since_epoch().count();
}
inline constexpr TimePoint time_from_ns(int64_t ns) {
  return TimePoint(Duration(ns));
}

// Thread CPU time and process CPU time (for measurements, not decisions).
inline Duration thread_cpu_time() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return Duration(int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec);
}

}  // namespace nori::base
