#include "net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/io.h"

namespace nori::net {

namespace io = runtime::io;

base::Result<SocketAddress> parse_address(const std::string& host, uint16_t port) {
  SocketAddress a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.length = sizeof(sockaddr_in);
    return a;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.length = sizeof(sockaddr_in6);
    return a;
  }
  return base::err(base::ErrorKind::kInvalidArgument, "'{}' is not a numeric IPv4 or IPv6 address",
                   host);
}

base::Result<int> tcp_socket(int family) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return io::errno_error(errno, "socket");
  return fd;
}

base::Result<int> listen_socket(const SocketAddress& addr, int backlog) {
  NORI_ASSIGN_OR_RETURN(int fd, tcp_socket(addr.family()));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, addr.get(), addr.length) != 0 || ::listen(fd, backlog) != 0) {
    int e = errno;
    ::close(fd);
    return io::errno_error(e, "bind/listen");
  }
  return fd;
}

base::Result<uint16_t> local_port(int fd) {
  sockaddr_storage s{};
  socklen_t len = sizeof s;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len) != 0) {
    return io::errno_error(errno, "getsockname");
  }
  if (s.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&s)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&s)->sin6_port);
}

void tune_connected_socket(int fd, uint32_t user_timeout_ms) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  unsigned t = user_timeout_ms;
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &t, sizeof t);
}

runtime::Task<base::Status> read_exact(int fd, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t got = 0;
  while (got < n) {
    NORI_CO_ASSIGN_OR_RETURN(size_t r, co_await io::recv(fd, p + got, n - got));
    if (r == 0) co_return base::err(base::ErrorKind::kClosed, "peer closed the connection");
    got += r;
  }
  co_return base::Status{};
}

runtime::Task<base::Status> send_all(int fd, std::span<const uint8_t> buf) {
  size_t sent = 0;
  while (sent < buf.size()) {
    NORI_CO_ASSIGN_OR_RETURN(size_t r, co_await io::send(fd, buf.data() + sent, buf.size() - sent));
    sent += r;
  }
  co_return base::Status{};
}

runtime::Task<base::Status> writev_all(int fd, std::vector<iovec>& iov, uint64_t* writevs) {
  size_t first = 0;
  while (first < iov.size()) {
    unsigned count = static_cast<unsigned>(std::min<size_t>(iov.size() - first, IOV_MAX));
    // sendmsg rather than writev: MSG_NOSIGNAL turns a peer that went away
    // into an error value instead of SIGPIPE.
    msghdr msg{};
    msg.msg_iov = iov.data() + first;
    msg.msg_iovlen = count;
    NORI_CO_ASSIGN_OR_RETURN(size_t n, co_await io::sendmsg(fd, &msg));
    if (writevs != nullptr) ++*writevs;
    if (n == 0) co_return base::err(base::ErrorKind::kClosed, "writev wrote nothing");
    // Advance past what the kernel took (short writes are normal on a full socket).
    while (n > 0) {
      iovec& v = iov[first];
      if (n >= v.iov_len) {
        n -= v.iov_len;
        ++first;
      } else {
        v.iov_base = static_cast<char*>(v.iov_base) + n;
        v.iov_len -= n;
        n = 0;
      }
    }
    while (first < iov.size() && iov[first].iov_len == 0)
      ++first;
  }
  co_return base::Status{};
}

}  // namespace nori::net
