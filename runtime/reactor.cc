#include "runtime/reactor.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <immintrin.h>
#include <cerrno>
#include <cstring>

#include "runtime/runtime.h"

namespace nori::runtime {

thread_local Reactor* Reactor::current_ = nullptr;

namespace {
// Timers fired per loop round: a burst of due timers cannot starve I/O and
// mailboxes for more than one bounded round.
constexpr size_t kTimersPerRoundMax = 1024;
// Memory-only checks between clock reads while idle-polling.
constexpr int kPollSpinsPerClockRead = 32;
}  // namespace

Reactor::Reactor(Runtime& rt, unsigned core, const RuntimeConfig& cfg)
    : rt_(rt), core_(core), cfg_(cfg) {
  NORI_ASSERT(current_ == nullptr, "a thread runs at most one reactor");
  setup_ring();
  // Blocking eventfd on purpose: io_uring honours O_NONBLOCK and would fail the
  // armed read with -EAGAIN instead of waiting for a write.
  eventfd_ = ::eventfd(0, EFD_CLOEXEC);
  if (eventfd_ < 0) NORI_PANIC("eventfd: {}", std::strerror(errno));
  current_ = this;
}

Reactor::~Reactor() {
  if (current_ == this) current_ = nullptr;
  io_uring_queue_exit(&ring_);
  ::close(eventfd_);
}

void Reactor::setup_ring() {
  // Most capable first; a kernel that refuses a flag answers -EINVAL.
  //  SINGLE_ISSUER: only this thread submits (lets the kernel skip locking).
  //  DEFER_TASKRUN: completion work runs only when we enter the kernel, so it
  //    never interrupts a running task (requires SINGLE_ISSUER).
  //  TASKRUN_FLAG: the kernel sets IORING_SQ_TASKRUN when completions wait for
  //    us, which the idle poll checks without a syscall.
  //  COOP_TASKRUN: no IPI to interrupt us for completion work (fallback).
  //  SUBMIT_ALL: one bad SQE does not stop the rest of the batch.
  const uint32_t base = IORING_SETUP_CQSIZE;
  const uint32_t attempts[] = {
      base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
          IORING_SETUP_SUBMIT_ALL,
      base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
          IORING_SETUP_SUBMIT_ALL,
      base | IORING_SETUP_COOP_TASKRUN,
      base,
  };
  int rc = -EINVAL;
  for (uint32_t flags : attempts) {
    if (!cfg_.ring_defer_taskrun && (flags & IORING_SETUP_DEFER_TASKRUN)) continue;
    io_uring_params p{};
    p.flags = flags;
    p.cq_entries = cfg_.ring_entries * 4;
    rc = io_uring_queue_init_params(cfg_.ring_entries, &ring_, &p);
    if (rc == 0) {
      ring_flags_ = flags;
      break;
    }
    if (rc != -EINVAL) break;
  }
  if (rc != 0) NORI_PANIC("io_uring_queue_init_params: {}", std::strerror(-rc));
  need_enter_for_events_ = (ring_flags_ & IORING_SETUP_DEFER_TASKRUN) != 0;
  // Bound the kernel's io-wq workers for this ring so blocking fallbacks
  // (buffered file I/O, fsync) cannot flood a 2-core machine with threads.
  unsigned workers[2] = {cfg_.iowq_bounded_workers_max, cfg_.iowq_unbounded_workers_max};
  int wrc = io_uring_register_iowq_max_workers(&ring_, workers);
  NORI_ASSERT(wrc == 0 || wrc == -EINVAL, "iowq max workers: {}", std::strerror(-wrc));
}

std::pair<unsigned, unsigned> Reactor::iowq_max_workers() {
  NORI_ASSERT(current_ == this);
  unsigned v[2] = {0, 0};  // 0 = do not change, report the current value
  if (io_uring_register_iowq_max_workers(&ring_, v) != 0) return {0, 0};
  return {v[0], v[1]};
}

void Reactor::connect(std::vector<Reactor*> peers, std::vector<SpscRing*> inboxes,
                      std::vector<SpscRing*> outboxes) {
  peers_ = std::move(peers);
  inboxes_ = std::move(inboxes);
  outboxes_.resize(outboxes.size());
  for (size_t i = 0; i < outboxes.size(); ++i)
    outboxes_[i].ring = outboxes[i];
}

// ---------------------------------------------------------------- tasks

void Reactor::spawn(Task<void> t) {
  auto h = t.release();
  NORI_ASSERT(h && !h.done(), "spawn of an empty or finished task");
  auto& p = h.promise();
  if (p.scope_ == nullptr) p.scope_ = &root_scope_;
  p.detach(&Reactor::on_gate_leave, this);
  ++live_tasks_;
  Schedulable& s = p.start_entry();
  s.handle = h;
  schedule(s);
}

void Reactor::on_gate_leave(void* ctx) {
  auto* r = static_cast<Reactor*>(ctx);
  NORI_ASSERT(r->live_tasks_ > 0);
  --r->live_tasks_;
}

bool Reactor::run_ready() {
  uint32_t n = 0;
  while (n < cfg_.tasks_per_round_max && !ready_.empty()) {
    Schedulable& s = ready_.front();
    ready_.pop_front();
    ++n;
    // `s` may be destroyed by the resumption; it is not touched afterwards.
    s.handle.resume();
  }
  if (n > 0) stats_.bump(stats_.tasks_resumed, n);
  return n > 0;
}

bool Reactor::fire_timers() {
  if (timers_.empty()) return false;
  return timers_.fire_expired(base::BootClock::now(), kTimersPerRoundMax) > 0;
}

// ---------------------------------------------------------------- io_uring

io_uring_sqe* Reactor::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // SQ full: hand the batch to the kernel now. -EBUSY means the CQ
    // overflowed; reaping makes room (it only schedules coroutines).
    int rc = io_uring_submit(&ring_);
    if (rc == -EBUSY) {
      reap_cqes();
    } else if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      NORI_PANIC("io_uring_submit: {}", std::strerror(-rc));
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void Reactor::reserve_sqes(unsigned n) {
  NORI_ASSERT(n >= 1 && n <= ring_.sq.ring_entries, "reserve of {} SQEs", n);
  while (io_uring_sq_space_left(&ring_) < n) {
    int rc = io_uring_submit(&ring_);
    if (rc == -EBUSY) {
      reap_cqes();
    } else if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      NORI_PANIC("io_uring_submit: {}", std::strerror(-rc));
    }
  }
}

