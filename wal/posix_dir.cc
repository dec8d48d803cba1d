#include "wal/posix_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>

#include "runtime/base/bytes.h"

namespace nori::wal {

using base::ErrorKind;

namespace {
base::Error sys_error(std::string_view what, const std::string& path, int e) {
  return base::err(e == ENOSPC   ? ErrorKind::kNoSpace
                   : e == ENOENT ? ErrorKind::kNotFound
                                 : ErrorKind::kIo,
                   "{} {}: {}", what, path, std::strerror(e));
}
}  // namespace

base::Result<std::vector<std::string>> PosixSegmentSource::list() {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return sys_error("opendir", dir_, errno);
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

namespace {

constexpr uint64_t kReadChunkBytes = uint64_t{1} << 20;
constexpr unsigned kReadsInFlight = 8;

// Buffered sequential reads (fallback where O_DIRECT is refused, e.g. tmpfs).
base::Status read_buffered(int fd, const std::string& path, uint64_t size, std::string* out) {
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  uint64_t at = 0;
  while (at < size) {
    ssize_t n = ::pread(fd, out->data() + at, std::min<uint64_t>(4 * kReadChunkBytes, size - at),
                        static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error("read", path, n < 0 ? errno : EIO);
    at += static_cast<uint64_t>(n);
  }
  return {};
}

// O_DIRECT reads, kReadsInFlight at a time, through a private io_uring: the
// disk sees a queue, not one request at a time. Used at open, before the
// log's reactor serves anything.
base::Status read_direct(int fd, const std::string& path, uint64_t size, std::string* out) {
  io_uring ring;
  if (io_uring_queue_init(kReadsInFlight, &ring, 0) != 0) return base::err(ErrorKind::kIo, "ring");
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> bufs(
      static_cast<char*>(std::aligned_alloc(4096, kReadsInFlight * kReadChunkBytes)));
  uint64_t next = 0;
  unsigned in_flight = 0;
  base::Status st;
  auto submit = [&](unsigned slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    const uint64_t n = std::min(kReadChunkBytes, base::align_up(size - next, 4096));
    io_uring_prep_read(sqe, fd, bufs.get() + slot * kReadChunkBytes, static_cast<unsigned>(n),
                       next);
    io_uring_sqe_set_data64(sqe, (next << 8) | slot);
    next += std::min(kReadChunkBytes, size - next);
    ++in_flight;
  };
  for (unsigned slot = 0; slot < kReadsInFlight && next < size; ++slot)
    submit(slot);
  while (in_flight > 0) {
    io_uring_submit(&ring);
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&ring, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) {
      st = sys_error("io_uring_wait_cqe", path, -rc);
      break;
    }
    const uint64_t data = io_uring_cqe_get_data64(cqe);
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    --in_flight;
    const unsigned slot = static_cast<unsigned>(data & 0xff);
    const uint64_t off = data >> 8;
    const uint64_t want = std::min(kReadChunkBytes, size - off);
    if (res < 0 || static_cast<uint64_t>(res) < want) {
      if (st.ok()) st = sys_error("read", path, res < 0 ? -res : EIO);
      continue;  // drain the rest before returning
    }
    std::memcpy(out->data() + off, bufs.get() + slot * kReadChunkBytes, want);
    if (st.ok() && next < size) submit(slot);
  }
  io_uring_queue_exit(&ring);
  return st;
}

}  // namespace

base::Status PosixSegmentSource::read_all(const std::string& name, uint64_t bytes_max,
                                          std::string* out) {
  const std::string path = dir_ + "/" + name;
  bool direct = true;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  if (fd < 0 && errno == EINVAL) {
    direct = false;
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) return sys_error("open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return sys_error("fstat", path, e);
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > bytes_max) {
    ::close(fd);
    return base::err(ErrorKind::kCorruption, "{} is {} bytes, more than {}", path, size, bytes_max);
  }
  out->resize(size);
  auto status = direct ? read_direct(fd, path, size, out) : read_buffered(fd, path, size, out);
  ::close(fd);
  return status;
}

base::Status PosixSegmentSource::read_head(const std::string& name, uint64_t n, std::string* out) {
  const std::string path = dir_ + "/" + name;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("open", path, errno);
  out->resize(n);
  uint64_t at = 0;
  while (at < n) {
    ssize_t r = ::pread(fd, out->data() + at, n - at, static_cast<off_t>(at));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      ::close(fd);
      return sys_error("read", path, e);
    }
    if (r == 0) break;
    at += static_cast<uint64_t>(r);
  }
  out->resize(at);
  ::close(fd);
  return {};
}

base::Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sys_error("open", dir, errno);
  if (::fsync(fd) != 0) {
    // After a failed fsync the directory's state cannot be trusted.
    NORI_PANIC("fsync of WAL directory {} failed: {}", dir, std::strerror(errno));
  }
  ::close(fd);
  return {};
}

base::Status make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir", dir, errno);
  return {};
}

base::Status write_file_durably(const std::string& dir, const std::string& name,
                                std::string_view text) {
  const std::string tmp = dir + "/" + name + ".tmp";
  const std::string dst = dir + "/" + name;
  const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  int fd = ::open(tmp.c_str(), flags, 0644);  // reactor-ok: rare, tiny
  if (fd < 0) {
    return base::Error(base::ErrorKind::kIo,
                       fmt::format("create {}: {}", tmp, std::strerror(errno)));
  }
  const size_t n = text.size();
  const bool ok =
      ::write(fd, text.data(), n) == static_cast<ssize_t>(n) &&  // reactor-ok: rare, tiny
      ::fsync(fd) == 0;                                          // reactor-ok: rare, tiny
  const int saved = errno;
  ::close(fd);
  if (!ok) {
    return base::Error(base::ErrorKind::kIo,
                       fmt::format("write {}: {}", tmp, std::strerror(saved)));
  }
  if (::rename(tmp.c_str(), dst.c_str()) != 0) {
    return base::Error(base::ErrorKind::kIo,
                       fmt::format("rename {}: {}", dst, std::strerror(errno)));
  }
  return fsync_dir(dir);
}

base::Status for_each_line(const std::string& path,
                           const std::function<base::Status(int, const std::string&)>& fn) {
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return {};
  std::ifstream in(path);
  if (!in) return base::err(ErrorKind::kIo, "open {}: {}", path, std::strerror(errno));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    NORI_TRY(fn(n, line));
  }
  return {};
}

}  // namespace nori::wal
