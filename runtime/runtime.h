// Runtime: one Reactor per configured core, each on its own thread, and the
// cross-core calls between them.
//
//   runtime::Runtime rt({.cores = 2});
//   int v = rt.block_on(0, []() -> Task<int> { co_return co_await compute(); });
//   rt.stop();  // or let the destructor do it
//
// On a reactor:
//   R r = co_await submit_to(core, fn);   // fn() -> R or Task<R>, run on `core`
//   co_await post(core, fn);              // fire and forget; waits only for a credit
//
// Cross-core messages travel through one bounded SPSC ring per ordered core
// pair (mailbox.h), staged during a loop round and published in one batch at
// its end. Backpressure: a source may have at most
// RuntimeConfig::mailbox_in_flight_max unanswered submit_to calls plus unpushed
// posts per destination; beyond that the caller suspends until one finishes.
// submit_to is not cancellable: once sent, fn runs to completion on the target
// (a Task-returning fn runs in the target's root scope and gate).
//
// Threads: block_on, spawn_on and stop are for non-reactor ("alien") threads
// such as main() and tests; submit_to and post only on reactors. Shutdown
// (stop): every reactor cancels its root scope (pending I/O and sleeps of
// spawned tasks fail with kCancelled), keeps running until no reactor has a
// live task, an unanswered request or an unconsumed message, then all threads
// exit and are joined.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "runtime/reactor.h"
#include "runtime/task.h"

namespace nori::runtime {

// Asks the scheduler for an EEVDF slice of `slice_us` for the calling thread
// (RuntimeConfig::sched_slice_us has the why), keeping its policy and nice.
// 0 restores the default. Only for SCHED_OTHER threads (others unchanged).
// Errors: kInvalidArgument/kIo from sched_setattr; kernels before 6.12
// accept and ignore the request.
base::Status set_thread_sched_slice(uint32_t slice_us);

namespace detail {
// Runs fn() (-> Task<void>) keeping fn itself alive in this frame: a lambda
// coroutine reads its captures through the closure object, which must
// outlive the coroutine.
template <typename F>
Task<void> run_owned(F fn) {
  co_await fn();
}

template <typename T>
struct TaskValue {
  using type = void;
  static constexpr bool is_task = false;
};
template <typename T>
struct TaskValue<Task<T>> {
  using type = T;
  static constexpr bool is_task = true;
};
// The value fn() produces: T for Task<T>, else fn()'s own type.
template <typename F>
using CallResult = std::invoke_result_t<F&>;
template <typename F>
using ValueOf = std::conditional_t<TaskValue<CallResult<F>>::is_task,
                                   typename TaskValue<CallResult<F>>::type, CallResult<F>>;
struct Unit {};
template <typename T>
using Stored = std::conditional_t<std::is_void_v<T>, Unit, T>;
}  // namespace detail

class Runtime {
 public:
  explicit Runtime(RuntimeConfig cfg = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  unsigned cores() const { return static_cast<unsigned>(reactors_.size()); }
  const RuntimeConfig& config() const { return cfg_; }
  // Reactor i (its stats may be read from any thread).
  Reactor& reactor(unsigned i) { return *reactors_[i]; }
  bool stopping() const { return stopping_.load(std::memory_order_seq_cst); }

  // Runs fn() (-> R or Task<R>) on `core` and blocks the calling alien thread
  // until it finishes; rethrows its exception.
  template <typename F>
  detail::ValueOf<F> block_on(unsigned core, F fn);
  // Starts fn() (-> Task<void>) as a spawned task on `core`; does not wait.
  template <typename F>
  void spawn_on(unsigned core, F fn);

  // Graceful shutdown (see header comment); idempotent. Alien threads only.
  void stop();
  // Starts the shutdown without waiting: any thread, reactors included (a
  // task handling SIGTERM). An alien thread then calls stop() to join.
  void request_stop();

  // The reactors' own counters (loop rounds, sleeps, wake-ups sent, mailbox
  // messages, CQEs, task resumptions), one series per core, in Prometheus
  // text format. Any thread, any time before destruction.
  std::string prometheus_stats() const;

  // Internal (Reactor): quiescence accounting for shutdown.
  std::atomic<unsigned>& quiescent() { return quiescent_; }

 private:
  void thread_main(unsigned core);
  template <typename F, typename State>
  static Task<void> block_on_body(F& fn, State& st);

  const RuntimeConfig cfg_;
  std::vector<std::unique_ptr<SpscRing>> rings_;  // rings_[from * n + to]
  std::vector<Reactor*> reactors_;
  std::vector<std::unique_ptr<Reactor>> owned_;  // destroyed after the threads are joined
  std::vector<std::thread> threads_;             // reactor-ok: the reactor threads themselves
  std::latch created_;                           // reactor-ok: start-up, before any loop runs
  std::latch connected_;                         // reactor-ok: start-up, before any loop runs
  std::latch exited_;                            // reactor-ok: shutdown, after every loop exited
  std::atomic<bool> stopping_{false};  // set once by stop(); read seq_cst in the sleep protocol
  std::atomic<unsigned> quiescent_{0};
  std::mutex stop_mu_;  // reactor-ok: stop() on alien threads only
  bool joined_ = false;
};

// The runtime's number of cores / the calling reactor's core.
inline unsigned this_core() {
  return Reactor::here().core();
}

namespace detail {

template <typename F, typename R>
struct Request final : Message {
  Request(F f, unsigned src) : Message(&Request::run_on_target), fn(std::move(f)), from(src) {}