void Reactor::cancel_op(Completion* c) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(c), 0);
  io_uring_sqe_set_data64(sqe, kIgnoreUserData);
}

void Reactor::cancel_and_wait(Completion* c, const bool& done) {
  NORI_ASSERT(current_ == this, "an in-flight operation destroyed off its reactor's thread");
  cancel_op(c);
  while (!done) {
    int rc = io_uring_submit_and_wait(&ring_, 1);
    if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN && rc != -ETIME) {
      NORI_PANIC("io_uring_submit_and_wait (cancel): {}", std::strerror(-rc));
    }
    reap_cqes();
  }
}

bool Reactor::reap_cqes() {
  unsigned head;
  io_uring_cqe* cqe;
  unsigned n = 0;
  unsigned handled = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++n;
    const uint64_t ud = cqe->user_data;
    if (ud == kIgnoreUserData || ud == kWakeUserData) continue;
    auto* c = reinterpret_cast<Completion*>(ud);
    // Handlers only record the result and schedule coroutines; none is
    // resumed here, so no handler can re-enter the ring mid-iteration.
    c->on_cqe(c, cqe->res, cqe->flags);
    ++handled;
  }
  if (n == 0) return false;
  io_uring_cq_advance(&ring_, n);
  stats_.bump(stats_.cqes, n);
  // A wake-up or cancel acknowledgement alone is not work for another round.
  return handled > 0;
}

