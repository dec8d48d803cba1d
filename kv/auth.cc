#include "kv/auth.h"

#include <sodium.h>

#include "runtime/base/assert.h"

namespace nori::kv {

namespace {

void absorb(crypto_generichash_state& st, std::string_view bytes) {
  // Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
  unsigned char len[8];
  uint64_t n = bytes.size();
  for (unsigned char& b : len) {
    b = static_cast<unsigned char>(n & 0xff);
    n >>= 8;
  }
  crypto_generichash_update(&st, len, sizeof len);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(bytes.data()),
                            bytes.size());
}

}  // namespace

ForwardAuth::ForwardAuth(std::string_view cluster_secret) {
  if (sodium_init() < 0) NORI_PANIC("sodium_init failed");
  // Domain-separated from the peer handshake's use of the same secret.
  static constexpr std::string_view kContext = "norikv forward v1";
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, key_.size());
  absorb(st, kContext);
  absorb(st, cluster_secret);
  crypto_generichash_final(&st, key_.data(), key_.size());
}

std::string ForwardAuth::tag(std::string_view name, std::span<const std::string> args) const {
  crypto_generichash_state st;
  crypto_generichash_init(&st, key_.data(), key_.size(), kTagBytes);
  absorb(st, name);
  for (const std::string& a : args)
    absorb(st, a);
  std::string out(kTagBytes, '\0');
  crypto_generichash_final(&st, reinterpret_cast<unsigned char*>(out.data()), kTagBytes);
  return out;
}

bool ForwardAuth::verify(std::string_view name, std::span<const std::string> args,
                         std::string_view tag) const {
  if (tag.size() != kTagBytes) return false;
  const std::string want = this->tag(name, args);
  return sodium_memcmp(want.data(), tag.data(), kTagBytes) == 0;
}

}  // namespace nori::kv
