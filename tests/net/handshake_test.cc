#include "net/handshake.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "runtime/base/bytes.h"

namespace nori::net {
namespace {

constexpr uint64_t kCluster = 0xC1;

LocalIdentity identity(NodeId node, uint64_t incarnation, uint16_t core = 0, uint16_t cores = 2,
                       uint64_t cluster = kCluster) {
  return {cluster, node, incarnation, core, cores};
}

Nonce nonce(uint8_t fill) {
  Nonce n;
  n.fill(fill);
  return n;
}

struct Outcome {
  Refusal dialer = Refusal::kNone;    // what the dialer ended with
  Refusal acceptor = Refusal::kNone;  // what the acceptor ended with
  bool dialer_by_peer = false;
  bool acceptor_by_peer = false;
  bool done = false;
  uint64_t dialer_seed = 0, acceptor_seed = 0;
};

std::span<const uint8_t> first(std::span<const uint8_t> s, size_t n) {
  return s.first(n);
}

// Runs the four-message exchange the way a link does: prefix first, then the rest.
Outcome run(Dialer& d, const AcceptPolicy& dialer_policy, Acceptor& a,
            const AcceptPolicy& acceptor_policy) {
  Outcome o;
  auto hello = d.hello();
  HandshakeStep s = a.on_hello_prefix(first(hello, kHandshakePrefixBytes));
  if (s.refusal == Refusal::kNone) s = a.on_hello(hello, acceptor_policy);
  if (s.refusal != Refusal::kNone) {
    o.acceptor = s.refusal;
    // The dialer reads the refusal prefix.
    HandshakeStep ds = d.on_challenge_prefix(s.send);
    o.dialer = ds.refusal;
    o.dialer_by_peer = ds.by_peer;
    return o;
  }
  std::vector<uint8_t> challenge(s.send.begin(), s.send.end());
  HandshakeStep ds = d.on_challenge_prefix(first(challenge, kHandshakePrefixBytes));
  if (ds.refusal == Refusal::kNone) ds = d.on_challenge(challenge, dialer_policy);
  if (ds.refusal != Refusal::kNone) {
    o.dialer = ds.refusal;
    HandshakeStep as = a.on_proof_prefix(ds.send);
    o.acceptor = as.refusal;
    o.acceptor_by_peer = as.by_peer;
    return o;
  }
  std::vector<uint8_t> proof(ds.send.begin(), ds.send.end());
  HandshakeStep as = a.on_proof_prefix(first(proof, kHandshakePrefixBytes));
  if (as.refusal == Refusal::kNone) as = a.on_proof(proof);
  if (as.refusal != Refusal::kNone) {
    o.acceptor = as.refusal;
    HandshakeStep v = d.on_verdict(as.send);
    o.dialer = v.refusal;
    o.dialer_by_peer = v.by_peer;
    return o;
  }
  HandshakeStep v = d.on_verdict(as.send);
  o.dialer = v.refusal;
  o.done = v.done && as.done;
  o.dialer_seed = d.session_seed();
  o.acceptor_seed = a.session_seed();
  return o;
}

class HandshakeTest : public ::testing::Test {
 protected:
  ClusterKey key_ = ClusterKey::from_secret("correct horse battery staple");
  // Node 1 (incarnation 11) dials node 2 (incarnation 22).
  AcceptPolicy knows_both_{std::vector<Member>{{1, 11}, {2, 22}}};
};

TEST_F(HandshakeTest, MatchingCredentialsConnectAndAgreeOnTheSessionSeed) {
  Dialer d(identity(1, 11, 1), key_, 2, Lane::kBulk, nonce(1));
  Acceptor a(identity(2, 22, 1), key_, nonce(2));
  Outcome o = run(d, knows_both_, a, knows_both_);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.dialer_seed, o.acceptor_seed);
  EXPECT_EQ(a.peer(), 1u);
  EXPECT_EQ(a.lane(), Lane::kBulk);
  EXPECT_EQ(a.peer_incarnation(), 11u);
  EXPECT_EQ(d.peer_incarnation(), 22u);
}

TEST_F(HandshakeTest, SessionSeedDiffersPerConnection) {
  Dialer d1(identity(1, 11), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a1(identity(2, 22), key_, nonce(2));
  Dialer d2(identity(1, 11), key_, 2, Lane::kPriority, nonce(3));
  Acceptor a2(identity(2, 22), key_, nonce(2));
  Outcome o1 = run(d1, knows_both_, a1, knows_both_);
  Outcome o2 = run(d2, knows_both_, a2, knows_both_);
  ASSERT_TRUE(o1.done && o2.done);
  EXPECT_NE(o1.dialer_seed, o2.dialer_seed);
}

TEST_F(HandshakeTest, BootstrapMemberWithUnknownIncarnationIsAccepted) {
  AcceptPolicy bootstrap(std::vector<Member>{{1, 0}, {2, 0}});
  Dialer d(identity(1, 11), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22), key_, nonce(2));
  EXPECT_TRUE(run(d, bootstrap, a, bootstrap).done);
}

TEST_F(HandshakeTest, WrongSecretIsRefusedOnBothSides) {
  Dialer d(identity(1, 11), ClusterKey::from_secret("guess"), 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22), key_, nonce(2));
  Outcome o = run(d, knows_both_, a, knows_both_);
  EXPECT_FALSE(o.done);
  // The dialer checks the acceptor's MAC first and refuses; the acceptor learns why.
  EXPECT_EQ(o.dialer, Refusal::kWrongSecret);
  EXPECT_EQ(o.acceptor, Refusal::kWrongSecret);
  EXPECT_TRUE(o.acceptor_by_peer);
}