void Reactor::submit_and_get_events() {
  const bool have_sqes = io_uring_sq_ready(&ring_) > 0;
  int rc = 0;
  if (need_enter_for_events_) {
    // DEFER_TASKRUN: completions are only posted when we enter the kernel.
    // Enter when there is something to submit or an operation is in flight.
    if (have_sqes || ops_in_flight_ > 0 ||
        (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN)) {
      rc = io_uring_submit_and_get_events(&ring_);
    }
  } else if (have_sqes) {
    rc = io_uring_submit(&ring_);
  }
  if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
    NORI_PANIC("io_uring submit: {}", std::strerror(-rc));
  }
}

void Reactor::on_eventfd(Completion* c, int32_t, uint32_t) {
  // The read consumed the counter; re-armed before the next sleep.
  static_cast<EventfdCompletion*>(c)->self->eventfd_armed_ = false;
}

void Reactor::arm_eventfd_read() {
  if (eventfd_armed_) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, eventfd_, &eventfd_buf_, sizeof eventfd_buf_, 0);
  io_uring_sqe_set_data(sqe, &eventfd_completion_);
  eventfd_armed_ = true;
}

// ---------------------------------------------------------------- cross-core

void Reactor::send(unsigned to, Message* m) {
  NORI_ASSERT(to < outboxes_.size() && to != core_, "send to core {}", to);
  Outbox& ob = outboxes_[to];
  m->next = nullptr;
  if (ob.pending_head == nullptr) {
    // FIFO per pair: only when nothing waits ahead of m may it skip the queue.
    const bool credit = m->credit_on_push;  // read before the consumer can own m
    if (ob.ring->try_push(m)) {
      if (credit) return_credit(to);
      if (++ob.staged >= cfg_.mailbox_publish_batch) publish(to, /*mid_round=*/true);
      return;
    }
  }
  if (ob.pending_tail != nullptr) {
    ob.pending_tail->next = m;
  } else {
    ob.pending_head = m;
  }
  ob.pending_tail = m;
}

void Reactor::publish(unsigned to, bool mid_round) {
  Outbox& ob = outboxes_[to];
  ob.staged = 0;
  const bool published = ob.ring->publish();
  // Mid-round, a small backlog does not pay for the wake-up check: an awake
  // consumer sees the release store anyway, and a sleeping one is woken by
  // the end-of-round flush (wake_owed), which every round reaches before this
  // core can sleep, so the wake-up is delayed by at most one round, never
  // lost. A large backlog wakes it now, so it works in parallel with us.
  if (mid_round && ob.ring->unconsumed() < cfg_.mailbox_wake_backlog) {
    ob.wake_owed |= published;
    return;
  }
  if (published || ob.wake_owed) {
    ob.wake_owed = false;
    maybe_wake_consumer(*peers_[to], mid_round);
  }
}

bool Reactor::try_take_credit(unsigned to) {
  NORI_ASSERT(to < outboxes_.size() && to != core_, "cross-core call to core {} from {} of {}", to,
              core_, outboxes_.size());
  Outbox& ob = outboxes_[to];
  if (ob.credits_used >= cfg_.mailbox_in_flight_max || !ob.waiters.empty()) return false;
  ++ob.credits_used;
  return true;
}
void Reactor::return_credit(unsigned to) {
  Outbox& ob = outboxes_[to];
  NORI_ASSERT(ob.credits_used > 0);
  if (!ob.waiters.empty()) {
    // Hand the credit over (credits_used unchanged): FIFO among waiters, and
    // nobody can overtake a waiter (try_take_credit fails while any waits).
    auto& w = static_cast<CreditWaiter&>(ob.waiters.front());
    ob.waiters.pop_front();
    w.granted = true;
    schedule(w);
    return;
  }
  --ob.credits_used;
}
void Reactor::wait_for_credit(unsigned to, CreditWaiter& w) {
  w.granted = false;
  outboxes_[to].waiters.push_back(w);
}

