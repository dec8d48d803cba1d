#include "bench/nori-bench/floor.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "runtime/base/clock.h"
#include "runtime/runtime.h"

namespace nori::bench {

using base::BootClock;
using base::ErrorKind;

uint64_t FloorResult::floor_ns() const {
  return rtt.percentile(0.5) + std::min(dsync.percentile(0.5), fdatasync.percentile(0.5));
}

namespace {

uint32_t g_slice_us = 0;  // set by measure_floor for its threads

void apply_slice() {
  if (g_slice_us > 0) (void)runtime::set_thread_sched_slice(g_slice_us);
}

bool full_io(int fd, char* buf, size_t n, bool wr) {
  size_t done = 0;
  while (done < n) {
    ssize_t r =
        wr ? ::send(fd, buf + done, n - done, MSG_NOSIGNAL) : ::recv(fd, buf + done, n - done, 0);
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

base::Status measure_rtt(int rounds, runtime::metrics::HistogramSnapshot& out) {
  int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (ls < 0 || ::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(ls, 1) != 0 || ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return base::err(ErrorKind::kIo, "loopback listen: {}", std::strerror(errno));
  }
  std::thread echo([ls] {
    apply_slice();
    int c = ::accept(ls, nullptr, nullptr);
    int one = 1;
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64];
    while (full_io(c, buf, sizeof buf, false) && full_io(c, buf, sizeof buf, true)) {
    }
    ::close(c);
  });
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  base::Status st;
  if (::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    st = base::err(ErrorKind::kIo, "loopback connect: {}", std::strerror(errno));
  } else {
    char buf[64] = {};
    for (int i = 0; i < rounds; ++i) {
      auto t0 = BootClock::now();
      if (!full_io(c, buf, sizeof buf, true) || !full_io(c, buf, sizeof buf, false)) {
        st = base::err(ErrorKind::kIo, "loopback ping-pong failed");
        break;
      }
      if (i >= rounds / 10) out.record(static_cast<uint64_t>((BootClock::now() - t0).count()));
    }
  }
  ::shutdown(c, SHUT_RDWR);
  ::close(c);
  echo.join();
  ::close(ls);
  return st;
}

// One zero-filled file (written with O_DIRECT like a prepared WAL segment,
// so a data sync needs no metadata update), then left to settle: a device
// still flushing what was just written makes the first writes look slow.
base::Status prepare_file(const std::string& path, size_t bytes) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return base::err(ErrorKind::kIo, "create {} with O_DIRECT: {} (tmpfs does not support it)",
                     path, std::strerror(errno));
  }
  void* z = nullptr;
  if (::posix_memalign(&z, 4096, 1 << 20) != 0) NORI_PANIC("posix_memalign");
  std::memset(z, 0, 1 << 20);
  base::Status st;
  if (::fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0) {
    st = base::err(ErrorKind::kIo, "fallocate {}: {}", path, std::strerror(errno));
  }
  for (size_t off = 0; st.ok() && off < bytes; off += 1 << 20) {
    if (::pwrite(fd, z, 1 << 20, static_cast<off_t>(off)) != 1 << 20) {
      st = base::err(ErrorKind::kIo, "write {}: {}", path, std::strerror(errno));
    }
  }
  if (st.ok()) ::fdatasync(fd);
  std::free(z);
  ::close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return st;
}

base::Status measure_disk(const std::string& path, int writes, bool dsync,
                          runtime::metrics::HistogramSnapshot& out) {
  constexpr size_t kBlock = 4096;
  int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC | (dsync ? O_DSYNC : 0));
  if (fd < 0) return base::err(ErrorKind::kIo, "open {}: {}", path, std::strerror(errno));
  void* buf = nullptr;
  if (::posix_memalign(&buf, kBlock, kBlock) != 0) NORI_PANIC("posix_memalign");
  std::memset(buf, 0xAB, kBlock);
  base::Status st;
  for (int i = 0; i < writes; ++i) {
    auto t0 = BootClock::now();
    if (::pwrite(fd, buf, kBlock, static_cast<off_t>(i) * kBlock) != static_cast<ssize_t>(kBlock) ||
        (!dsync && ::fdatasync(fd) != 0)) {
      st = base::err(ErrorKind::kIo, "durable write: {}", std::strerror(errno));
      break;
    }
    out.record(static_cast<uint64_t>((BootClock::now() - t0).count()));
  }
  std::free(buf);
  ::close(fd);
  return st;
}

}  // namespace

// `writers` threads at once, each on its own file, histograms merged.
base::Status measure_disk_parallel(const std::string& dir, unsigned writers, int writes, bool dsync,
                                   runtime::metrics::HistogramSnapshot& out) {
  std::vector<std::string> paths;
  for (unsigned w = 0; w < writers; ++w) {
    paths.push_back(fmt::format("{}/floor-{}.dat", dir, w));
    NORI_TRY(prepare_file(paths.back(), size_t{4096} * static_cast<size_t>(writes) + (1 << 20)));
  }
  std::vector<runtime::metrics::HistogramSnapshot> hs(writers);
  std::vector<base::Status> sts(writers);
  std::vector<std::thread> ts;
  for (unsigned w = 0; w < writers; ++w) {
    ts.emplace_back([&, w] {
      apply_slice();
      sts[w] = measure_disk(paths[w], writes, dsync, hs[w]);
    });
  }
  for (auto& t : ts)
    t.join();
  for (unsigned w = 0; w < writers; ++w) {
    ::unlink(paths[w].c_str());
    NORI_TRY(sts[w]);
    out.merge(hs[w]);
  }
  return {};
}

base::Result<FloorResult> measure_floor(const std::string& dir, int rtt_rounds, int disk_writes,
                                        unsigned writers, uint32_t sched_slice_us) {
  FloorResult f;
  g_slice_us = sched_slice_us;
  apply_slice();  // the round trip's client side runs on this thread
  struct Restore {
    ~Restore() {
      if (g_slice_us > 0) (void)runtime::set_thread_sched_slice(0);
    }
  } restore;
  NORI_TRY(measure_rtt(rtt_rounds, f.rtt));
  NORI_TRY(measure_disk_parallel(dir, writers, disk_writes, true, f.dsync));
  NORI_TRY(measure_disk_parallel(dir, writers, disk_writes, false, f.fdatasync));
  NORI_TRY(measure_disk_parallel(dir, 1, disk_writes / 2, true, f.dsync_alone));
  NORI_TRY(measure_disk_parallel(dir, 1, disk_writes / 2, false, f.fdatasync_alone));
  return f;
}

}  // namespace nori::bench