TEST_F(HandshakeTest, ForgedProofIsRefusedByTheAcceptor) {
  Dialer d(identity(1, 11), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22), key_, nonce(2));
  auto s = a.on_hello(d.hello(), knows_both_);
  ASSERT_EQ(s.refusal, Refusal::kNone);
  std::vector<uint8_t> challenge(s.send.begin(), s.send.end());
  auto ds = d.on_challenge(challenge, knows_both_);
  ASSERT_EQ(ds.refusal, Refusal::kNone);
  std::vector<uint8_t> proof(ds.send.begin(), ds.send.end());
  proof.back() ^= 1;
  auto as = a.on_proof(proof);
  EXPECT_EQ(as.refusal, Refusal::kWrongSecret);
  EXPECT_FALSE(as.by_peer);
  EXPECT_EQ(d.on_verdict(as.send).refusal, Refusal::kWrongSecret);
}

TEST_F(HandshakeTest, ProofReplayedFromAnEarlierConnectionIsRefused) {
  Dialer d1(identity(1, 11), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a1(identity(2, 22), key_, nonce(2));
  auto s1 = a1.on_hello(d1.hello(), knows_both_);
  std::vector<uint8_t> c1(s1.send.begin(), s1.send.end());
  auto p1 = d1.on_challenge(c1, knows_both_);
  std::vector<uint8_t> old_proof(p1.send.begin(), p1.send.end());
  // A new connection: same hello (the attacker replays it), fresh acceptor nonce.
  Acceptor a2(identity(2, 22), key_, nonce(9));
  ASSERT_EQ(a2.on_hello(d1.hello(), knows_both_).refusal, Refusal::kNone);
  EXPECT_EQ(a2.on_proof(old_proof).refusal, Refusal::kWrongSecret);
}

TEST_F(HandshakeTest, WrongClusterIsRefused) {
  Dialer d(identity(1, 11, 0, 2, kCluster + 1), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22), key_, nonce(2));
  Outcome o = run(d, knows_both_, a, knows_both_);
  EXPECT_EQ(o.acceptor, Refusal::kWrongCluster);
  EXPECT_EQ(o.dialer, Refusal::kWrongCluster);
  EXPECT_TRUE(o.dialer_by_peer);
}

TEST_F(HandshakeTest, UnknownNodeIsRefused) {
  Dialer d(identity(7, 77), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22), key_, nonce(2));
  EXPECT_EQ(run(d, knows_both_, a, knows_both_).acceptor, Refusal::kUnknownNode);
}

