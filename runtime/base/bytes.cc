#include "runtime/base/bytes.h"

#include <xxhash.h>

namespace nori::base {

uint64_t xxh3_64(const void* data, size_t n, uint64_t seed) {
  return XXH3_64bits_withSeed(data, n, seed);
}

}  // namespace nori::base
