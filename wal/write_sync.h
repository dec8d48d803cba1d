// WriteSync: one write followed by fdatasync of the same file, submitted to
// the reactor's io_uring as one IOSQE_IO_LINK chain, for the WAL's durable
// writes when WalOptions::linked_sync is on (wal/wal.cc write_one; off by
// default: docs/wal.md, "Linked write + sync", has the measurements).
//
//   auto r = co_await WriteSync(fd, buf, len, offset);
//   if (r.written < 0) ... the write failed (-errno); nothing was synced
//   else if (r.written < len) ... short write: the link broke, nothing was
//                                 synced; write the rest (and sync) again
//   else if (r.sync_res < 0) ... the data sync failed (-errno)
//   else ... [offset, offset + len) is durable
//
// Why: issued as two awaited operations, the sync is only submitted after
// the write's completion has woken the reactor and resumed the coroutine (a
// reactor round trip, on a shared machine a scheduler wake-up, per durable
// write). Linked, the kernel starts the sync itself when the write
// completes. The write carries IOSQE_CQE_SKIP_SUCCESS, so a chain posts
// exactly one CQE: the sync's when the write wrote every byte; the write's
// when it failed or was short (a short write counts as failed for links, and
// the kernel then posts no CQE for the cancelled sync: REQ_F_SKIP_LINK_CQES,
// since Linux 5.17 together with CQE_SKIP). The awaiter therefore resumes
// once, from one completion, on one wake-up.
//
// Ordering: the sync starts only after the write completed in full (the link
// guarantees it), so a sync result of 0 covers these bytes. Both SQEs go into
// one submission (Reactor::reserve_sqes): a submit between them would leave
// the sync unlinked, free to run before the write and report durable bytes
// that are not.
//
// Supported only where the kernel reports IORING_FEAT_CQE_SKIP
// (write_sync_supported(); probed once per process); callers fall back to
// io::write + io::fdatasync elsewhere.
// Threads: a reactor thread; the awaitable must be awaited where created.
// Cancellation: the scope's cancel asks the kernel to cancel both parts; the
// result then shows what happened (a write that completed in full reports
// written == len with sync_res -ECANCELED when the sync did not run).
// Destroyed while in flight: waits for the chain's CQE (no completion ever
// touches freed memory).
#pragma once

#include <liburing.h>

#include <cerrno>
#include <cstdint>

#include "runtime/cancel.h"
#include "runtime/reactor.h"
#include "runtime/task.h"

namespace nori::wal {

// True when linked write + sync chains post the one CQE this file relies on.
bool write_sync_supported();

struct WriteSyncResult {
  int32_t written = 0;            // bytes written, or -errno of the write
  int32_t sync_res = -ECANCELED;  // 0, or -errno; -ECANCELED: the sync did not run
  bool durable(uint32_t len) const {
    return written >= 0 && uint32_t(written) == len && sync_res == 0;
  }
};

class [[nodiscard]] WriteSync : private runtime::Cancellable {
 public:
  WriteSync(int fd, const void* buf, uint32_t len, uint64_t offset)
      : fd_(fd), buf_(buf), len_(len), offset_(offset) {}
  WriteSync(const WriteSync&) = delete;
  WriteSync& operator=(const WriteSync&) = delete;
  ~WriteSync() {
    if (in_flight_) {
      orphaned_ = true;
      reactor_->cancel_and_wait(&sync_part_, done_);
    }
  }

  bool await_ready() const noexcept { return false; }
  template <typename P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if constexpr (runtime::detail::ScopedPromise<P>) {
      runtime::CancelScope* s = h.promise().scope_;
      if (s != nullptr && !s->add(*this)) {
        result_.written = -ECANCELED;
        done_ = true;
        return false;
      }
    }
    waiter_.handle = h;
    start();
    return true;
  }
  WriteSyncResult await_resume() const { return result_; }

 private:
  struct Part : runtime::Completion {
    Part(OnCqe f, WriteSync* s) : Completion(f), self(s) {}
    WriteSync* self;
  };
  void start();
  void finish();
  static void on_write_cqe(runtime::Completion* c, int32_t res, uint32_t flags);
  static void on_sync_cqe(runtime::Completion* c, int32_t res, uint32_t flags);
  void cancel() override;

  int fd_;
  const void* buf_;
  uint32_t len_;
  uint64_t offset_;
  runtime::Reactor* reactor_ = nullptr;
  runtime::Schedulable waiter_;
  Part write_part_{&WriteSync::on_write_cqe, this};
  Part sync_part_{&WriteSync::on_sync_cqe, this};
  WriteSyncResult result_;
  bool in_flight_ = false;
  bool done_ = false;
  bool orphaned_ = false;
};

}  // namespace nori::wal
