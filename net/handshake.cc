#include "net/handshake.h"

#include <sodium.h>

#include <cstring>

#include "runtime/base/assert.h"
#include "runtime/base/bytes.h"

namespace nori::net {

static_assert(kMacBytes == crypto_auth_hmacsha512256_BYTES);
static_assert(kClusterKeyBytes == crypto_auth_hmacsha512256_KEYBYTES);

std::string_view to_string(Refusal r) {
  switch (r) {
    case Refusal::kNone:
      return "none";
    case Refusal::kWrongVersion:
      return "wrong_version";
    case Refusal::kWrongCluster:
      return "wrong_cluster";
    case Refusal::kUnknownNode:
      return "unknown_node";
    case Refusal::kStaleIncarnation:
      return "stale_incarnation";
    case Refusal::kWrongSecret:
      return "wrong_secret";
    case Refusal::kCoreCountMismatch:
      return "core_count_mismatch";
    case Refusal::kWrongCore:
      return "wrong_core";
    case Refusal::kMalformed:
      return "malformed";
    case Refusal::kTimeout:
      return "timeout";
    case Refusal::kDuplicate:
      return "duplicate";
  }
  return "unknown";
}

namespace {

constexpr std::string_view kAcceptorDomain = "nori/acceptor";
constexpr std::string_view kDialerDomain = "nori/dialer";
constexpr std::string_view kSessionDomain = "nori/session";
constexpr std::string_view kKeyPersonal = "nori/cluster-key";

void ensure_sodium() {
  // Idempotent and thread-safe; fails only if the system has no entropy source.
  if (sodium_init() < 0) NORI_PANIC("libsodium failed to initialise");
}

void write_prefix(uint8_t* p, uint32_t magic, uint8_t status) {
  base::store_u32(p, magic);
  base::store_u16(p + 4, kProtocolVersion);
  p[6] = status;
  p[7] = 0;
}

// HMAC-SHA-512/256(key, domain || a || b) into out.
void mac(const ClusterKey& key, std::string_view domain, std::span<const uint8_t> a,
         std::span<const uint8_t> b, uint8_t* out) {
  crypto_auth_hmacsha512256_state st;
  crypto_auth_hmacsha512256_init(&st, key.data(), kClusterKeyBytes);
  crypto_auth_hmacsha512256_update(&st, reinterpret_cast<const uint8_t*>(domain.data()),
                                   domain.size());
  crypto_auth_hmacsha512256_update(&st, a.data(), a.size());
  crypto_auth_hmacsha512256_update(&st, b.data(), b.size());
  crypto_auth_hmacsha512256_final(&st, out);
}

uint64_t derive_session_seed(const ClusterKey& key, std::span<const uint8_t> hello,
                             std::span<const uint8_t> challenge) {
  uint8_t m[kMacBytes];
  mac(key, kSessionDomain, hello, challenge, m);
  return base::load_u64(m);
}

bool mac_equal(const uint8_t* a, const uint8_t* b) {
  return sodium_memcmp(a, b, kMacBytes) == 0;
}

// Checks a received prefix: magic and version first, then the status byte.
// Returns kNone when the message may be read on.
HandshakeStep check_prefix(std::span<const uint8_t> prefix, uint32_t magic) {
  NORI_ASSERT(prefix.size() == kHandshakePrefixBytes);
  HandshakeStep s;
  if (base::load_u32(prefix.data()) != magic ||
      base::load_u16(prefix.data() + 4) != kProtocolVersion) {
    s.refusal = Refusal::kWrongVersion;
    return s;
  }
  if (prefix[7] != 0) {
    s.refusal = Refusal::kMalformed;
    return s;
  }
  return s;
}

// The peer refused us in its status byte (an unknown value counts as malformed).
HandshakeStep peer_refusal(uint8_t status) {
  HandshakeStep s;
  s.refusal = is_wire_refusal(status) ? static_cast<Refusal>(status) : Refusal::kMalformed;
  s.by_peer = is_wire_refusal(status);
  return s;
}

}  // namespace

ClusterKey ClusterKey::from_secret(std::string_view secret) {
  ensure_sodium();
  ClusterKey k;
  // BLAKE2b-256 with a personalisation string, so this key is used for nothing else.
  uint8_t personal[crypto_generichash_blake2b_PERSONALBYTES] = {};
  std::memcpy(personal, kKeyPersonal.data(), sizeof personal);
  crypto_generichash_blake2b_salt_personal(k.key_.data(), k.key_.size(),
                                           reinterpret_cast<const uint8_t*>(secret.data()),
                                           secret.size(), nullptr, 0, nullptr, personal);
  return k;
}

Nonce random_nonce() {
  ensure_sodium();
  Nonce n;
  randombytes_buf(n.data(), n.size());
  return n;
}

// ---- Dialer ----------------------------------------------------------------

Dialer::Dialer(const LocalIdentity& self, const ClusterKey& key, NodeId target, Lane lane,
               const Nonce& nonce)
    : self_(self), key_(key), target_(target), state_(State::kAwaitChallenge) {
  NORI_ASSERT(self.node_id != 0 && self.incarnation != 0 && target != 0);
  NORI_ASSERT(self.core_index < self.core_count);
  uint8_t* p = hello_.data();
  write_prefix(p, kHelloMagic, static_cast<uint8_t>(lane));
  base::store_u64(p + 8, self.cluster_id);
  base::store_u64(p + 16, self.node_id);
  base::store_u64(p + 24, self.incarnation);
  base::store_u64(p + 32, target);
  base::store_u16(p + 40, self.core_index);
  base::store_u16(p + 42, self.core_count);
  base::store_u32(p + 44, 0);
  std::memcpy(p + 48, nonce.data(), kNonceBytes);
}

HandshakeStep Dialer::refuse(Refusal r) {
  state_ = State::kFailed;
  write_prefix(proof_.data(), kProofMagic, static_cast<uint8_t>(r));
  HandshakeStep s;
  s.refusal = r;
  // Tell the peer why (best effort) unless it cannot parse our prefix anyway.
  s.send = std::span<const uint8_t>(proof_.data(), kHandshakePrefixBytes);
  return s;
}

HandshakeStep Dialer::on_challenge_prefix(std::span<const uint8_t> prefix) {
  if (state_ != State::kAwaitChallenge) return refuse(Refusal::kMalformed);
  HandshakeStep s = check_prefix(prefix, kChallengeMagic);
  if (s.refusal != Refusal::kNone) return refuse(s.refusal);
  if (prefix[6] != 0) {
    state_ = State::kFailed;
    return peer_refusal(prefix[6]);
  }
  return s;
}

HandshakeStep Dialer::on_challenge(std::span<const uint8_t> c, const AcceptPolicy& policy) {
  NORI_ASSERT(c.size() == kChallengeBytes);
  HandshakeStep s = on_challenge_prefix(c.first(kHandshakePrefixBytes));
  if (s.refusal != Refusal::kNone) return s;
  const uint8_t* p = c.data();
  uint64_t cluster = base::load_u64(p + 8);
  NodeId node = base::load_u64(p + 16);
  uint64_t incarnation = base::load_u64(p + 24);
  uint16_t core = base::load_u16(p + 32);
  uint16_t core_count = base::load_u16(p + 34);
  if (base::load_u32(p + 36) != 0 || node == 0 || incarnation == 0) {
    return refuse(Refusal::kMalformed);
  }
  if (cluster != self_.cluster_id) return refuse(Refusal::kWrongCluster);
  peer_core_count_ = core_count;
  if (core_count != self_.core_count) return refuse(Refusal::kCoreCountMismatch);
  // Identity claims are only believed once the MAC proves the secret.
  uint8_t expect[kMacBytes];
  mac(key_, kAcceptorDomain, hello_, c.first(kChallengeMacOffset), expect);
  if (!mac_equal(expect, p + kChallengeMacOffset)) return refuse(Refusal::kWrongSecret);
  if (node != target_) return refuse(Refusal::kUnknownNode);
  if (Refusal r = policy.check(node, incarnation); r != Refusal::kNone) return refuse(r);
  if (core != self_.core_index) return refuse(Refusal::kWrongCore);
  peer_incarnation_ = incarnation;
  write_prefix(proof_.data(), kProofMagic, 0);
  mac(key_, kDialerDomain, hello_, c, proof_.data() + kHandshakePrefixBytes);
  session_seed_ = derive_session_seed(key_, hello_, c);
  state_ = State::kAwaitVerdict;
  s.send = proof_;
  return s;
}

HandshakeStep Dialer::on_verdict(std::span<const uint8_t> v) {
  NORI_ASSERT(v.size() == kVerdictBytes);
  if (state_ != State::kAwaitVerdict) return refuse(Refusal::kMalformed);
  HandshakeStep s = check_prefix(v, kVerdictMagic);
  if (s.refusal != Refusal::kNone) {
    state_ = State::kFailed;
    return s;
  }
  if (v[6] != 0) {
    state_ = State::kFailed;
    return peer_refusal(v[6]);
  }
  state_ = State::kDone;
  s.done = true;
  return s;
}

// ---- Acceptor --------------------------------------------------------------

Acceptor::Acceptor(const LocalIdentity& self, const ClusterKey& key, const Nonce& nonce)
    : self_(self), key_(key), nonce_(nonce), state_(State::kAwaitHello) {
  NORI_ASSERT(self.node_id != 0 && self.incarnation != 0);
  NORI_ASSERT(self.core_index < self.core_count);
}

HandshakeStep Acceptor::refuse(Refusal r, uint32_t magic) {
  state_ = State::kFailed;
  // A refusal is the 8-byte prefix of the message owed, with the reason.
  uint8_t* p = magic == kChallengeMagic ? challenge_.data() : verdict_.data();
  write_prefix(p, magic, static_cast<uint8_t>(r));
  HandshakeStep s;
  s.refusal = r;
  s.send = std::span<const uint8_t>(p, kHandshakePrefixBytes);
  return s;
}

HandshakeStep Acceptor::on_hello_prefix(std::span<const uint8_t> prefix) {
  if (state_ != State::kAwaitHello) return refuse(Refusal::kMalformed, kChallengeMagic);
  HandshakeStep s = check_prefix(prefix, kHelloMagic);
  if (s.refusal != Refusal::kNone) return refuse(s.refusal, kChallengeMagic);
  if (prefix[6] >= kLaneCount) return refuse(Refusal::kMalformed, kChallengeMagic);
  return s;
}

HandshakeStep Acceptor::on_hello(std::span<const uint8_t> h, const AcceptPolicy& policy) {
  NORI_ASSERT(h.size() == kHelloBytes);
  HandshakeStep s = on_hello_prefix(h.first(kHandshakePrefixBytes));
  if (s.refusal != Refusal::kNone) return s;
  std::memcpy(hello_.data(), h.data(), kHelloBytes);
  const uint8_t* p = h.data();
  uint64_t cluster = base::load_u64(p + 8);
  NodeId node = base::load_u64(p + 16);
  uint64_t incarnation = base::load_u64(p + 24);
  NodeId target = base::load_u64(p + 32);
  uint16_t core = base::load_u16(p + 40);
  uint16_t core_count = base::load_u16(p + 42);
  if (base::load_u32(p + 44) != 0 || node == 0 || incarnation == 0) {
    return refuse(Refusal::kMalformed, kChallengeMagic);
  }
  lane_ = static_cast<Lane>(p[6]);
  peer_ = node;
  peer_incarnation_ = incarnation;
  peer_core_count_ = core_count;
  // Refusals here are decided before any proof of the secret: they tell an
  // honest but misconfigured peer what is wrong, and reveal nothing but the
  // reason.
  if (cluster != self_.cluster_id) return refuse(Refusal::kWrongCluster, kChallengeMagic);
  if (core_count != self_.core_count) return refuse(Refusal::kCoreCountMismatch, kChallengeMagic);
  if (target != self_.node_id) return refuse(Refusal::kUnknownNode, kChallengeMagic);
  if (Refusal r = policy.check(node, incarnation); r != Refusal::kNone) {
    return refuse(r, kChallengeMagic);
  }
  if (core != self_.core_index) return refuse(Refusal::kWrongCore, kChallengeMagic);

  uint8_t* c = challenge_.data();
  write_prefix(c, kChallengeMagic, 0);
  base::store_u64(c + 8, self_.cluster_id);
  base::store_u64(c + 16, self_.node_id);
  base::store_u64(c + 24, self_.incarnation);
  base::store_u16(c + 32, self_.core_index);
  base::store_u16(c + 34, self_.core_count);
  base::store_u32(c + 36, 0);
  std::memcpy(c + 40, nonce_.data(), kNonceBytes);
  mac(key_, kAcceptorDomain, hello_, std::span<const uint8_t>(c, kChallengeMacOffset),
      c + kChallengeMacOffset);
  state_ = State::kAwaitProof;
  s.send = challenge_;
  return s;
}

HandshakeStep Acceptor::on_proof_prefix(std::span<const uint8_t> prefix) {
  if (state_ != State::kAwaitProof) return refuse(Refusal::kMalformed, kVerdictMagic);
  HandshakeStep s = check_prefix(prefix, kProofMagic);
  if (s.refusal != Refusal::kNone) return refuse(s.refusal, kVerdictMagic);
  if (prefix[6] != 0) {
    state_ = State::kFailed;
    return peer_refusal(prefix[6]);
  }
  return s;
}

HandshakeStep Acceptor::on_proof(std::span<const uint8_t> proof) {
  NORI_ASSERT(proof.size() == kProofBytes);
  HandshakeStep s = on_proof_prefix(proof.first(kHandshakePrefixBytes));
  if (s.refusal != Refusal::kNone) return s;
  uint8_t expect[kMacBytes];
  mac(key_, kDialerDomain, hello_, challenge_, expect);
  if (!mac_equal(expect, proof.data() + kHandshakePrefixBytes)) {
    return refuse(Refusal::kWrongSecret, kVerdictMagic);
  }
  session_seed_ = derive_session_seed(key_, hello_, challenge_);
  write_prefix(verdict_.data(), kVerdictMagic, 0);
  state_ = State::kDone;
  s.send = verdict_;
  s.done = true;
  return s;
}

}  // namespace nori::net
