// TCP socket helpers for the transport: numeric addresses, listening and
// dialing sockets with the options a peer link needs, and exact-length reads
// and writes as coroutines on the calling reactor's io_uring.
//
// Socket creation and options are plain non-blocking syscalls; every wait
// (accept, connect, recv, send, writev) goes through runtime::io.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/base/result.h"
#include "runtime/task.h"

namespace nori::net {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
};

// A numeric IPv4 or IPv6 address (no name resolution: it could block the reactor).
base::Result<SocketAddress> parse_address(const std::string& host, uint16_t port);

// A listening TCP socket (SO_REUSEADDR) bound to addr.
base::Result<int> listen_socket(const SocketAddress& addr, int backlog = 128);
// The port a bound socket got (for port 0).
base::Result<uint16_t> local_port(int fd);
// A fresh TCP socket for dialing addr's family.
base::Result<int> tcp_socket(int family);
// TCP_NODELAY (batches are already coalesced by the link) and TCP_USER_TIMEOUT
// (unacknowledged data for longer than user_timeout_ms fails the connection).
void tune_connected_socket(int fd, uint32_t user_timeout_ms);

// Reads exactly n bytes (kClosed on EOF before that).
runtime::Task<base::Status> read_exact(int fd, void* buf, size_t n);
// Sends all of buf.
runtime::Task<base::Status> send_all(int fd, std::span<const uint8_t> buf);
// Writes every byte of iov (modified in place as short writes advance it):
// one gathered sendmsg (a writev with MSG_NOSIGNAL) per IOV_MAX entries, more
// only after short writes. Counts the calls in *writevs.
runtime::Task<base::Status> writev_all(int fd, std::vector<iovec>& iov, uint64_t* writevs);

}  // namespace nori::net
