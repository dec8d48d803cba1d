// The project's result type: a value, or an Error with a kind a caller can act
// on and a message a person can read.
//
// Use it for every expected failure (bad input, not leader, timeout, disk
// full). Broken invariants are NORI_ASSERT, not errors.
//
//   base::Result<uint64_t> parse(std::string_view s);
//   auto r = parse(text);
//   if (!r) return r.error();          // propagate
//   NORI_TRY(file.sync());             // Result<void>: return the error if any
//   NORI_ASSIGN_OR_RETURN(auto n, parse(text));
//
// Whether a failed operation may still have taken effect is part of the kind:
// only kOutcomeUnknown means "may have"; every other kind means "certainly
// did not". Clients and tests depend on that rule.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "runtime/base/assert.h"

namespace nori::base {

enum class ErrorKind : uint8_t {
  kInvalidArgument,  // the caller's input is wrong; retrying the same call fails again
  kNotLeader,        // this replica does not lead the group; hint() is the leader id, 0 if unknown
  kNoQuorum,         // the leader cannot reach a quorum
  kBusy,             // a bound was hit (queue, uncommitted bytes); retry later
  kTimedOut,         // a deadline passed before the operation took effect
  kOutcomeUnknown,   // the operation may or may not have taken effect
  kShuttingDown,     // the component is stopping
  kCancelled,        // the caller cancelled the operation
  kIo,               // an I/O error that the process survives (e.g. a refused connection)
  kNoSpace,          // the disk is full
  kCorruption,       // stored or received bytes failed validation
  kNotFound,         // the named thing does not exist
  kClosed,           // the connection or channel is closed
  kProtocol,         // a peer or client broke the protocol
  kUnavailable,      // temporarily unavailable for another reason (e.g. lease wait)
};

std::string_view to_string(ErrorKind kind);

class [[nodiscard]] Error {
 public:
  Error(ErrorKind kind, std::string message, uint64_t hint = 0)
      : kind_(kind), hint_(hint), message_(std::move(message)) {}

  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  // Kind-specific detail: for kNotLeader the leader's node id (0 = unknown).
  uint64_t hint() const { return hint_; }
  // True only when the operation may have taken effect despite the error.
  bool may_have_taken_effect() const { return kind_ == ErrorKind::kOutcomeUnknown; }

  // "kind: message", for logs and error replies.
  std::string to_string() const;

 private:
  ErrorKind kind_;
  uint64_t hint_;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    NORI_ASSERT(ok(), "value() of an error result: {}", std::get<1>(v_).to_string());
    return std::get<0>(v_);
  }
  const T& value() const& {
    NORI_ASSERT(ok(), "value() of an error result: {}", std::get<1>(v_).to_string());
    return std::get<0>(v_);
  }
  T&& value() && {
    NORI_ASSERT(ok(), "value() of an error result: {}", std::get<1>(v_).to_string());
    return std::get<0>(std::move(v_));
  }
  const Error& error() const& {
    NORI_ASSERT(!ok(), "error() of an ok result");
    return std::get<1>(v_);
  }
  Error&& error() && {
    NORI_ASSERT(!ok(), "error() of an ok result");
    return std::get<1>(std::move(v_));
  }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const& {
    NORI_ASSERT(!ok(), "error() of an ok result");
    return *error_;
  }
  Error&& error() && {
    NORI_ASSERT(!ok(), "error() of an ok result");
    return std::move(*error_);
  }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

inline Status ok_status() {
  return {};
}

// Shorthands: base::err(ErrorKind::kBusy, "queue full ({} bytes)", n).
template <typename... Args>
Error err(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  return Error(kind, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace nori::base

#define NORI_CONCAT_INNER(a, b) a##b
#define NORI_CONCAT(a, b) NORI_CONCAT_INNER(a, b)

// Returns the error of a Result-valued expression from the enclosing function.
#define NORI_TRY(expr)                                           \
  do {                                                           \
    auto&& nori_try_result_ = (expr);                            \
    if (!nori_try_result_.ok()) return nori_try_result_.error(); \
  } while (0)

// Same, for coroutines (co_return).
#define NORI_CO_TRY(expr)                                           \
  do {                                                              \
    auto&& nori_try_result_ = (expr);                               \
    if (!nori_try_result_.ok()) co_return nori_try_result_.error(); \
  } while (0)

#define NORI_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).error();    \
  lhs = std::move(tmp).value()

// NORI_ASSIGN_OR_RETURN(auto n, parse(text));
#define NORI_ASSIGN_OR_RETURN(lhs, expr) \
  NORI_ASSIGN_OR_RETURN_IMPL(NORI_CONCAT(nori_result_, __LINE__), lhs, expr)

#define NORI_CO_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) co_return std::move(tmp).error();    \
  lhs = std::move(tmp).value()

// NORI_CO_ASSIGN_OR_RETURN(auto n, co_await read(...)); inside a coroutine.
#define NORI_CO_ASSIGN_OR_RETURN(lhs, expr) \
  NORI_CO_ASSIGN_OR_RETURN_IMPL(NORI_CONCAT(nori_result_, __LINE__), lhs, expr)
