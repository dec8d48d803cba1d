// libFuzzer target: arbitrary bytes as the peer's side of a handshake.
// Byte 0 picks the side under test. Acceptor: the input is a hello (prefix
// first, as a link reads it) then a proof. Dialer: the input is a challenge
// then a verdict. In a third mode a genuine hello from a matching dialer is
// overwritten by the fuzzed bytes at a fuzzed offset, so the deeper checks
// (policy, core, MAC) are reached too.
#include <algorithm>
#include <cstring>
#include <vector>

#include "net/handshake.h"

using namespace nori::net;

namespace {

const ClusterKey& key() {
  static const ClusterKey k = ClusterKey::from_secret("fuzz secret");
  return k;
}
const AcceptPolicy& policy() {
  static const AcceptPolicy p(std::vector<Member>{{1, 11}, {2, 22}});
  return p;
}

std::span<const uint8_t> take(const uint8_t*& p, const uint8_t* end, size_t n) {
  if (static_cast<size_t>(end - p) < n) return {};
  std::span<const uint8_t> s(p, n);
  p += n;
  return s;
}

void drive_acceptor(const uint8_t* p, const uint8_t* end) {
  Nonce n{};
  Acceptor a({7, 2, 22, 0, 2}, key(), n);
  auto hello = take(p, end, kHelloBytes);
  if (hello.empty()) return;
  if (a.on_hello_prefix(hello.first(kHandshakePrefixBytes)).refusal != Refusal::kNone) return;
  if (a.on_hello(hello, policy()).refusal != Refusal::kNone) return;
  auto proof = take(p, end, kProofBytes);
  if (proof.empty()) return;
  if (a.on_proof_prefix(proof.first(kHandshakePrefixBytes)).refusal != Refusal::kNone) return;
  (void)a.on_proof(proof);
}

void drive_dialer(const uint8_t* p, const uint8_t* end) {
  Nonce n{};
  Dialer d({7, 1, 11, 0, 2}, key(), 2, Lane::kPriority, n);
  auto c = take(p, end, kChallengeBytes);
  if (c.empty()) return;
  if (d.on_challenge_prefix(c.first(kHandshakePrefixBytes)).refusal != Refusal::kNone) return;
  if (d.on_challenge(c, policy()).refusal != Refusal::kNone) return;
  auto v = take(p, end, kVerdictBytes);
  if (v.empty()) return;
  (void)d.on_verdict(v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t* p = data + 2;
  const uint8_t* end = data + size;
  switch (data[0] % 3) {
    case 0:
      drive_acceptor(p, end);
      break;
    case 1:
      drive_dialer(p, end);
      break;
    default: {
      Nonce n{};
      Dialer d({7, 1, 11, 0, 2}, key(), 2, Lane::kPriority, n);
      std::vector<uint8_t> msg(d.hello().begin(), d.hello().end());
      size_t at = data[1] % kHelloBytes;
      size_t len = std::min<size_t>(end - p, kHelloBytes - at);
      std::memcpy(msg.data() + at, p, len);
      msg.resize(kHelloBytes + kProofBytes);  // a zero proof follows
      drive_acceptor(msg.data(), msg.data() + msg.size());
    }
  }
  return 0;
}