bool Reactor::drain_mailboxes() {
  bool any = false;
  for (size_t from = 0; from < inboxes_.size(); ++from) {
    SpscRing* ring = inboxes_[from];
    if (ring == nullptr) continue;
    uint32_t n = ring->available();
    if (n == 0) continue;
    if (n > cfg_.mailbox_batch_max) n = cfg_.mailbox_batch_max;
    // Shutdown accounting: leave the quiescent count BEFORE running anything
    // and before releasing the slots, so the sender (which counts itself
    // quiescent only after seeing the release) can never make the count whole
    // while this work is live.
    if (counted_quiescent_) unmark_quiescent();
    for (uint32_t i = 0; i < n; ++i) {
      Slot& slot = ring->peek(i);
      slot.run(slot, *this);
    }
    ring->release(n);
    stats_.bump(stats_.messages_in, n);
    any = true;
    // Dekker with the producer's "store producer_waiting; fence; reload head":
    // our release, this fence, then the flag load. One of us sees the other.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    Reactor& producer = *peers_[from];
    if (ring->producer_waiting().load(std::memory_order_relaxed) &&
        ring->producer_waiting().exchange(false, std::memory_order_acq_rel)) {
      wake_peer(producer);
    } else if (rt_.stopping() && producer.sleeping_.load(std::memory_order_relaxed) &&
               producer.sleeping_.exchange(false, std::memory_order_acq_rel)) {
      // During shutdown the producer's quiescence depends on this release
      // (its messages consumed), so it must re-check: same Dekker pair as
      // above, against its "sleeping; fence; locally_quiescent()".
      wake_peer(producer);
    }
  }
  return any;
}

bool Reactor::flush_outgoing() {
  bool any = false;
  for (size_t to = 0; to < outboxes_.size(); ++to) {
    Outbox& ob = outboxes_[to];
    if (ob.ring == nullptr) continue;
    for (int attempt = 0; attempt < 2 && ob.pending_head != nullptr; ++attempt) {
      while (ob.pending_head != nullptr) {
        Message* m = ob.pending_head;
        Message* next = m->next;
        const bool credit = m->credit_on_push;  // read before the consumer can own m
        if (!ob.ring->try_push(m)) break;
        ob.pending_head = next;
        if (next == nullptr) ob.pending_tail = nullptr;
        if (credit) return_credit(static_cast<unsigned>(to));
        ++ob.staged;
      }
      if (ob.pending_head != nullptr && attempt == 0) {
        // Ring full: ask the consumer to wake us when it frees slots, then
        // look once more (it may have released before seeing the flag).
        ob.ring->producer_waiting().store(true, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);
      }
    }
    if (ob.pending_head == nullptr && ob.ring->producer_waiting().load(std::memory_order_relaxed)) {
      ob.ring->producer_waiting().store(false, std::memory_order_relaxed);
    }
    if (ob.staged > 0 || ob.wake_owed) {
      publish(static_cast<unsigned>(to), /*mid_round=*/false);
      any = true;
    }
  }
  return any;
}

void Reactor::maybe_wake_consumer(Reactor& peer, bool now) {
  // Dekker with the consumer's sleep protocol ("store sleeping; fence; check
  // rings"): our publish (release store of tail), this fence, then the
  // sleeping load. Either we see it asleep and wake it, or it sees our tail.
  // The exchange makes sure one sleep costs at most one wake-up.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (peer.sleeping_.load(std::memory_order_relaxed) &&
      peer.sleeping_.exchange(false, std::memory_order_acq_rel)) {
    wake_peer(peer, now);
  }
}

void Reactor::wake_peer(Reactor& peer, bool now) {
  stats_.bump(stats_.wakeups_sent);
  if (cfg_.wake == WakeMode::kMsgRing) {
    // Posts a CQE (user_data kWakeUserData) on the peer's ring, which ends its
    // wait. Rides this round's submit; CQE_SKIP_SUCCESS: no CQE for us.
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_msg_ring(sqe, peer.ring_.ring_fd, 0, kWakeUserData, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, kIgnoreUserData);
    // Mid-round (a full publish batch while this core keeps producing): send
    // it now so the consumer starts in parallel, instead of after our round.
    if (now) {
      int rc = io_uring_submit(&ring_);
      NORI_ASSERT(rc >= 0 || rc == -EBUSY || rc == -EAGAIN || rc == -EINTR, "submit: {}",
                  std::strerror(-rc));
    }
  } else {
    peer.wake_from_any_thread();
  }
}

