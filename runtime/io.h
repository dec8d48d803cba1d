// io_uring operations as awaitables, for code running on a reactor.
//
//   NORI_CO_ASSIGN_OR_RETURN(int fd, co_await io::openat(AT_FDCWD, path, O_RDWR | O_DIRECT, 0644));
//   NORI_CO_ASSIGN_OR_RETURN(size_t n, co_await io::write(fd, buf, len, offset, RWF_DSYNC));
//   NORI_CO_TRY(co_await io::fdatasync(fd));
//   NORI_CO_ASSIGN_OR_RETURN(size_t revents, co_await io::poll(fd, POLLIN));
//
// Each call fills one SQE on the current reactor's ring when awaited; the SQE
// is submitted with the rest of the loop round's SQEs and the coroutine
// resumes from its CQE. Results: byte counts and fds as base::Result<size_t>
// / base::Result<int>, the rest as base::Status. A failure maps errno to an
// ErrorKind (ECANCELED -> kCancelled, ETIME -> kTimedOut, ENOSPC -> kNoSpace,
// ENOENT -> kNotFound, ECONNRESET/EPIPE/ENOTCONN -> kClosed, EINVAL ->
// kInvalidArgument, else kIo) and keeps errno in Error::hint(). Short reads and
// writes are returned as they are (the caller loops).
//
// Lifetimes: buffers, iovec arrays, msghdrs, paths and addresses must stay
// valid until the co_await returns (they usually live on the awaiting frame).
// Cancellation: when the awaiting coroutine's CancelScope is cancelled, the
// operation is cancelled in the kernel and completes with kCancelled (or its
// real result if it had already finished: check it, e.g. a write may have
// happened). If the awaiting coroutine is destroyed while the operation is in
// flight, the destructor cancels it and waits for its CQE (Reactor::
// cancel_and_wait), so the kernel never touches freed memory and no
// completion resumes a destroyed frame.
#pragma once

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <string_view>

#include "runtime/base/result.h"
#include "runtime/cancel.h"
#include "runtime/reactor.h"
#include "runtime/task.h"

namespace nori::runtime::io {

// errno (positive) -> Error with a mapped kind; `what` names the operation.
base::Error errno_error(int err, std::string_view what);

// The state the kernel's user_data points to, owned by the awaitable.
class IoOp : public Completion, private Cancellable {
 public:
  explicit IoOp(const char* what) : Completion(&IoOp::on_cqe_fn), what_(what) {}
  IoOp(const IoOp&) = delete;
  IoOp& operator=(const IoOp&) = delete;
  ~IoOp() {
    if (in_flight_) {
      orphaned_ = true;
      reactor_->cancel_and_wait(this, done_);
    }
  }

  // Fills the SQE via prep and registers the wait; false = did not suspend
  // (the scope was already cancelled; res() is -ECANCELED).
  template <typename Prep, typename P>
  bool start(Prep& prep, std::coroutine_handle<P> h) {
    if constexpr (detail::ScopedPromise<P>) {
      CancelScope* s = h.promise().scope_;
      if (s != nullptr && !s->add(*this)) {
        res_ = -ECANCELED;
        done_ = true;
        return false;
      }
    }
    reactor_ = &Reactor::here();
    io_uring_sqe* sqe = reactor_->get_sqe();
    prep(sqe);
    io_uring_sqe_set_data(sqe, static_cast<Completion*>(this));
    waiter_.handle = h;
    in_flight_ = true;
    reactor_->op_started();
    return true;
  }
  int32_t res() const { return res_; }
  uint32_t cqe_flags() const { return flags_; }
  const char* what() const { return what_; }

 private:
  static void on_cqe_fn(Completion* c, int32_t res, uint32_t flags) {
    auto* op = static_cast<IoOp*>(c);
    op->res_ = res;
    op->flags_ = flags;
    op->in_flight_ = false;
    op->done_ = true;
    op->reactor_->op_finished();
    op->Cancellable::unlink();
    if (!op->orphaned_) op->reactor_->schedule(op->waiter_);
  }
  void cancel() override {
    if (in_flight_) reactor_->cancel_op(this);
  }

