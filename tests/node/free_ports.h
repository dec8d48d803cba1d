// Loopback listen ports for multi-node tests (in-process and multi-process).
//
// A block of `span` consecutive ports, each checked free by binding it, taken
// BELOW the kernel's ephemeral range (ip_local_port_range): a port picked by
// bind(0) is an ephemeral one, and the test's own outgoing connections (or a
// parallel test's) could take base+1 as their local port before the node
// listening there starts ("bind/listen: Address already in use").
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <random>
#include <vector>

namespace nori::testing {

inline uint16_t free_port_block(unsigned span) {
  unsigned ephemeral_low = 32768;
  {
    std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
    unsigned lo = 0, hi = 0;
    if (f >> lo >> hi && lo > 12000) ephemeral_low = lo;
  }
  const unsigned low = 10000, high = ephemeral_low - span;  // [low, high)
  std::mt19937 rng(
      static_cast<uint32_t>(::getpid()) ^
      static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    const unsigned base = low + rng() % (high - low);
    std::vector<int> fds;
    bool ok = true;
    for (unsigned k = 0; k < span && ok; ++k) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(base + k));
      ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      if (fd >= 0) fds.push_back(fd);
    }
    for (int fd : fds)
      ::close(fd);
    if (ok) return static_cast<uint16_t>(base);
  }
  return 0;
}

}  // namespace nori::testing
