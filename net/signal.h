// Signal: wakes one coroutine parked on it, on the same reactor. A notify()
// with nobody waiting is remembered, so the next wait() returns at once: the
// link's writer parks here until a message, a heartbeat or a keep-alive is
// due, and a notify() between its check and its park is never lost.
//
// Waiting is cancellable through the waiter's CancelScope (the wait then
// yields kCancelled). Single reactor, single waiter at a time.
//
// WaitList: any number of coroutines wait until the next notify_all() (no
// memory of past notifications): senders blocked on a full queue wait here
// for the writer to take the queue.
#pragma once

#include <boost/intrusive/list.hpp>

#include "runtime/base/result.h"
#include "runtime/cancel.h"
#include "runtime/reactor.h"
#include "runtime/task.h"

namespace nori::net {

class Signal {
 public:
  class Wait final : private runtime::Cancellable {
   public:
    explicit Wait(Signal* s) : signal_(s) {}
    Wait(const Wait&) = delete;
    Wait& operator=(const Wait&) = delete;
    ~Wait() {
      if (signal_->waiter_ == this) signal_->waiter_ = nullptr;
    }

    bool await_ready() {
      if (!signal_->pending_) return false;
      signal_->pending_ = false;
      return true;
    }
    template <typename P>
    bool await_suspend(std::coroutine_handle<P> h) {
      NORI_ASSERT(signal_->waiter_ == nullptr, "two waiters on one Signal");
      if constexpr (runtime::detail::ScopedPromise<P>) {
        runtime::CancelScope* s = h.promise().scope_;
        if (s != nullptr && !s->add(*this)) {
          cancelled_ = true;
          return false;
        }
      }
      entry_.handle = h;
      signal_->waiter_ = this;
      return true;
    }
    base::Status await_resume() {
      Cancellable::unlink();
      if (cancelled_) return base::Error(base::ErrorKind::kCancelled, "wait cancelled");
      return {};
    }

   private:
    friend class Signal;
    void wake() {
      // Leave the scope first: a cancel() after this must not schedule twice.
      Cancellable::unlink();
      runtime::Reactor::here().schedule(entry_);
    }
    void cancel() override {
      cancelled_ = true;
      if (signal_->waiter_ == this) signal_->waiter_ = nullptr;
      runtime::Reactor::here().schedule(entry_);
    }
    Signal* signal_;
    runtime::Schedulable entry_;
    bool cancelled_ = false;
  };

  void notify() {
    if (waiter_ != nullptr) {
      Wait* w = waiter_;
      waiter_ = nullptr;
      w->wake();
    } else {
      pending_ = true;
    }
  }
  Wait wait() { return Wait(this); }
  bool has_waiter() const { return waiter_ != nullptr; }

 private:
  Wait* waiter_ = nullptr;
  bool pending_ = false;
};

// A cancellable sleep built on Signal: ok after d, kCancelled if the
// caller's scope is cancelled first. (runtime::sleep_for at 5f1d206 schedules
// its waiter twice when the scope is cancelled after the timer fired but
// before the sleeper resumed; a Signal wait leaves the scope when it is woken,
// so that race cannot happen here.)
inline runtime::Task<base::Status> sleep_for(base::Duration d) {
  Signal fired;
  runtime::Timer timer([&fired] { fired.notify(); });
  timer.arm_in(d);
  co_return co_await fired.wait();
}

class WaitList {
 public:
  class Wait final : private runtime::Cancellable {
   public:
    explicit Wait(WaitList* l) : list_(l) {}
    Wait(const Wait&) = delete;
    Wait& operator=(const Wait&) = delete;

    bool await_ready() const noexcept { return false; }
    template <typename P>
    bool await_suspend(std::coroutine_handle<P> h) {
      if constexpr (runtime::detail::ScopedPromise<P>) {
        runtime::CancelScope* s = h.promise().scope_;
        if (s != nullptr && !s->add(*this)) {
          cancelled_ = true;
          return false;
        }
      }
      entry_.handle = h;
      list_->waiters_.push_back(node_);
      return true;
    }
    base::Status await_resume() {
      Cancellable::unlink();
      if (cancelled_) return base::Error(base::ErrorKind::kCancelled, "wait cancelled");
      return {};
    }

   private:
    friend class WaitList;
    struct Node : boost::intrusive::list_base_hook<
                      boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
      Wait* self;
    };
    void wake() {
      Cancellable::unlink();
      runtime::Reactor::here().schedule(entry_);
    }
    void cancel() override {
      cancelled_ = true;
      node_.unlink();
      runtime::Reactor::here().schedule(entry_);
    }
    WaitList* list_;
    Node node_{{}, this};
    runtime::Schedulable entry_;
    bool cancelled_ = false;
  };

  void notify_all() {
    while (!waiters_.empty()) {
      Wait::Node& n = waiters_.front();
      waiters_.pop_front();
      n.self->wake();
    }
  }
  Wait wait() { return Wait(this); }
  bool empty() const { return waiters_.empty(); }

 private:
  boost::intrusive::list<Wait::Node, boost::intrusive::constant_time_size<false>> waiters_;
};

}  // namespace nori::net