  const char* what_;
  Reactor* reactor_ = nullptr;
  Schedulable waiter_;
  int32_t res_ = 0;
  uint32_t flags_ = 0;
  bool in_flight_ = false;
  bool done_ = false;
  bool orphaned_ = false;
};

// Result mappings.
struct AsBytes {
  using type = base::Result<size_t>;
  static type map(int32_t res, const char* what) {
    if (res < 0) return errno_error(-res, what);
    return static_cast<size_t>(res);
  }
};
struct AsFd {
  using type = base::Result<int>;
  static type map(int32_t res, const char* what) {
    if (res < 0) return errno_error(-res, what);
    return static_cast<int>(res);
  }
};
struct AsStatus {
  using type = base::Status;
  static type map(int32_t res, const char* what) {
    if (res < 0) return errno_error(-res, what);
    return {};
  }
};
// Raw: the CQE's res (negative errno on failure).
struct AsRaw {
  using type = int32_t;
  static type map(int32_t res, const char*) { return res; }
};

template <typename Prep, typename Map>
class [[nodiscard]] IoAwaitable {
 public:
  IoAwaitable(const char* what, Prep prep) : op_(what), prep_(std::move(prep)) {}
  bool await_ready() const noexcept { return false; }
  template <typename P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return op_.start(prep_, h);
  }
  typename Map::type await_resume() { return Map::map(op_.res(), op_.what()); }

 private:
  IoOp op_;
  Prep prep_;
};

template <typename Map, typename Prep>
IoAwaitable<Prep, Map> make_op(const char* what, Prep prep) {
  return IoAwaitable<Prep, Map>(what, std::move(prep));
}

// A raw operation: prep fills the SQE (not its user_data); co_await yields the CQE res.
template <typename Prep>
auto raw(const char* what, Prep prep) {
  return make_op<AsRaw>(what, std::move(prep));
}

// The largest single read/write (the SQE's length field is 32 bits; Linux
// caps one transfer at 0x7ffff000 bytes anyway).
inline constexpr size_t kIoBytesMax = 0x7ffff000;

// ---- files ----
inline auto openat(int dirfd, const char* path, int flags, mode_t mode) {
  return make_op<AsFd>("openat", [=](io_uring_sqe* s) {
    io_uring_prep_openat(s, dirfd, path, flags | O_CLOEXEC, mode);
  });
}
inline auto close(int fd) {
  return make_op<AsStatus>("close", [=](io_uring_sqe* s) { io_uring_prep_close(s, fd); });
}
// rw_flags: RWF_DSYNC, RWF_HIPRI, ... (0 = none). offset -1 = current position.
inline auto read(int fd, void* buf, size_t len, uint64_t offset, int rw_flags = 0) {
  NORI_ASSERT(len <= kIoBytesMax, "read of {} bytes", len);
  return make_op<AsBytes>("read", [=](io_uring_sqe* s) {
    io_uring_prep_read(s, fd, buf, static_cast<unsigned>(len), offset);
    s->rw_flags = rw_flags;
  });
}
inline auto write(int fd, const void* buf, size_t len, uint64_t offset, int rw_flags = 0) {
  NORI_ASSERT(len <= kIoBytesMax, "write of {} bytes", len);
  return make_op<AsBytes>("write", [=](io_uring_sqe* s) {
    io_uring_prep_write(s, fd, buf, static_cast<unsigned>(len), offset);
    s->rw_flags = rw_flags;
  });
}
inline auto readv(int fd, const iovec* iov, unsigned iovcnt, uint64_t offset, int rw_flags = 0) {
  return make_op<AsBytes>("readv", [=](io_uring_sqe* s) {
    io_uring_prep_readv2(s, fd, iov, iovcnt, offset, rw_flags);
  });
}
inline auto writev(int fd, const iovec* iov, unsigned iovcnt, uint64_t offset, int rw_flags = 0) {
  return make_op<AsBytes>("writev", [=](io_uring_sqe* s) {
    io_uring_prep_writev2(s, fd, iov, iovcnt, offset, rw_flags);
  });
}
inline auto fsync(int fd) {
  return make_op<AsStatus>("fsync", [=](io_uring_sqe* s) { io_uring_prep_fsync(s, fd, 0); });
}
inline auto fdatasync(int fd) {
  return make_op<AsStatus>(
      "fdatasync", [=](io_uring_sqe* s) { io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC); });
}
// mode: 0 (allocate, extend size), FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE, ...
inline auto fallocate(int fd, int mode, uint64_t offset, uint64_t len) {
  return make_op<AsStatus>(
      "fallocate", [=](io_uring_sqe* s) { io_uring_prep_fallocate(s, fd, mode, offset, len); });
}

