// Reactor: one core's event loop. It owns one io_uring (created on its own
// thread), its timers, its ready queue of coroutines, its root CancelScope and
// gate, and its ends of the cross-core mailboxes. Nothing in it is touched by
// another thread except the documented atomics of the wake-up protocol and the
// alien injection queue (Runtime::block_on / spawn_on).
//
// The loop (Reactor::run, reactor.cc, numbered there) is: drain mailboxes ->
// fire timers -> run ready coroutines -> publish outgoing mailboxes -> submit
// SQEs and reap CQEs -> if nothing happened, optionally poll briefly (bounded,
// off by default), then sleep in io_uring_submit_and_wait_timeout until the
// next timer, an I/O completion or a wake-up.
//
// Free functions for code running on a reactor:
//   spawn(task)            detached task on this reactor (root scope, gate-counted)
//   co_await sleep_for(d)  Status: ok, or kCancelled when its scope is cancelled
//   co_await yield()       let the other ready coroutines run first
//   Timer                  callback timer (Raft ticks), single reactor
//   Gate                   counts holders; `co_await gate.wait_empty()`
#pragma once

#include <liburing.h>

#include <atomic>
#include <boost/intrusive/list.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "runtime/base/clock.h"
#include "runtime/base/result.h"
#include "runtime/cancel.h"
#include "runtime/mailbox.h"
#include "runtime/task.h"
#include "runtime/timer_set.h"

namespace nori::runtime {

class Runtime;

// How one reactor wakes another that sleeps in the kernel (docs/runtime.md
// has the measurements behind the default).
enum class WakeMode : uint8_t {
  kMsgRing,  // IORING_OP_MSG_RING from the waker's ring: no extra syscall, rides its next submit
  kEventfd,  // write(2) to the sleeper's eventfd, on which the sleeper keeps a read armed
};

// Thread placement of reactors.
enum class PinMode : uint8_t {
  kAuto,  // pin reactor i to CPU i when there are no more reactors than online CPUs, else unpinned
  kWrap,  // pin reactor i to CPU (i mod online CPUs), even when oversubscribed
  kNone,  // never pin
};

struct RuntimeConfig {
  unsigned cores = 0;  // reactors; 0 = every online CPU
  PinMode pin = PinMode::kAuto;
  WakeMode wake = WakeMode::kMsgRing;
  // false: skip the SINGLE_ISSUER | DEFER_TASKRUN ring set-up and use the
  // first fallback (COOP_TASKRUN), as on kernels older than 6.1. Tests use it
  // to exercise the fallback path.
  bool ring_defer_taskrun = true;
  uint32_t ring_entries = 256;  // SQ size; the CQ gets 4x
  // Bounded spin (memory-only checks of mailboxes, timers and the CQ) after
  // the loop runs out of work, before sleeping in the kernel. Default 0: on
  // the shared 2-core machines this runs on, polling steals the CPU the peer
  // needs and made both round trips and throughput worse (docs/runtime.md);
  // on dedicated cores ~20 us cuts a cross-core round trip to a few us.
  base::Duration idle_poll = base::Duration(0);
  // EEVDF time slice requested for each reactor thread (sched_setattr with
  // sched_runtime on SCHED_OTHER, Linux 6.12+; 0 = the kernel's default,
  // 1.4 ms on the project's 2-vCPU VMs). A reactor runs short bursts, then
  // sleeps until a completion or a message wakes it. With the default slice,
  // a thread woken while a CPU-bound task runs on its CPU can wait until
  // that task's slice ends (up to the 4 ms tick: the "disk completion tick"
  // of earlier docs/bench.md). A short slice gives the woken thread an
  // earlier virtual deadline, so it can preempt; it does not raise its CPU
  // share (EEVDF stays fair in CPU time), it runs it in smaller, sooner
  // pieces. The io_uring worker threads a ring creates inherit it (checked
  // in /proc/<pid>/task/*/sched). Off by default: it cut a blocking
  // writer's wait 30x but made no measurable difference to the cluster,
  // whose remaining wait is in kernel workers (docs/bench.md, "Scheduler
  // wake-up latency"). Older kernels ignore it. NORI_SCHED_SLICE_US
  // overrides (0 = kernel default).
  uint32_t sched_slice_us = 0;
  // Slots per ordered core pair (power of two; one 64-byte slot each). 0 =
  // auto: 4096 up to 8 cores (256 KiB per ring; a ring that absorbs a
  // sleeping consumer's wake-up latency tripled post throughput), else 1024,
  // since memory grows with cores^2.
  uint32_t mailbox_slots = 0;
  uint32_t mailbox_batch_max = 256;     // messages drained per ring per loop round
  uint32_t mailbox_publish_batch = 32;  // staged messages made visible at once mid-round
  // A mid-round publish checks whether the consumer sleeps (and wakes it)
  // only once this many published messages are unconsumed; smaller backlogs
  // get their wake-up check at the end of the producer's round. Fewer, larger
  // batches per wake-up: with 32 the consumer caught up and slept every ~450
  // messages of a long burst, and the sleep/wake pair was most of the CPU per
  // message (docs/runtime.md). 0 = auto: mailbox_slots / 2.
  uint32_t mailbox_wake_backlog = 0;
  uint32_t mailbox_in_flight_max = 1024;  // unanswered submit_to + unpushed posts per destination
  uint32_t tasks_per_round_max = 256;     // ready coroutines resumed per loop round
  // io-wq worker bounds (IORING_REGISTER_IOWQ_MAX_WORKERS): bounded = regular
  // file I/O punted to workers, unbounded = blocking socket/other fallbacks.
  uint32_t iowq_bounded_workers_max = 2;
  uint32_t iowq_unbounded_workers_max = 4;
};

// What a CQE's user_data points to. 0 means "ignore this CQE" (cancel
// requests, wake-up messages are kWakeUserData).
struct Completion {
  using OnCqe = void (*)(Completion*, int32_t res, uint32_t flags);
  explicit Completion(OnCqe f) : on_cqe(f) {}
  OnCqe on_cqe;
};
inline constexpr uint64_t kIgnoreUserData = 0;
inline constexpr uint64_t kWakeUserData = 1;

// Counters a reactor keeps about itself (single writer, read by anyone).
struct ReactorStats {
  std::atomic<uint64_t> loops{0};
  std::atomic<uint64_t> sleeps{0};        // times it blocked in the kernel
  std::atomic<uint64_t> wakeups_sent{0};  // wake-ups it sent to sleeping peers
  std::atomic<uint64_t> messages_in{0};   // mailbox messages it ran
  std::atomic<uint64_t> cqes{0};
  std::atomic<uint64_t> tasks_resumed{0};
  void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

class Reactor {
 public:
  // The reactor of the calling thread, or nullptr on a non-reactor thread.
  static Reactor* current() { return current_; }
  static Reactor& here() {
    NORI_ASSERT(current_ != nullptr, "not on a reactor thread");
    return *current_;
  }