  F fn;
  const unsigned from;
  std::optional<Stored<R>> value;
  std::exception_ptr exception;
  // Source-side only (never touched on the target):
  Schedulable* waiter = nullptr;
  bool abandoned = false;
  bool replied = false;

  static void run_on_target(Message* m, Reactor& r) {
    auto* req = static_cast<Request*>(m);
    if constexpr (TaskValue<CallResult<F>>::is_task) {
      r.spawn(run_task(req, r));
    } else {
      try {
        if constexpr (std::is_void_v<R>) {
          req->fn();
          req->value.emplace();
        } else {
          req->value.emplace(req->fn());
        }
      } catch (...) {
        req->exception = std::current_exception();
      }
      reply(req, r);
    }
  }
  static Task<void> run_task(Request* req, Reactor& r) {
    try {
      if constexpr (std::is_void_v<R>) {
        co_await req->fn();
        req->value.emplace();
      } else {
        req->value.emplace(co_await req->fn());
      }
    } catch (...) {
      req->exception = std::current_exception();
    }
    reply(req, r);
  }
  static void reply(Request* req, Reactor& r) {
    req->run = &Request::run_on_source;
    r.send(req->from, req);
  }
  // Back on the source: the credit for this destination is free again.
  static void run_on_source(Message* m, Reactor& r) {
    auto* req = static_cast<Request*>(m);
    r.return_credit(req->dest);
    req->replied = true;
    if (req->abandoned) {
      delete req;
      return;
    }
    r.schedule(*req->waiter);
  }
  unsigned dest = 0;
};

template <typename F, typename R>
class ReplyAwaitable {
 public:
  ReplyAwaitable(Request<F, R>* req, unsigned dest) : req_(req), dest_(dest) {}
  ReplyAwaitable(const ReplyAwaitable&) = delete;
  ReplyAwaitable& operator=(const ReplyAwaitable&) = delete;
  ~ReplyAwaitable() {
    if (req_ == nullptr) return;
    if (sent_ && !req_->replied) {
      req_->abandoned = true;  // the reply frees it
    } else {
      delete req_;
    }
  }
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    entry_.handle = h;
    req_->waiter = &entry_;
    req_->dest = dest_;
    sent_ = true;
    Reactor::here().send(dest_, req_);
  }
  R await_resume() {
    Request<F, R>* req = std::exchange(req_, nullptr);
    std::unique_ptr<Request<F, R>> owned(req);
    if (req->exception) std::rethrow_exception(req->exception);
    if constexpr (!std::is_void_v<R>) return std::move(*req->value);
  }

 private:
  Request<F, R>* req_;
  unsigned dest_;
  bool sent_ = false;
  Schedulable entry_;
};

// Holds one credit for `dest` once awaited: takes a free one at once, else
// queues FIFO until Reactor::return_credit hands one over. A waiter destroyed
// after the hand-over but before resuming gives the credit back.
class CreditAwaitable {
 public:
  explicit CreditAwaitable(unsigned dest) : dest_(dest) {}
  CreditAwaitable(const CreditAwaitable&) = delete;
  CreditAwaitable& operator=(const CreditAwaitable&) = delete;
  ~CreditAwaitable() {
    if (waiter_.granted && !resumed_) Reactor::here().return_credit(dest_);
  }
  bool await_ready() { return Reactor::here().try_take_credit(dest_); }
  void await_suspend(std::coroutine_handle<> h) {
    waiter_.handle = h;
    Reactor::here().wait_for_credit(dest_, waiter_);
  }
  void await_resume() { resumed_ = true; }

