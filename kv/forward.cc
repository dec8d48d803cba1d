#include "kv/forward.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "net/socket.h"
#include "runtime/combinators.h"
#include "runtime/io.h"

namespace nori::kv {

namespace io = runtime::io;
using base::ErrorKind;

ForwardLink::~ForwardLink() {
  if (fd_ >= 0) ::close(fd_);
}

void ForwardLink::fail_all(const std::string& why) {
  ++gen_;
  if (fd_ >= 0) {
    // shutdown wakes our own reader; the fd is closed when it exits.
    ::shutdown(fd_, SHUT_RDWR);
    fd_ = -1;
  }
  out_.clear();
  writing_ = false;
  std::deque<Pending> failed;
  failed.swap(pending_);
  for (auto& p : failed) {
    p.slot->resolve(base::Error(ErrorKind::kOutcomeUnknown, "forward link failed: " + why));
  }
}

runtime::Task<base::Status> ForwardLink::connect() {
  NORI_CO_ASSIGN_OR_RETURN(net::SocketAddress addr, net::parse_address(host_, port_));
  NORI_CO_ASSIGN_OR_RETURN(int fd, net::tcp_socket(addr.family()));
  auto st = co_await runtime::with_timeout(
      std::chrono::milliseconds(opt_.connect_timeout_ms),
      [](int fd, net::SocketAddress a) -> runtime::Task<base::Status> {
        co_return co_await io::connect(fd, a.get(), a.length);
      }(fd, addr));
  if (!st.ok()) {
    ::close(fd);
    co_return base::Error(ErrorKind::kIo, "forward connect: " + st.error().to_string());
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fd_ = fd;
  ++gen_;
  runtime::spawn(reader(gen_));
  runtime::spawn(watchdog(gen_));
  co_return base::ok_status();
}

runtime::Task<base::Result<std::string>> ForwardLink::call(std::string request) {
  if (fd_ < 0) {
    if (connecting_) {
      // Another call is connecting: wait for its outcome instead of failing
      // (that failure cost each concurrent first forward a retry and a 10 ms
      // back-off in the server).
      if (pending_.size() + connect_waiters_.size() >= opt_.inflight_max) {
        co_return base::Error(ErrorKind::kBusy, "forward link full");
      }
      runtime::OneShot<base::Status> connected;
      connect_waiters_.push_back(&connected);
      auto st = co_await connected;
      if (!st.ok()) co_return st.error();
      // It connected, but the link may have failed again since: nothing of
      // ours was sent, so this one certainly did not take effect.
      if (fd_ < 0) co_return base::Error(ErrorKind::kIo, "forward link failed after connecting");
    } else {
      connecting_ = true;
      auto st = co_await connect();
      connecting_ = false;
      std::vector<runtime::OneShot<base::Status>*> waiters;
      waiters.swap(connect_waiters_);
      for (auto* w : waiters)
        w->resolve(st);
      if (!st.ok()) co_return st.error();
    }
  }
  if (pending_.size() >= opt_.inflight_max) {
    co_return base::Error(ErrorKind::kBusy, "forward link full");
  }
  runtime::OneShot<base::Result<std::string>> slot;
  out_ += request;
  pending_.push_back({&slot, base::BootClock::now()});
  ++requests_;
  if (!writing_) {
    writing_ = true;
    runtime::spawn(writer(gen_));
  }
  co_return co_await slot;
}

runtime::Task<void> ForwardLink::writer(uint64_t gen) {
  std::string buf;
  while (gen == gen_ && !out_.empty()) {
    buf.clear();
    buf.swap(out_);
    auto st = co_await net::send_all(
        fd_, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(buf.data()), buf.size()));
    if (!st.ok()) {
      if (gen == gen_) fail_all("send: " + st.error().to_string());
      break;
    }
  }
  // A writer of an older connection leaves writing_ alone: fail_all cleared
  // it, and a newer writer may own it now.
  if (gen == gen_) writing_ = false;
}

runtime::Task<void> ForwardLink::reader(uint64_t gen) {
  const int fd = fd_;
  std::string in;
  char buf[16384];
  while (gen == gen_) {
    auto n = co_await io::recv(fd, buf, sizeof buf);
    if (gen != gen_) break;
    if (!n.ok() || *n == 0) {
      fail_all(n.ok() ? std::string("peer closed") : n.error().to_string());
      break;
    }
    in.append(buf, *n);
    while (!in.empty()) {
      auto end = scan_reply(in, opt_.limits);
      if (!end.ok()) {
        fail_all("bad reply: " + end.error().to_string());
        break;
      }
      if (*end == 0) break;
      if (pending_.empty()) {
        fail_all("reply without a request");
        break;
      }
      Pending p = pending_.front();
      pending_.pop_front();
      p.slot->resolve(in.substr(0, *end));
      in.erase(0, *end);
    }
  }
  ::close(fd);
}

runtime::Task<void> ForwardLink::watchdog(uint64_t gen) {
  const auto limit = std::chrono::milliseconds(opt_.reply_timeout_ms);
  while (gen == gen_) {
    auto st = co_await runtime::sleep_for(std::chrono::milliseconds(100));
    if (!st.ok()) {  // shutting down
      if (gen == gen_) fail_all("shutting down");
      co_return;
    }
    if (gen == gen_ && !pending_.empty() &&
        base::BootClock::now() - pending_.front().sent > limit) {
      fail_all("no reply in time");
    }
  }
}

}  // namespace nori::kv
