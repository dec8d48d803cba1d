#include "wal/posix_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

base::Status PosixSegmentSource::read_all(const std::string& name, uint64_t bytes_max,
                                          std::string* out) {
  const std::string path = dir_ + "/" + name;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
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
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  out->resize(size);
  uint64_t at = 0;
  constexpr uint64_t kReadBytes = uint64_t{4} << 20;
  while (at < size) {
    ssize_t n =
        ::pread(fd, out->data() + at, std::min(kReadBytes, size - at), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      ::close(fd);
      return sys_error("read", path, e);
    }
    at += static_cast<uint64_t>(n);
  }
  // Pages just read are not needed again: reads of old entries go direct.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
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

}  // namespace nori::wal
