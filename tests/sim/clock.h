// A simulated per-node clock: what CLOCK_BOOTTIME reads on one node as a
// function of simulated real time.
//
// local(t) = origin + offset + integral of (1 + rate) dt, with the rate (drift,
// in ppm) piecewise constant: set_drift() changes it from the current instant
// on, so reading stays continuous and monotonic. The offset (which matters for
// nothing duration-based, but is modelled since a wrong design would use it)
// is fixed at creation; the drift is what lease safety depends on, and the
// simulator keeps it within the configured bound unless a test breaks it on
// purpose.
#pragma once

#include <cstdint>

#include "runtime/base/clock.h"
#include "tests/sim/scheduler.h"

namespace nori::sim {

class SimClock {
 public:
  // Every clock starts far from zero so that negative offsets stay positive.
  static constexpr int64_t kOrigin = 1000 * kSecond;

  SimClock(int64_t offset_ns, double drift_ppm) : anchor_local_(kOrigin + offset_ns) {
    rate_ppm_ = drift_ppm;
  }

  // The node's clock reading at simulated real time `t` (t >= the last
  // set_drift time).
  base::TimePoint local(SimTime t) const {
    const double elapsed = static_cast<double>(t - anchor_real_);
    return base::time_from_ns(anchor_local_ +
                              static_cast<int64_t>(elapsed * (1.0 + rate_ppm_ * 1e-6)));
  }

  // The earliest real time at or after `from` when the local clock reads at
  // least `target` (for scheduling a node's timers), assuming the current rate.
  SimTime real_at(base::TimePoint target, SimTime from) const {
    const int64_t local_delta = base::to_ns(target) - anchor_local_;
    SimTime t = anchor_real_ +
                static_cast<SimTime>(static_cast<double>(local_delta) / (1.0 + rate_ppm_ * 1e-6));
    while (local(t) < target)
      ++t;  // rounding
    return t < from ? from : t;
  }

  void set_drift(SimTime now, double drift_ppm) {
    anchor_local_ = base::to_ns(local(now));
    anchor_real_ = now;
    rate_ppm_ = drift_ppm;
  }
  double drift_ppm() const { return rate_ppm_; }

 private:
  SimTime anchor_real_ = 0;
  int64_t anchor_local_;
  double rate_ppm_ = 0;
};

}  // namespace nori::sim
