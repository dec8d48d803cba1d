#include "runtime/base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace nori::base {

void panic_at(const char* file, int line, const char* what, std::string_view message) {
  std::fprintf(stderr, "%s:%d: %s%s%.*s\n", file, line, what, message.empty() ? "" : ": ",
               static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  std::abort();
}

}  // namespace nori::base