  Reactor(Runtime& rt, unsigned core, const RuntimeConfig& cfg);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  unsigned core() const { return core_; }
  Runtime& runtime() { return rt_; }
  const RuntimeConfig& config() const { return cfg_; }
  const ReactorStats& stats() const { return stats_; }
  // Setup flags the kernel accepted for this reactor's ring.
  uint32_t ring_flags() const { return ring_flags_; }
  int ring_fd() const { return ring_.ring_fd; }
  // The kernel's current io-wq worker bounds for this ring {bounded,
  // unbounded}; {0, 0} if the kernel cannot report them. Reactor thread only.
  std::pair<unsigned, unsigned> iowq_max_workers();

  // ---- scheduling ----
  void schedule(Schedulable& s) {
    NORI_ASSERT(!s.is_linked(), "scheduled twice");
    ready_.push_back(s);
  }
  void spawn(Task<void> t);
  CancelScope& root_scope() { return root_scope_; }
  uint64_t live_tasks() const { return live_tasks_; }

  // ---- io_uring ----
  // A free SQE (submits pending SQEs first when the SQ is full). Never null.
  io_uring_sqe* get_sqe();
  // Makes room for n SQEs (submits what is queued first if fewer are free),
  // so the next n get_sqe() calls come from one submission: an IOSQE_IO_LINK
  // chain split by a submit would run its parts unlinked.
  void reserve_sqes(unsigned n);
  // Asks the kernel to cancel the operation whose user_data is `c` (the
  // operation's CQE still arrives, with -ECANCELED or its real result).
  void cancel_op(Completion* c);
  // Bookkeeping by IoOp: an operation that will post a CQE was queued / completed.
  void op_started() { ++ops_in_flight_; }
  void op_finished() { --ops_in_flight_; }
  // Cancels `c` and blocks this reactor until `c`'s CQE has been reaped (other
  // CQEs reaped meanwhile only schedule their coroutines; none is resumed).
  // For awaitables destroyed while their operation is in flight: the kernel
  // may write into the awaitable's buffers until that CQE.
  void cancel_and_wait(Completion* c, const bool& done);

  // ---- timers ----
  TimerSet& timers() { return timers_; }

