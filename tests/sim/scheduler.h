// The simulator's event loop: one queue of timed callbacks over simulated
// real time (nanoseconds since the start of the run).
//
// Events at the same instant run in the order they were scheduled (a sequence
// number breaks ties), which keeps a seed's run reproducible. Single-threaded.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "runtime/base/assert.h"

namespace nori::sim {

using SimTime = int64_t;  // simulated real time, ns since the start of the run

inline constexpr SimTime kMillisecond = 1'000'000;
inline constexpr SimTime kSecond = 1'000'000'000;

class Scheduler {
 public:
  SimTime now() const { return now_; }

  void at(SimTime when, std::function<void()> fn) {
    NORI_ASSERT(when >= now_, "event scheduled in the past: {} < {}", when, now_);
    queue_.push(Item{when, seq_++, std::move(fn)});
  }
  void after(SimTime delay, std::function<void()> fn) { at(now_ + delay, std::move(fn)); }

  // Runs events up to and including `until`; returns false if the queue ran
  // dry first. Time ends at `until` either way.
  bool run_until(SimTime until) {
    while (!queue_.empty() && queue_.top().when <= until) {
      Item item = std::move(const_cast<Item&>(queue_.top()));
      queue_.pop();
      now_ = item.when;
      ++executed_;
      item.fn();
    }
    now_ = until;
    return !queue_.empty();
  }

  uint64_t executed() const { return executed_; }

 private:
  struct Item {
    SimTime when;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Item& o) const { return when != o.when ? when > o.when : seq > o.seq; }
  };
  SimTime now_ = 0;
  uint64_t seq_ = 0;
  uint64_t executed_ = 0;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> queue_;
};

}  // namespace nori::sim
