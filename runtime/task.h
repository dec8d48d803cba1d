// Task<T>: the project's unit of asynchronous work, a lazy C++20 coroutine.
//
// A Task does nothing until it is awaited (`co_await f()`) or handed to
// `spawn` (reactor.h). Awaiting transfers control symmetrically into the child
// and back (no stack growth for deep await chains). A Task is move-only and
// owns its coroutine frame: destroying a Task that has not finished destroys
// the frame, and every awaitable in this runtime is safe to destroy while
// suspended (I/O is cancelled in the kernel and waited for, timers and ready
// queue entries unlink themselves), so no completion ever resumes a destroyed
// coroutine.
//
// Threading: a Task runs on the reactor that resumed it, and is only touched
// by that reactor's thread. Exceptions thrown by the body are rethrown at the
// `co_await` (expected failures are base::Result values, not exceptions).
//
//   Task<int> answer() { co_return 42; }
//   Task<base::Status> caller() { int v = co_await answer(); ... co_return {}; }
//
// Cancellation: every Task carries the CancelScope (cancel.h) it runs in; an
// awaited child inherits its parent's scope unless it was given one.
#pragma once

#include <boost/intrusive/list.hpp>
#include <concepts>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/base/assert.h"

namespace nori::runtime {

class CancelScope;

// An entry of a reactor's ready queue, embedded in the object that owns the
// suspended coroutine (an awaitable or a promise). The hook unlinks itself on
// destruction, so the ready queue never holds a handle to a destroyed frame.
using ReadyHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
struct Schedulable : ReadyHook {
  std::coroutine_handle<> handle;
};

template <typename T = void>
class Task;

namespace detail {

class PromiseBase {
 public:
  std::suspend_always initial_suspend() noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      PromiseBase& p = h.promise();
      if (p.detached_done_ != nullptr) {
        // A spawned task: nobody awaits it, so it frees itself. The callback
        // runs after the frame is gone (it may end the reactor's gate).
        if (p.exception_) {
          try {
            std::rethrow_exception(p.exception_);
          } catch (const std::exception& e) {
            NORI_PANIC("spawned task threw: {}", e.what());
          } catch (...) {
            NORI_PANIC("spawned task threw a non-std exception");
          }
        }
        auto done = p.detached_done_;
        void* ctx = p.detached_ctx_;
        h.destroy();
        done(ctx);
        return std::noop_coroutine();
      }
      if (p.continuation_) return p.continuation_;
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  CancelScope* scope() const { return scope_; }
  void set_scope(CancelScope* s) { scope_ = s; }

  // Used by Reactor::spawn: the frame frees itself at the end and then calls
  // done(ctx). `start` is the ready-queue entry of its first resumption.
  void detach(void (*done)(void*), void* ctx) {
    detached_done_ = done;
    detached_ctx_ = ctx;
  }
  Schedulable& start_entry() { return start_; }

  std::coroutine_handle<> continuation_;
  CancelScope* scope_ = nullptr;
  std::exception_ptr exception_;

 private:
  void (*detached_done_)(void*) = nullptr;
  void* detached_ctx_ = nullptr;
  Schedulable start_;
};

// True for promises of this runtime (they carry a CancelScope).
template <typename P>
concept ScopedPromise = std::derived_from<P, PromiseBase>;

template <typename T>
class Promise : public PromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  template <typename U>
  requires std::convertible_to<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.emplace(std::forward<U>(v));
  }
  T take() {
    if (exception_) std::rethrow_exception(exception_);
    NORI_ASSERT(value_.has_value(), "task finished without a value");
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class Promise<void> : public PromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() {
    if (exception_) std::rethrow_exception(exception_);
  }
};

}  // namespace detail

template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using Handle = std::coroutine_handle<promise_type>;
  using value_type = T;

  Task() = default;
  explicit Task(Handle h) : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  bool valid() const { return static_cast<bool>(h_); }
  bool done() const { return h_ && h_.done(); }
  // Runs the task in `scope` instead of inheriting the awaiter's scope.
  void set_scope(CancelScope* scope) { h_.promise().set_scope(scope); }
  // Gives up ownership of the frame (spawn, when_all).
  Handle release() { return std::exchange(h_, {}); }
  Handle handle() const { return h_; }
  // The result of a finished task (rethrows its exception).
  T take_result() {
    NORI_ASSERT(done(), "take_result() of an unfinished task");
    return h_.promise().take();
  }

  struct Awaiter {
    Handle child;
    bool await_ready() const noexcept { return false; }
    template <typename P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) noexcept {
      auto& cp = child.promise();
      cp.continuation_ = caller;
      if constexpr (detail::ScopedPromise<P>) {
        if (cp.scope_ == nullptr) cp.scope_ = caller.promise().scope_;
      }
      return child;  // symmetric transfer into the child
    }
    T await_resume() { return child.promise().take(); }
  };
  Awaiter operator co_await() && {
    NORI_ASSERT(h_ && !h_.done(), "awaiting an empty or finished task");
    return Awaiter{h_};
  }

 private:
  void reset() {
    if (h_) h_.destroy();
    h_ = {};
  }
  Handle h_;
};

namespace detail {
template <typename T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}
}  // namespace detail

// The CancelScope of the coroutine that awaits it: `auto* s = co_await current_scope();`.
struct CurrentScope {
  CancelScope* scope = nullptr;
  bool await_ready() const noexcept { return false; }
  template <typename P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    if constexpr (detail::ScopedPromise<P>) scope = h.promise().scope_;
    return false;  // never actually suspends
  }
  CancelScope* await_resume() const noexcept { return scope; }
};
inline CurrentScope current_scope() {
  return {};
}

}  // namespace nori::runtime
