// TimerSet: a reactor's pending timers, ordered by deadline.
//
// An intrusive red-black tree (Boost.Intrusive multiset) of TimerNodes that
// live inside their owners (a sleeping coroutine's awaitable, a Timer): no
// allocation, insert O(log n), cancel O(1) amortised (unlink by node), earliest
// deadline O(1). Nodes unlink themselves on destruction, so a destroyed
// sleeper can never fire. Single-threaded: owned by one reactor.
#pragma once

#include <boost/intrusive/set.hpp>

#include "runtime/base/clock.h"

namespace nori::runtime {

class TimerNode : public boost::intrusive::set_base_hook<
                      boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
 public:
  using Fire = void (*)(TimerNode*);
  explicit TimerNode(Fire fire) : fire_(fire) {}
  TimerNode(const TimerNode&) = delete;
  TimerNode& operator=(const TimerNode&) = delete;

  base::TimePoint deadline() const { return deadline_; }
  bool armed() const { return is_linked(); }
  void disarm() { unlink(); }

 private:
  friend class TimerSet;
  base::TimePoint deadline_{};
  Fire fire_;
};

class TimerSet {
 public:
  TimerSet() = default;
  TimerSet(const TimerSet&) = delete;
  TimerSet& operator=(const TimerSet&) = delete;
  ~TimerSet() { set_.clear(); }

  // (Re)arms `n` for `deadline`. Equal deadlines fire in arming order.
  void arm(TimerNode& n, base::TimePoint deadline) {
    n.unlink();
    n.deadline_ = deadline;
    set_.insert(n);
  }
  bool empty() const { return set_.empty(); }
  size_t size() const { return set_.size(); }  // O(n): tests and metrics only
  base::TimePoint earliest() const { return set_.begin()->deadline_; }

  // Fires (unlinks, then calls) every timer due at `now`, at most `max`
  // of them; returns how many fired. A callback may arm or disarm any timer.
  size_t fire_expired(base::TimePoint now, size_t max) {
    size_t fired = 0;
    while (fired < max && !set_.empty() && set_.begin()->deadline_ <= now) {
      TimerNode& n = *set_.begin();
      set_.erase(set_.begin());
      ++fired;
      n.fire_(&n);
    }
    return fired;
  }

 private:
  struct ByDeadline {
    bool operator()(const TimerNode& a, const TimerNode& b) const {
      return a.deadline_ < b.deadline_;
    }
  };
  boost::intrusive::multiset<TimerNode, boost::intrusive::compare<ByDeadline>,
                             boost::intrusive::constant_time_size<false>>
      set_;
};

}  // namespace nori::runtime