TEST_F(HandshakeTest, WipedNodeWithNewIncarnationIsRefusedAsStale) {
  Dialer d(identity(1, 12), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22), key_, nonce(2));
  Outcome o = run(d, knows_both_, a, knows_both_);
  EXPECT_EQ(o.acceptor, Refusal::kStaleIncarnation);
  EXPECT_EQ(o.dialer, Refusal::kStaleIncarnation);
}

TEST_F(HandshakeTest, DialerRefusesAnAcceptorWithAStaleIncarnation) {
  Dialer d(identity(1, 11), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 23), key_, nonce(2));
  AcceptPolicy acceptor_side(std::vector<Member>{{1, 11}});
  Outcome o = run(d, knows_both_, a, acceptor_side);
  EXPECT_EQ(o.dialer, Refusal::kStaleIncarnation);
  EXPECT_EQ(o.acceptor, Refusal::kStaleIncarnation);
  EXPECT_TRUE(o.acceptor_by_peer);
}

TEST_F(HandshakeTest, DialerRefusesAnAcceptorThatIsNotTheNodeItDialed) {
  // The dialer means node 3; node 2 answers (a stale address book).
  Dialer d(identity(1, 11), key_, 3, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22), key_, nonce(2));
  EXPECT_EQ(run(d, knows_both_, a, knows_both_).acceptor, Refusal::kUnknownNode);
}

TEST_F(HandshakeTest, WrongVersionIsRefusedOnThePrefixAlone) {
  Dialer d(identity(1, 11), key_, 2, Lane::kPriority, nonce(1));
  std::vector<uint8_t> hello(d.hello().begin(), d.hello().end());
  base::store_u16(hello.data() + 4, kProtocolVersion + 1);
  Acceptor a(identity(2, 22), key_, nonce(2));
  auto s = a.on_hello_prefix(std::span<const uint8_t>(hello).first(kHandshakePrefixBytes));
  EXPECT_EQ(s.refusal, Refusal::kWrongVersion);
  ASSERT_EQ(s.send.size(), kHandshakePrefixBytes);
  EXPECT_EQ(s.send[6], static_cast<uint8_t>(Refusal::kWrongVersion));
}

TEST_F(HandshakeTest, CoreCountMismatchIsRefused) {
  Dialer d(identity(1, 11, 0, 4), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22, 0, 2), key_, nonce(2));
  Outcome o = run(d, knows_both_, a, knows_both_);
  EXPECT_EQ(o.acceptor, Refusal::kCoreCountMismatch);
  EXPECT_EQ(o.dialer, Refusal::kCoreCountMismatch);
  EXPECT_EQ(a.peer_core_count(), 4u);
}

TEST_F(HandshakeTest, DialToTheWrongCoreIsRefused) {
  Dialer d(identity(1, 11, 0, 2), key_, 2, Lane::kPriority, nonce(1));
  Acceptor a(identity(2, 22, 1, 2), key_, nonce(2));
  EXPECT_EQ(run(d, knows_both_, a, knows_both_).acceptor, Refusal::kWrongCore);
}

TEST_F(HandshakeTest, NonZeroReservedFieldIsRefusedAsMalformed) {
  Dialer d(identity(1, 11), key_, 2, Lane::kPriority, nonce(1));
  std::vector<uint8_t> hello(d.hello().begin(), d.hello().end());
  hello[45] = 1;
  Acceptor a(identity(2, 22), key_, nonce(2));
  EXPECT_EQ(a.on_hello(hello, knows_both_).refusal, Refusal::kMalformed);
}

TEST_F(HandshakeTest, UnknownLaneIsRefusedAsMalformed) {
  Dialer d(identity(1, 11), key_, 2, Lane::kPriority, nonce(1));
  std::vector<uint8_t> hello(d.hello().begin(), d.hello().end());
  hello[6] = 2;
  Acceptor a(identity(2, 22), key_, nonce(2));
  EXPECT_EQ(a.on_hello(hello, knows_both_).refusal, Refusal::kMalformed);
}

TEST_F(HandshakeTest, ProofBeforeHelloIsRefused) {
  Acceptor a(identity(2, 22), key_, nonce(2));
  std::vector<uint8_t> junk(kProofBytes, 0);
  EXPECT_EQ(a.on_proof(junk).refusal, Refusal::kMalformed);
}

}  // namespace
}  // namespace nori::net
