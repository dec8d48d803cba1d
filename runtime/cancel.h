// CancelScope: cooperative cancellation for a tree of tasks.
//
// Every Task runs in a scope (inherited from its awaiter; spawned tasks run in
// their reactor's root scope). Operations that can wait for a long time (I/O,
// sleeps, cross-core calls) register a Cancellable in the current scope while
// they wait. `cancel()` marks the scope and cancels every registered wait:
// in-flight io_uring operations get IORING_OP_ASYNC_CANCEL and complete with
// -ECANCELED (or their real result if they already finished), sleeps end
// with kCancelled. The coroutine then resumes normally and unwinds through
// its own error handling, so buffers on its frame stay valid until the kernel
// is done with them. A wait started in an already-cancelled scope fails at
// once without reaching the kernel.
//
// Child scopes (with_timeout) register in their parent: cancelling a parent
// cancels its children. Single-threaded: a scope belongs to one reactor.
#pragma once

#include <boost/intrusive/list.hpp>

#include "runtime/base/assert.h"

namespace nori::runtime {

class Cancellable : public boost::intrusive::list_base_hook<
                        boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
 public:
  // Called at most once per registration, on the owning reactor's thread.
  virtual void cancel() = 0;

 protected:
  ~Cancellable() = default;
};

class CancelScope {
 public:
  explicit CancelScope(CancelScope* parent = nullptr) : link_(this) {
    if (parent != nullptr) {
      if (parent->cancelled()) {
        cancelled_ = true;
      } else {
        parent->members_.push_back(link_);
      }
    }
  }
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
  // Normally every member has finished (and unlinked itself) by now. When a
  // frame is torn down out of order (a coroutine destroyed mid-await destroys
  // its locals before its parameters, e.g. with_timeout's scope before the
  // task it runs), members may outlive the scope: detach them so their own
  // destruction later touches nothing of ours.
  ~CancelScope() { members_.clear(); }

  bool cancelled() const { return cancelled_; }

  // Registers a wait. Returns false (and registers nothing) when the scope is
  // already cancelled: the caller must then fail the wait itself.
  [[nodiscard]] bool add(Cancellable& c) {
    if (cancelled_) return false;
    members_.push_back(c);
    return true;
  }

  void cancel() {
    if (cancelled_) return;
    cancelled_ = true;
    // Pop before calling: a member's cancel() may finish other members (and
    // they unlink themselves), so the list is never iterated while it changes.
    while (!members_.empty()) {
      Cancellable& c = members_.front();
      members_.pop_front();
      c.cancel();
    }
  }

 private:
  struct ChildLink final : Cancellable {
    explicit ChildLink(CancelScope* s) : self(s) {}
    void cancel() override { self->cancel(); }
    CancelScope* self;
  };
  ChildLink link_;
  bool cancelled_ = false;
  boost::intrusive::list<Cancellable, boost::intrusive::constant_time_size<false>> members_;
};

}  // namespace nori::runtime
