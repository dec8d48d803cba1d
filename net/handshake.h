// The connection handshake (docs/wire-format.md section 1) as two pure state
// machines, Dialer and Acceptor: bytes in, bytes to send out, a verdict. The
// link feeds them what it reads from the socket (prefix first, then the rest
// of each fixed-size message), so the fuzzer and the tests can drive them
// without sockets.
//
// Authentication: HMAC-SHA-512/256 (libsodium crypto_auth_hmacsha512256) with
// a key derived from the cluster secret, over both nonces and every identity
// field; each side proves knowledge of the secret to the other. Traffic after
// the handshake is not encrypted.
//
//   Dialer d(me, key, target, Lane::kPriority, nonce);
//   send(d.hello());
//   read 8 -> auto s = d.on_challenge_prefix(p); if (s.refusal != kNone) close
//   read rest -> s = d.on_challenge(full, policy); send(s.send); if refused close
//   read 8 -> s = d.on_verdict(v); s.done -> frames seeded with d.session_seed()
//
// One object per connection attempt, used by one core.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "net/accept_policy.h"
#include "net/wire.h"

namespace nori::net {

// Who this core is.
struct LocalIdentity {
  uint64_t cluster_id = 0;
  NodeId node_id = 0;
  uint64_t incarnation = 0;
  uint16_t core_index = 0;
  uint16_t core_count = 1;
};

// The MAC key, derived from the cluster secret every node is configured with.
class ClusterKey {
 public:
  static ClusterKey from_secret(std::string_view secret);
  const uint8_t* data() const { return key_.data(); }

 private:
  std::array<uint8_t, kClusterKeyBytes> key_{};
};

using Nonce = std::array<uint8_t, kNonceBytes>;
// A fresh random nonce (libsodium randombytes).
Nonce random_nonce();

struct HandshakeStep {
  std::span<const uint8_t> send;     // bytes to send now (may be empty)
  Refusal refusal = Refusal::kNone;  // not kNone: failed; send `send`, then close
  bool by_peer = false;              // the refusal came from the peer's status byte
  bool done = false;                 // established: switch to frames
};

class Dialer {
 public:
  Dialer(const LocalIdentity& self, const ClusterKey& key, NodeId target, Lane lane,
         const Nonce& nonce);

  std::span<const uint8_t> hello() const { return hello_; }
  // The first kHandshakePrefixBytes of the challenge.
  HandshakeStep on_challenge_prefix(std::span<const uint8_t> prefix);
  // The whole challenge (kChallengeBytes, prefix included).
  HandshakeStep on_challenge(std::span<const uint8_t> challenge, const AcceptPolicy& policy);
  // The verdict (kVerdictBytes).
  HandshakeStep on_verdict(std::span<const uint8_t> verdict);

  uint64_t session_seed() const { return session_seed_; }
  uint64_t peer_incarnation() const { return peer_incarnation_; }
  uint16_t peer_core_count() const { return peer_core_count_; }

 private:
  HandshakeStep refuse(Refusal r);

  LocalIdentity self_;
  ClusterKey key_;
  NodeId target_;
  std::array<uint8_t, kHelloBytes> hello_{};
  std::array<uint8_t, kProofBytes> proof_{};
  uint64_t session_seed_ = 0;
  uint64_t peer_incarnation_ = 0;
  uint16_t peer_core_count_ = 0;
  enum class State { kAwaitChallenge, kAwaitVerdict, kDone, kFailed } state_;
};

class Acceptor {
 public:
  Acceptor(const LocalIdentity& self, const ClusterKey& key, const Nonce& nonce);

  // The first kHandshakePrefixBytes of the hello.
  HandshakeStep on_hello_prefix(std::span<const uint8_t> prefix);
  // The whole hello (kHelloBytes).
  HandshakeStep on_hello(std::span<const uint8_t> hello, const AcceptPolicy& policy);
  // The first kHandshakePrefixBytes of the proof, then the whole proof.
  HandshakeStep on_proof_prefix(std::span<const uint8_t> prefix);
  HandshakeStep on_proof(std::span<const uint8_t> proof);

  NodeId peer() const { return peer_; }
  Lane lane() const { return lane_; }
  uint64_t peer_incarnation() const { return peer_incarnation_; }
  uint16_t peer_core_count() const { return peer_core_count_; }
  uint64_t session_seed() const { return session_seed_; }

 private:
  HandshakeStep refuse(Refusal r, uint32_t magic);

  LocalIdentity self_;
  ClusterKey key_;
  Nonce nonce_;
  std::array<uint8_t, kHelloBytes> hello_{};
  std::array<uint8_t, kChallengeBytes> challenge_{};
  std::array<uint8_t, kVerdictBytes> verdict_{};
  NodeId peer_ = 0;
  Lane lane_ = Lane::kPriority;
  uint64_t peer_incarnation_ = 0;
  uint16_t peer_core_count_ = 0;
  uint64_t session_seed_ = 0;
  enum class State { kAwaitHello, kAwaitProof, kDone, kFailed } state_;
};

}  // namespace nori::net