void Reactor::wake_from_any_thread() {
  uint64_t one = 1;
  ssize_t n = ::write(eventfd_, &one, sizeof one);  // reactor-ok: eventfd add never blocks
  NORI_ASSERT(n == sizeof one, "eventfd write: {}", std::strerror(errno));
}

void Reactor::inject(std::function<void()> fn) {
  {
    std::lock_guard lk(inject_mu_);
    injected_.push_back(std::move(fn));
  }
  inject_pending_.store(true, std::memory_order_release);
  // Unconditional wake: alien calls are rare, so no sleep handshake is needed
  // (at worst the reactor sees one spurious eventfd completion).
  wake_from_any_thread();
}

bool Reactor::drain_injected() {
  if (!inject_pending_.load(std::memory_order_acquire)) return false;
  inject_pending_.store(false, std::memory_order_relaxed);
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lk(inject_mu_);
    batch.swap(injected_);
  }
  if (batch.empty()) return false;
  if (counted_quiescent_) unmark_quiescent();
  for (auto& fn : batch)
    fn();
  return true;
}

// ---------------------------------------------------------------- shutdown

bool Reactor::locally_quiescent() {
  if (live_tasks_ != 0 || !ready_.empty() || inject_pending_.load(std::memory_order_acquire)) {
    return false;
  }
  for (Outbox& ob : outboxes_) {
    if (ob.ring == nullptr) continue;
    if (ob.pending_head != nullptr || ob.credits_used != 0 || !ob.ring->drained_by_consumer()) {
      return false;
    }
  }
  for (SpscRing* in : inboxes_) {
    if (in != nullptr && in->available() != 0) return false;
  }
  return true;
}

void Reactor::unmark_quiescent() {
  counted_quiescent_ = false;
  rt_.quiescent().fetch_sub(1, std::memory_order_seq_cst);
}

// ---------------------------------------------------------------- the loop

bool Reactor::has_remote_work_after_fence() {
  for (SpscRing* in : inboxes_) {
    if (in != nullptr && in->has_published_relaxed()) return true;
  }
  for (const Outbox& ob : outboxes_) {
    // A consumer that freed slots cleared our flag (and found us awake).
    if (ob.pending_head != nullptr &&
        !ob.ring->producer_waiting().load(std::memory_order_relaxed)) {
      return true;
    }
  }
  if (inject_pending_.load(std::memory_order_relaxed)) return true;
  if (!stop_seen_ && rt_.stopping()) return true;
  // Shutdown: became quiescent since the loop looked (a consumer released our
  // last messages); count it instead of sleeping.
  if (stop_seen_ && !counted_quiescent_ && locally_quiescent()) return true;
  if (counted_quiescent_ && rt_.quiescent().load(std::memory_order_seq_cst) == peers_.size()) {
    return true;
  }
  return false;
}

