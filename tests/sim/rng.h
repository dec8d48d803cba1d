// Deterministic pseudo-random numbers for the simulator.
//
// One seed drives a whole simulation; every random choice (latencies, losses,
// faults, client operations, election-timeout seeds) comes from a Rng derived
// from it, so a seed replays exactly. std:: distributions are avoided on
// purpose: their output is implementation-defined, this is not.
//
// Not thread-safe; one per simulation (or per independent stream).
#pragma once

#include <cmath>
#include <cstdint>

#include "runtime/base/assert.h"

namespace nori::sim {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    // SplitMix64 expands the seed into xoshiro256**'s state (never all zero).
    uint64_t x = seed;
    for (uint64_t& s : s_)
      s = splitmix(x);
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [lo, hi] (inclusive).
  int64_t uniform(int64_t lo, int64_t hi) {
    NORI_ASSERT(lo <= hi, "uniform({}, {})", lo, hi);
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    if (span == 0) return static_cast<int64_t>(next());  // the full 64-bit range
    return lo + static_cast<int64_t>(next() % span);
  }
  // Uniform in [0, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return unit() < p; }
  // Exponentially distributed with the given mean.
  double exponential(double mean) { return -mean * std::log(1.0 - unit()); }
  // A new independent stream (for a component whose draws must not shift
  // when another component draws more or fewer numbers).
  Rng fork() { return Rng(next()); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

}  // namespace nori::sim
