#include "runtime/base/result.h"

namespace nori::base {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument:
      return "invalid argument";
    case ErrorKind::kNotLeader:
      return "not leader";
    case ErrorKind::kNoQuorum:
      return "no quorum";
    case ErrorKind::kBusy:
      return "busy";
    case ErrorKind::kTimedOut:
      return "timed out";
    case ErrorKind::kOutcomeUnknown:
      return "outcome unknown";
    case ErrorKind::kShuttingDown:
      return "shutting down";
    case ErrorKind::kCancelled:
      return "cancelled";
    case ErrorKind::kIo:
      return "I/O error";
    case ErrorKind::kNoSpace:
      return "no space";
    case ErrorKind::kCorruption:
      return "corruption";
    case ErrorKind::kNotFound:
      return "not found";
    case ErrorKind::kClosed:
      return "closed";
    case ErrorKind::kProtocol:
      return "protocol error";
    case ErrorKind::kUnavailable:
      return "unavailable";
  }
  return "unknown error kind";
}

std::string Error::to_string() const {
  std::string out(base::to_string(kind_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

}  // namespace nori::base
