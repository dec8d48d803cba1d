#include "runtime/io.h"

#include <cerrno>
#include <cstring>

namespace nori::runtime::io {

base::Error errno_error(int err, std::string_view what) {
  base::ErrorKind kind;
  switch (err) {
    case ECANCELED:
      kind = base::ErrorKind::kCancelled;
      break;
    case ETIME:
    case ETIMEDOUT:
      kind = base::ErrorKind::kTimedOut;
      break;
    case ENOSPC:
    case EDQUOT:
      kind = base::ErrorKind::kNoSpace;
      break;
    case ENOENT:
      kind = base::ErrorKind::kNotFound;
      break;
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
    case ESHUTDOWN:
      kind = base::ErrorKind::kClosed;
      break;
    case EINVAL:
    case EBADF:
      kind = base::ErrorKind::kInvalidArgument;
      break;
    default:
      kind = base::ErrorKind::kIo;
  }
  return base::Error(kind, fmt::format("{}: {}", what, std::strerror(err)),
                     static_cast<uint64_t>(err));
}

}  // namespace nori::runtime::io