void Reactor::idle() {
  // (a) Bounded poll: memory-only checks for mailbox messages, injected work,
  // due timers and completions the kernel has posted or flagged. It trades a
  // little CPU for not paying a sleep/wake-up when work arrives within
  // cfg_.idle_poll. Pending I/O still completes during the poll: the
  // TASKRUN flag (DEFER_TASKRUN) or a CQE ends it.
  if (cfg_.idle_poll.count() > 0) {
    // SQEs (e.g. a wake-up for a peer) must not wait for the poll to end.
    if (io_uring_sq_ready(&ring_) > 0) submit_and_get_events();
    const base::TimePoint until = base::BootClock::now() + cfg_.idle_poll;
    for (;;) {
      for (int i = 0; i < kPollSpinsPerClockRead; ++i) {
        for (SpscRing* in : inboxes_) {
          if (in != nullptr && in->available() != 0) return;
        }
        if (inject_pending_.load(std::memory_order_relaxed)) return;
        if (io_uring_cq_ready(&ring_) != 0) return;
        if (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) {
          // Completions wait as deferred task work: only entering the kernel
          // posts them. Returning without entering would spin forever (the
          // loop enters only when it has other work), so enter here.
          submit_and_get_events();
          return;
        }
        _mm_pause();
      }
      const base::TimePoint now = base::BootClock::now();
      if (now >= until) break;
      if (!timers_.empty() && timers_.earliest() <= now) return;
    }
  }

  // (b) Sleep protocol. Order matters:
  //  1. arm the eventfd read (alien wakes, and peer wakes in eventfd mode);
  //  2. sleeping_ = true, then a seq_cst fence: pairs with the producer's
  //     "publish; fence; load sleeping_" (maybe_wake_consumer);
  //  3. re-check every source of remote work: anything published before a
  //     producer's fence is seen here, anything after it finds us sleeping
  //     and wakes us. Skipping 3 would lose a wake-up; doing 3 before 2
  //     would too.
  //  4. sleep until the next timer (or forever), then clear the flag.
  arm_eventfd_read();
  sleeping_.store(true, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (has_remote_work_after_fence()) {
    sleeping_.store(false, std::memory_order_relaxed);
    return;
  }
  __kernel_timespec ts{};
  __kernel_timespec* tsp = nullptr;
  if (!timers_.empty()) {
    int64_t ns = base::to_ns(timers_.earliest() - base::BootClock::now());
    if (ns < 0) ns = 0;
    ts.tv_sec = ns / 1'000'000'000;
    ts.tv_nsec = ns % 1'000'000'000;
    tsp = &ts;
  }
  io_uring_cqe* cqe = nullptr;
  stats_.bump(stats_.sleeps);
  int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, tsp, nullptr);
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
    NORI_PANIC("io_uring_submit_and_wait_timeout: {}", std::strerror(-rc));
  }
  sleeping_.store(false, std::memory_order_relaxed);
}

void Reactor::run() {
  NORI_ASSERT(current_ == this);
  const size_t n_cores = peers_.size();
  for (;;) {
    stats_.bump(stats_.loops);
    bool did = false;
    // 1. Alien injections and 2. mailboxes first: remote work becomes ready
    //    before local tasks run, so a busy core still serves its peers every
    //    round (their replies are then published in step 5 of this round).
    did |= drain_injected();
    did |= drain_mailboxes();
    // 3. Due timers schedule their coroutines (read the clock only if any).
    did |= fire_timers();
    // 4. Resume at most tasks_per_round_max ready coroutines, so I/O
    //    completions and mailboxes are serviced between bursts.
    did |= run_ready();
    // 5. Publish what this round staged for other cores (one release store
    //    and at most one wake-up per destination). Must precede 6 so MSG_RING
    //    wake SQEs go out in this round's submit.
    did |= flush_outgoing();
    // 6. Submit this round's SQEs and collect completions (non-blocking);
    //    CQEs only schedule coroutines, which run in the next round's step 4.
    //    When the ready queue is empty the submit waits one round: if that
    //    round is idle, the sleep's submit-and-wait carries the SQEs (one
    //    syscall instead of two per cross-core wake-up); if it has work, it
    //    submits. So an SQE is never held back for more than one round
    //    that did anything.
    if (!ready_.empty() || (submit_deferred_ && did)) {
      submit_and_get_events();
      submit_deferred_ = false;
    } else {
      submit_deferred_ = io_uring_sq_ready(&ring_) > 0 || ops_in_flight_ > 0;
    }
    did |= reap_cqes();

    if (!stop_seen_ && rt_.stopping()) {
      stop_seen_ = true;
      root_scope_.cancel();
      did = true;
    }
    if (did || !ready_.empty()) continue;

    if (stop_seen_) {
      if (locally_quiescent()) {
        if (!counted_quiescent_) {
          counted_quiescent_ = true;
          if (rt_.quiescent().fetch_add(1, std::memory_order_seq_cst) + 1 == n_cores) {
            for (Reactor* p : peers_) {
              if (p != this) p->wake_from_any_thread();
            }
          }
        }
        if (rt_.quiescent().load(std::memory_order_seq_cst) == n_cores) break;
      } else if (counted_quiescent_) {
        unmark_quiescent();
      }
    }
    // 7. Nothing to do: bounded poll, then sleep in the kernel.
    idle();
  }
  current_ = nullptr;
}

}  // namespace nori::runtime
