// Always-on assertions for invariants, in every build type.
//
// Two error channels, never mixed (STYLE.md): expected failures are
// `base::Result` values; a broken invariant, or I/O the process can no longer
// trust (a failed fsync), stops the process here, loudly, with context.
//
//   NORI_ASSERT(offset % kBlockBytes == 0, "offset {} not aligned", offset);
//   NORI_PANIC("fsync of {} failed: {}", path, strerror(err));
#pragma once

#include <fmt/format.h>

namespace nori::base {

// Prints "file:line: what: message" to stderr and aborts. Never returns.
[[noreturn]] void panic_at(const char* file, int line, const char* what, std::string_view message);

}  // namespace nori::base

#define NORI_LIKELY(x) __builtin_expect(!!(x), 1)
#define NORI_UNLIKELY(x) __builtin_expect(!!(x), 0)

// NORI_ASSERT(cond) or NORI_ASSERT(cond, "fmt {}", args...).
#define NORI_ASSERT(cond, ...)                                                   \
  do {                                                                           \
    if (NORI_UNLIKELY(!(cond))) {                                                \
      ::nori::base::panic_at(__FILE__, __LINE__, "assertion failed: " #cond,     \
                             ::nori::base::detail::assert_message(__VA_ARGS__)); \
    }                                                                            \
  } while (0)

#define NORI_PANIC(...) \
  ::nori::base::panic_at(__FILE__, __LINE__, "panic", ::fmt::format(__VA_ARGS__))

namespace nori::base::detail {
inline std::string assert_message() {
  return {};
}
template <typename... Args>
std::string assert_message(fmt::format_string<Args...> f, Args&&... args) {
  return fmt::format(f, std::forward<Args>(args)...);
}
}  // namespace nori::base::detail
