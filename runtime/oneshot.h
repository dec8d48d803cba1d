// OneShot<T>: a value one coroutine on this reactor waits for, resolved
// exactly once (a proposal's outcome, a forwarded request's reply).
//
//   OneShot<Result<Index>> done;              // lives on the waiter's frame
//   pending_[id] = &done;                     // the resolver finds it later
//   auto r = co_await done;                   // suspends until resolve()
//   ... elsewhere on the same reactor: pending_[id]->resolve(std::move(r));
//
// Single reactor, no cross-core use: the resolver must run on the waiter's
// reactor. Resolving twice is a broken invariant (asserted). The waiter's
// frame owns the object; the resolver must drop its pointer once resolved.
#pragma once

#include <coroutine>
#include <optional>
#include <utility>

#include "runtime/base/assert.h"
#include "runtime/reactor.h"
#include "runtime/task.h"

namespace nori::runtime {

template <typename T>
class OneShot {
 public:
  OneShot() = default;
  OneShot(const OneShot&) = delete;
  OneShot& operator=(const OneShot&) = delete;

  void resolve(T v) {
    NORI_ASSERT(!value_.has_value(), "one-shot resolved twice");
    value_.emplace(std::move(v));
    if (waiting_) Reactor::here().schedule(sched_);
  }
  bool resolved() const { return value_.has_value(); }

  bool await_ready() const noexcept { return value_.has_value(); }
  void await_suspend(std::coroutine_handle<> h) {
    sched_.handle = h;
    waiting_ = true;
  }
  T await_resume() { return std::move(*value_); }

 private:
  Schedulable sched_;
  std::optional<T> value_;
  bool waiting_ = false;
};

}  // namespace nori::runtime
