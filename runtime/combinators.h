// Combinators over tasks on one reactor: when_all and with_timeout.
//
//   auto [a, b] = co_await when_all(fetch(x), fetch(y));        // tuple
//   std::vector<int> v = co_await when_all(std::move(tasks));   // vector
//   base::Result<size_t> n = co_await with_timeout(100ms, read_frame(fd));
//
// when_all starts every child at once (interleaved on this reactor, in the
// awaiter's CancelScope), waits for all of them, and rethrows the first
// exception after all have finished; a void child yields detail::Unit.
//
// with_timeout runs the task in a child CancelScope and cancels that scope
// when the deadline passes. Cancellation is cooperative: the task's pending
// I/O, sleeps and nested scopes end with kCancelled, and the task unwinds on
// its own, so with_timeout returns only once the task has finished (its
// buffers are safe to free). Result: the task's own value if it completed
// (even after the deadline: the operation took effect), kTimedOut if the
// deadline passed and the task failed with kCancelled (or, for a void task,
// whenever the deadline passed), any other error as it is.
#pragma once

#include <exception>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "runtime/base/result.h"
#include "runtime/cancel.h"
#include "runtime/reactor.h"
#include "runtime/runtime.h"
#include "runtime/task.h"

namespace nori::runtime {

namespace detail {

struct WhenAllLatch {
  size_t remaining = 0;
  Schedulable waiter;
  bool waiting = false;
  void arrive() {
    NORI_ASSERT(remaining > 0);
    if (--remaining == 0 && waiting) Reactor::here().schedule(waiter);
  }
  struct Wait {
    WhenAllLatch* latch;
    bool await_ready() const noexcept { return latch->remaining == 0; }
    void await_suspend(std::coroutine_handle<> h) {
      latch->waiter.handle = h;
      latch->waiting = true;
    }
    void await_resume() const noexcept {}
  };
};

template <typename T>
Task<void> when_all_child(Task<T> t, std::optional<Stored<T>>& out, std::exception_ptr& exc,
                          WhenAllLatch& latch) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(t);
      out.emplace();
    } else {
      out.emplace(co_await std::move(t));
    }
  } catch (...) {
    exc = std::current_exception();
  }
  latch.arrive();
}

// Starts a (non-detached) task through the ready queue; it runs in `scope`.
inline void start_child(Task<void>& t, CancelScope* scope) {
  t.set_scope(scope);
  Schedulable& s = t.handle().promise().start_entry();
  s.handle = t.handle();
  Reactor::here().schedule(s);
}

template <typename T>
struct AsResult {
  using type = base::Result<T>;
};
template <typename U>
struct AsResult<base::Result<U>> {
  using type = base::Result<U>;
};
template <>
struct AsResult<void> {
  using type = base::Status;
};

}  // namespace detail

template <typename T>
Task<std::vector<detail::Stored<T>>> when_all(std::vector<Task<T>> tasks) {
  CancelScope* scope = co_await current_scope();
  const size_t n = tasks.size();
  detail::WhenAllLatch latch;
  latch.remaining = n;
  std::vector<std::optional<detail::Stored<T>>> results(n);
  std::vector<std::exception_ptr> errors(n);
  std::vector<Task<void>> children;
  children.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    children.push_back(detail::when_all_child(std::move(tasks[i]), results[i], errors[i], latch));
    detail::start_child(children.back(), scope);
  }
  co_await detail::WhenAllLatch::Wait{&latch};
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  std::vector<detail::Stored<T>> out;
  out.reserve(n);
  for (auto& r : results)
    out.push_back(std::move(*r));
  co_return out;
}

namespace detail {
template <typename... Ts, size_t... I>
Task<std::tuple<Stored<Ts>...>> when_all_tuple(std::index_sequence<I...>, Task<Ts>... tasks) {
  CancelScope* scope = co_await current_scope();
  WhenAllLatch latch;
  latch.remaining = sizeof...(Ts);
  std::tuple<std::optional<Stored<Ts>>...> results;
  std::exception_ptr errors[sizeof...(Ts)];
  Task<void> children[] = {
      when_all_child(std::move(tasks), std::get<I>(results), errors[I], latch)...};
  for (auto& c : children)
    start_child(c, scope);
  co_await WhenAllLatch::Wait{&latch};
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  co_return std::tuple<Stored<Ts>...>(std::move(*std::get<I>(results))...);
}
}  // namespace detail

template <typename... Ts>
Task<std::tuple<detail::Stored<Ts>...>> when_all(Task<Ts>... tasks) {
  static_assert(sizeof...(Ts) > 0);
  return detail::when_all_tuple(std::index_sequence_for<Ts...>{}, std::move(tasks)...);
}

template <typename T>
Task<typename detail::AsResult<T>::type> with_timeout(base::Duration timeout, Task<T> task) {
  using R = typename detail::AsResult<T>::type;
  CancelScope* parent = co_await current_scope();
  CancelScope scope(parent);
  bool fired = false;
  Timer timer([&] {
    fired = true;
    scope.cancel();
  });
  timer.arm_in(timeout);
  task.set_scope(&scope);
  auto timed_out = [&] {
    return base::Error(base::ErrorKind::kTimedOut,
                       fmt::format("timed out after {} ns", base::to_ns(timeout)));
  };
  if constexpr (std::is_void_v<T>) {
    co_await std::move(task);
    timer.cancel();
    if (fired) co_return R(timed_out());
    co_return R();
  } else {
    T value = co_await std::move(task);
    timer.cancel();
    if constexpr (std::is_same_v<T, R>) {
      if (fired && !value.ok() && value.error().kind() == base::ErrorKind::kCancelled) {
        co_return R(timed_out());
      }
      co_return value;
    } else {
      co_return R(std::move(value));
    }
  }
}

}  // namespace nori::runtime