  // ---- cross-core (used by submit_to / post in runtime.h) ----
  // Queues `m` for core `to`. It goes straight into the ring when nothing is
  // waiting ahead of it (made visible every mailbox_publish_batch messages and
  // at the end of the loop round), else into a FIFO drained as slots free up.
  void send(unsigned to, Message* m);
  // post's fast path: copies fn into the ring when nothing waits ahead of it
  // (no queued message, no credit waiter) and a slot is free; else false.
  template <typename F>
  requires kInlineClosure<F>
  bool try_send_inline(unsigned to, const F& fn) {
    NORI_ASSERT(to < outboxes_.size(), "post to core {} of {}", to, outboxes_.size());
    Outbox& ob = outboxes_[to];
    if (ob.pending_head != nullptr || !ob.waiters.empty()) return false;
    if (!ob.ring->try_push_inline(fn)) return false;
    if (++ob.staged >= cfg_.mailbox_publish_batch) publish(to, /*mid_round=*/true);
    return true;
  }
  // Credits bound what a core has in flight towards one destination
  // (RuntimeConfig::mailbox_in_flight_max).
  bool try_take_credit(unsigned to);
  // Frees a credit, or hands it straight to the first waiter (granted = true).
  void return_credit(unsigned to);
  struct CreditWaiter : Schedulable {
    bool granted = false;
  };
  // Queues `w` until a credit for `to` is handed to it (w.granted, w scheduled).
  void wait_for_credit(unsigned to, CreditWaiter& w);

  // ---- alien threads ----
  // Runs fn on this reactor's thread soon (Runtime::block_on, spawn_on, stop).
  void inject(std::function<void()> fn);
  // Wakes this reactor if it sleeps (any thread).
  void wake_from_any_thread();

  // The loop; returns after Runtime::stop once every reactor is quiescent.
  void run();

  // Called on this thread by Runtime once every reactor exists (mailbox wiring).
  void connect(std::vector<Reactor*> peers, std::vector<SpscRing*> inboxes,
               std::vector<SpscRing*> outboxes);

 private:
  struct Outbox {
    SpscRing* ring = nullptr;
    Message* pending_head = nullptr;  // FIFO of messages waiting for ring space
    Message* pending_tail = nullptr;
    uint32_t credits_used = 0;
    uint32_t staged = 0;  // pushed into the ring since the last publish
    // A mid-round publish skipped the consumer's wake-up check (backlog below
    // mailbox_wake_backlog); flush_outgoing must do it before the round ends.
    bool wake_owed = false;
    boost::intrusive::list<Schedulable, boost::intrusive::constant_time_size<false>> waiters;
  };

  void setup_ring();
  void arm_eventfd_read();
  bool drain_injected();
  bool drain_mailboxes();
  bool flush_outgoing();
  bool run_ready();
  bool fire_timers();
  bool reap_cqes();
  void submit_and_get_events();
  void wake_peer(Reactor& peer, bool now = false);
  void maybe_wake_consumer(Reactor& peer, bool now = false);
  void publish(unsigned to, bool mid_round);
  bool has_remote_work_after_fence();
  void idle();
  bool locally_quiescent();
  void unmark_quiescent();
  static void on_gate_leave(void* ctx);
  static void on_eventfd(Completion* c, int32_t res, uint32_t flags);
  struct EventfdCompletion : Completion {
    explicit EventfdCompletion(Reactor* r) : Completion(&Reactor::on_eventfd), self(r) {}
    Reactor* self;
  };

  static thread_local Reactor* current_;

  Runtime& rt_;
  const unsigned core_;
  const RuntimeConfig cfg_;
  io_uring ring_{};
  uint32_t ring_flags_ = 0;
  bool need_enter_for_events_ = false;  // DEFER_TASKRUN: CQEs appear only when we enter
  bool submit_deferred_ = false;        // SQEs/completions left for the next round (run, step 6)
  uint64_t ops_in_flight_ = 0;  // IoOps awaiting a CQE (decides whether to enter the kernel)

  boost::intrusive::list<Schedulable, boost::intrusive::constant_time_size<false>> ready_;
  TimerSet timers_;
  CancelScope root_scope_;
  uint64_t live_tasks_ = 0;  // spawned and not finished (the reactor's gate)

  std::vector<Reactor*> peers_;
  std::vector<SpscRing*> inboxes_;  // inboxes_[from]: ring from core `from` to us
  std::vector<Outbox> outboxes_;    // outboxes_[to]
  bool counted_quiescent_ = false;
  bool stop_seen_ = false;

  // Wake-up: set (relaxed) before the seq_cst fence of the sleep protocol,
  // cleared by a waker's exchange (one wake per sleep) or by us on waking.
  alignas(kCacheLineBytes) std::atomic<bool> sleeping_{false};
  int eventfd_ = -1;
  EventfdCompletion eventfd_completion_{this};
  uint64_t eventfd_buf_ = 0;
  bool eventfd_armed_ = false;

  alignas(kCacheLineBytes) std::atomic<bool> inject_pending_{false};
  std::mutex inject_mu_;  // reactor-ok: alien threads only; never taken on the hot path
  std::vector<std::function<void()>> injected_;