 private:
  unsigned dest_;
  bool resumed_ = false;
  Reactor::CreditWaiter waiter_;
};

template <typename F>
struct Post final : Message {
  explicit Post(F f) : Message(&Post::run_on_target), fn(std::move(f)) {}
  F fn;
  static void run_on_target(Message* m, Reactor& r) {
    std::unique_ptr<Post> p(static_cast<Post*>(m));
    if constexpr (TaskValue<CallResult<F>>::is_task) {
      r.spawn(run_owned(std::move(p->fn)));
    } else {
      p->fn();
    }
  }
};

}  // namespace detail

// Runs fn on reactor `core` and returns its result (see header comment).
template <typename F>
Task<detail::ValueOf<F>> submit_to(unsigned core, F fn) {
  using R = detail::ValueOf<F>;
  Reactor& here = Reactor::here();
  if (core == here.core()) {
    if constexpr (detail::TaskValue<detail::CallResult<F>>::is_task) {
      co_return co_await fn();
    } else {
      co_return fn();
    }
  }
  co_await detail::CreditAwaitable(core);
  auto* req = new detail::Request<F, R>(std::move(fn), here.core());
  co_return co_await detail::ReplyAwaitable<F, R>(req, core);
}

namespace detail {
// The awaitable behind post(): no coroutine frame of its own, so a post that
// finds a free credit costs one allocation (the message) and no suspension.
template <typename F>
class [[nodiscard]] PostAwaitable {
 public:
  PostAwaitable(unsigned core, F fn) : core_(core), fn_(std::move(fn)) {}
  PostAwaitable(const PostAwaitable&) = delete;
  PostAwaitable& operator=(const PostAwaitable&) = delete;

  bool await_ready() {
    Reactor& here = Reactor::here();
    if (core_ == here.core()) {
      if constexpr (TaskValue<CallResult<F>>::is_task) {
        here.spawn(run_owned(std::move(fn_)));
      } else {
        fn_();
      }
      sent_ = true;  // done: await_resume must not send it (to this core) again
      return true;
    }
    if constexpr (kInlineClosure<F> && !TaskValue<CallResult<F>>::is_task) {
      if (here.try_send_inline(core_, fn_)) {
        sent_ = true;
        return true;
      }
    }
    if (!credit_.await_ready()) return false;
    send();
    return true;
  }
  void await_suspend(std::coroutine_handle<> h) { credit_.await_suspend(h); }
  void await_resume() {
    if (!sent_) {
      credit_.await_resume();
      send();
    }
  }

 private:
  void send() {
    auto* p = new Post<F>(std::move(fn_));
    p->credit_on_push = true;
    sent_ = true;
    Reactor::here().send(core_, p);
  }
  unsigned core_;
  F fn_;
  bool sent_ = false;
  CreditAwaitable credit_{core_};
};
}  // namespace detail

// Sends fn to run on `core` (fn() -> void, or Task<void> spawned there):
// `co_await post(core, fn)` suspends only while the destination has no free
// credit. Per ordered core pair, posts and submit_to calls run in send order.
template <typename F>
detail::PostAwaitable<F> post(unsigned core, F fn) {
  return detail::PostAwaitable<F>(core, std::move(fn));
}

// ---- Runtime templates ----

namespace detail {
template <typename R>
struct BlockState {
  std::mutex mu;               // reactor-ok: block_on, waited on by the alien caller
  std::condition_variable cv;  // reactor-ok: block_on, waited on by the alien caller
  bool done = false;
  std::optional<Stored<R>> value;
  std::exception_ptr exception;
};
}  // namespace detail

template <typename F, typename State>
Task<void> Runtime::block_on_body(F& fn, State& st) {
  using R = detail::ValueOf<F>;
  try {
    if constexpr (detail::TaskValue<detail::CallResult<F>>::is_task) {
      if constexpr (std::is_void_v<R>) {
        co_await fn();
        st.value.emplace();
      } else {
        st.value.emplace(co_await fn());
      }
    } else {
      if constexpr (std::is_void_v<R>) {
        fn();
        st.value.emplace();
      } else {
        st.value.emplace(fn());
      }
    }
  } catch (...) {
    st.exception = std::current_exception();
  }
  std::lock_guard lk(st.mu);
  st.done = true;
  st.cv.notify_one();
}

template <typename F>
detail::ValueOf<F> Runtime::block_on(unsigned core, F fn) {
  using R = detail::ValueOf<F>;
  NORI_ASSERT(core < cores(), "block_on core {} of {}", core, cores());
  NORI_ASSERT(Reactor::current() == nullptr, "block_on from a reactor thread would deadlock");
  NORI_ASSERT(!stopping(), "block_on after stop");
  detail::BlockState<R> st;
  reactors_[core]->inject([&] { Reactor::here().spawn(block_on_body(fn, st)); });
  std::unique_lock lk(st.mu);
  st.cv.wait(lk, [&] { return st.done; });
  if (st.exception) std::rethrow_exception(st.exception);
  if constexpr (!std::is_void_v<R>) return std::move(*st.value);
}

template <typename F>
void Runtime::spawn_on(unsigned core, F fn) {
  NORI_ASSERT(core < cores(), "spawn_on core {} of {}", core, cores());
  reactors_[core]->inject(
      [fn = std::move(fn)]() mutable { Reactor::here().spawn(detail::run_owned(std::move(fn))); });
}

}  // namespace nori::runtime