// ---- sockets ----
// addr/addrlen may be null; *addrlen is in-out as for accept(2).
inline auto accept(int fd, sockaddr* addr, socklen_t* addrlen, int flags = 0) {
  return make_op<AsFd>("accept", [=](io_uring_sqe* s) {
    io_uring_prep_accept(s, fd, addr, addrlen, flags | SOCK_CLOEXEC);
  });
}
inline auto connect(int fd, const sockaddr* addr, socklen_t addrlen) {
  return make_op<AsStatus>("connect",
                           [=](io_uring_sqe* s) { io_uring_prep_connect(s, fd, addr, addrlen); });
}
inline auto recv(int fd, void* buf, size_t len, int flags = 0) {
  return make_op<AsBytes>("recv",
                          [=](io_uring_sqe* s) { io_uring_prep_recv(s, fd, buf, len, flags); });
}
// MSG_NOSIGNAL is always added: a closed peer is an error value, not SIGPIPE.
inline auto send(int fd, const void* buf, size_t len, int flags = 0) {
  return make_op<AsBytes>(
      "send", [=](io_uring_sqe* s) { io_uring_prep_send(s, fd, buf, len, flags | MSG_NOSIGNAL); });
}
inline auto sendmsg(int fd, const msghdr* msg, int flags = 0) {
  return make_op<AsBytes>("sendmsg", [=](io_uring_sqe* s) {
    io_uring_prep_sendmsg(s, fd, msg, static_cast<unsigned>(flags | MSG_NOSIGNAL));
  });
}
inline auto recvmsg(int fd, msghdr* msg, int flags = 0) {
  return make_op<AsBytes>("recvmsg", [=](io_uring_sqe* s) {
    io_uring_prep_recvmsg(s, fd, msg, static_cast<unsigned>(flags));
  });
}
inline auto shutdown(int fd, int how) {
  return make_op<AsStatus>("shutdown",
                           [=](io_uring_sqe* s) { io_uring_prep_shutdown(s, fd, how); });
}

// Waits until fd is ready for `events` (POLLIN, POLLOUT, ...); yields the
// ready mask (POLLERR/POLLHUP included when they happen).
inline auto poll(int fd, unsigned events) {
  return make_op<AsBytes>("poll", [=](io_uring_sqe* s) { io_uring_prep_poll_add(s, fd, events); });
}

// ---- time and cancellation in the kernel ----
// A kernel timeout (IORING_OP_TIMEOUT). Completes ok after d; kCancelled when
// cancelled. (sleep_for in reactor.h uses the reactor's timer set instead and
// costs no SQE; this exists for callers that want the kernel's clock.)
class KernelTimeout {
 public:
  explicit KernelTimeout(base::Duration d) {
    const int64_t ns = base::to_ns(d);
    ts_.tv_sec = ns / 1'000'000'000;
    ts_.tv_nsec = ns % 1'000'000'000;
  }
  bool await_ready() const noexcept { return false; }
  template <typename P>
  bool await_suspend(std::coroutine_handle<P> h) {
    auto prep = [this](io_uring_sqe* s) {
      io_uring_prep_timeout(s, &ts_, 0, IORING_TIMEOUT_BOOTTIME);
    };
    return op_.start(prep, h);
  }
  base::Status await_resume() {
    // -ETIME is the normal expiry of a timeout op.
    if (op_.res() == -ETIME || op_.res() == 0) return {};
    return errno_error(-op_.res(), "timeout");
  }

 private:
  __kernel_timespec ts_{};
  IoOp op_{"timeout"};
};
inline KernelTimeout timeout(base::Duration d) {
  return KernelTimeout(d);
}

// Cancels every in-flight operation on fd (IORING_ASYNC_CANCEL_FD | _ALL);
// yields how many were cancelled.
inline auto cancel_fd(int fd) {
  return make_op<AsBytes>("cancel_fd", [=](io_uring_sqe* s) {
    io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL);
  });
}

}  // namespace nori::runtime::io