  ReactorStats stats_;
};

// Detached task on the calling reactor (see Reactor::spawn).
inline void spawn(Task<void> t) {
  Reactor::here().spawn(std::move(t));
}

// ---- sleeping ----
class SleepAwaitable final : private Cancellable {
 public:
  explicit SleepAwaitable(base::TimePoint deadline) : deadline_(deadline) {}
  SleepAwaitable(const SleepAwaitable&) = delete;
  SleepAwaitable& operator=(const SleepAwaitable&) = delete;

  bool await_ready() const { return deadline_ <= base::BootClock::now(); }
  template <typename P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if constexpr (detail::ScopedPromise<P>) {
      CancelScope* s = h.promise().scope_;
      if (s != nullptr && !s->add(*this)) {
        cancelled_ = true;
        return false;
      }
    }
    reactor_ = &Reactor::here();
    waiter_.handle = h;
    reactor_->timers().arm(node_, deadline_);
    return true;
  }
  base::Status await_resume() {
    Cancellable::unlink();
    if (cancelled_) return base::Error(base::ErrorKind::kCancelled, "sleep cancelled");
    return {};
  }

 private:
  struct Node final : TimerNode {
    explicit Node(SleepAwaitable* s) : TimerNode(&Node::fire_node), self(s) {}
    static void fire_node(TimerNode* n) {
      SleepAwaitable* s = static_cast<Node*>(n)->self;
      // Leave the cancel scope before scheduling: a cancel() between this
      // firing and the sleeper's resumption would otherwise schedule the
      // waiter a second time (as the I/O ops do on their CQE).
      s->Cancellable::unlink();
      s->reactor_->schedule(s->waiter_);
    }
    SleepAwaitable* self;
  };
  void cancel() override {
    node_.disarm();
    cancelled_ = true;
    reactor_->schedule(waiter_);
  }

  base::TimePoint deadline_;
  Node node_{this};
  Schedulable waiter_;
  Reactor* reactor_ = nullptr;
  bool cancelled_ = false;
};

inline SleepAwaitable sleep_until(base::TimePoint t) {
  return SleepAwaitable(t);
}
inline SleepAwaitable sleep_for(base::Duration d) {
  return SleepAwaitable(base::BootClock::now() + d);
}

// Puts the caller at the back of the ready queue.
struct YieldAwaitable {
  Schedulable entry;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    entry.handle = h;
    Reactor::here().schedule(entry);
  }
  void await_resume() const noexcept {}
};
inline YieldAwaitable yield() {
  return {};
}

// A callback timer on the reactor that arms it. The callback runs on that
// reactor's thread from the timer phase of the loop; destroying the Timer
// disarms it.
class Timer {
 public:
  explicit Timer(std::function<void()> cb) : cb_(std::move(cb)) {}
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void arm_at(base::TimePoint t) { Reactor::here().timers().arm(node_, t); }
  void arm_in(base::Duration d) { arm_at(base::BootClock::now() + d); }
  void cancel() { node_.disarm(); }
  bool armed() const { return node_.armed(); }

 private:
  struct Node final : TimerNode {
    explicit Node(Timer* t) : TimerNode(&Node::fire_node), self(t) {}
    static void fire_node(TimerNode* n) { static_cast<Node*>(n)->self->cb_(); }
    Timer* self;
  };
  std::function<void()> cb_;
  Node node_{this};
};

// Gate: counts holders (connections, requests) so an owner can wait until
// all have left. `enter` fails once the gate is closed.
class Gate {
 public:
  Gate() = default;
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  ~Gate() { NORI_ASSERT(count_ == 0, "gate destroyed with {} holders", count_); }

  [[nodiscard]] bool enter() {
    if (closed_) return false;
    ++count_;
    return true;
  }
  void leave() {
    NORI_ASSERT(count_ > 0, "gate leave without enter");
    if (--count_ == 0) {
      while (!waiters_.empty()) {
        Schedulable& s = waiters_.front();
        waiters_.pop_front();
        Reactor::here().schedule(s);
      }
    }
  }
  uint64_t count() const { return count_; }
  bool closed() const { return closed_; }

  struct WaitEmpty {
    Gate* gate;
    Schedulable entry;
    bool await_ready() const noexcept { return gate->count_ == 0; }
    void await_suspend(std::coroutine_handle<> h) {
      entry.handle = h;
      gate->waiters_.push_back(entry);
    }
    void await_resume() const noexcept {}
  };
  // Closes the gate (no new holders) and waits for the current ones to leave.
  WaitEmpty close() {
    closed_ = true;
    return WaitEmpty{this, {}};
  }
  WaitEmpty wait_empty() { return WaitEmpty{this, {}}; }

 private:
  uint64_t count_ = 0;
  bool closed_ = false;
  boost::intrusive::list<Schedulable, boost::intrusive::constant_time_size<false>> waiters_;
};

}  // namespace nori::runtime
