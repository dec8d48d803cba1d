// Test harness: several nodes' transports inside one process, one per
// reactor of a shared Runtime, talking over loopback TCP; plus a blocking
// "raw peer" that speaks the handshake by hand to send bad input.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/handshake.h"
#include "net/transport.h"
#include "runtime/runtime.h"

namespace nori::net::testing {

inline constexpr uint64_t kCluster = 0xAB;
inline constexpr const char* kSecret = "loopback secret";
// A member no transport runs: the blocking raw peer of the tests poses as it.
inline constexpr NodeId kRawNode = 99;
inline constexpr uint64_t kRawIncarnation = 990;

// Records everything a node receives. Touched only on its node's reactor.
struct Recorder : TransportHandler {
  std::map<std::pair<NodeId, GroupId>, std::vector<std::string>> messages;
  uint64_t message_count = 0;
  std::vector<std::pair<NodeId, std::vector<HeartbeatEntry>>> heartbeats;
  std::vector<std::pair<NodeId, std::vector<HeartbeatReply>>> replies;
  std::vector<GroupId> dropped;
  uint64_t dropped_calls = 0;
  // Optional: reply to heartbeats (a follower echoing the round).
  Transport* echo = nullptr;

  void on_message(NodeId from, GroupId group, MessageType, std::string_view payload) override {
    messages[{from, group}].emplace_back(payload);
    ++message_count;
  }
  void on_heartbeats(NodeId from, std::span<const HeartbeatEntry> e) override {
    heartbeats.emplace_back(from, std::vector<HeartbeatEntry>(e.begin(), e.end()));
    if (echo != nullptr) {
      for (const auto& h : e)
        echo->stage_heartbeat_reply(from, {h.group, h.term, h.round, 0});
    }
  }
  void on_heartbeat_replies(NodeId from, std::span<const HeartbeatReply> r) override {
    replies.emplace_back(from, std::vector<HeartbeatReply>(r.begin(), r.end()));
  }
  void on_dropped(NodeId, std::span<const GroupId> groups) override {
    dropped.insert(dropped.end(), groups.begin(), groups.end());
    ++dropped_calls;
  }
};

inline TransportConfig test_config(NodeId node, uint64_t incarnation) {
  TransportConfig c;
  c.self = {kCluster, node, incarnation, 0, 1};
  c.cluster_secret = kSecret;
  c.keepalive_ms = 50;
  c.idle_timeout_ms = 1500;
  c.handshake_timeout_ms = 300;
  c.connect_timeout_ms = 300;
  c.backoff_min_ms = 10;
  c.backoff_max_ms = 100;
  return c;
}

struct Node {
  NodeId id;
  unsigned core;
  Recorder rec;
  std::unique_ptr<Transport> t;
};

// n nodes (ids 1..n, incarnation 10*id) on a 2-core runtime; node i on core (i-1)%2.
class Cluster {
 public:
  explicit Cluster(size_t n, std::function<void(TransportConfig&)> tweak = {})
      : rt_(runtime::RuntimeConfig{.cores = 2}) {
    for (size_t i = 0; i < n; ++i) {
      auto node = std::make_unique<Node>();
      node->id = i + 1;
      node->core = static_cast<unsigned>(i % 2);
      TransportConfig cfg = test_config(node->id, 10 * node->id);
      if (tweak) tweak(cfg);
      Node* np = node.get();
      rt_.block_on(np->core, [np, cfg] {
        auto t = Transport::create(cfg, np->rec);
        NORI_ASSERT(t.ok(), "{}", t.error().to_string());
        np->t = std::move(t).value();
      });
      nodes_.push_back(std::move(node));
    }
    std::vector<Member> members;
    for (auto& nd : nodes_)
      members.push_back({nd->id, 10 * nd->id});
    members.push_back({kRawNode, kRawIncarnation});  // the raw test peer
    for (auto& nd : nodes_) {
      Node* np = nd.get();
      rt_.block_on(np->core, [&, np] {
        np->t->set_members(members);
        for (auto& other : nodes_) {
          if (other->id == np->id) continue;
          auto st = np->t->set_peer_address(other->id, "127.0.0.1", other->t->port());
          NORI_ASSERT(st.ok());
        }
      });
    }
  }
  ~Cluster() {
    for (auto& nd : nodes_) {
      Node* np = nd.get();
      rt_.block_on(np->core, [np]() -> runtime::Task<void> { co_await np->t->shutdown(); });
      rt_.block_on(np->core, [np] { np->t.reset(); });
    }
    rt_.stop();
  }

  Node& node(NodeId id) { return *nodes_[id - 1]; }

  uint16_t other_port(Node& n) {
    return rt_.block_on(n.core, [&n] { return n.t->port(); });
  }

  // Stops node `id`'s transport and starts a new one on the same port (a
  // process restart with the same data directory: same incarnation).
  void restart(NodeId id, std::function<void(TransportConfig&)> tweak = {}) {
    Node* np = &node(id);
    uint16_t port = other_port(*np);
    rt_.block_on(np->core, [np]() -> runtime::Task<void> { co_await np->t->shutdown(); });
    rt_.block_on(np->core, [np] {
      np->t.reset();
      np->rec = Recorder{};
    });
    TransportConfig cfg = test_config(np->id, 10 * np->id);
    cfg.listen_port = port;
    if (tweak) tweak(cfg);
    std::vector<Member> members;
    for (auto& nd : nodes_)
      members.push_back({nd->id, 10 * nd->id});
    std::vector<std::pair<NodeId, uint16_t>> peers;
    for (auto& other : nodes_) {
      if (other->id != np->id) peers.emplace_back(other->id, other_port(*other));
    }
    rt_.block_on(np->core, [&, np, cfg] {
      auto t = Transport::create(cfg, np->rec);
      NORI_ASSERT(t.ok(), "{}", t.error().to_string());
      np->t = std::move(t).value();
      np->t->set_members(members);
      for (auto [id, p] : peers)
        NORI_ASSERT(np->t->set_peer_address(id, "127.0.0.1", p).ok());
    });
  }
  runtime::Runtime& rt() { return rt_; }

  // Runs fn on the node's reactor and returns its value.
  template <typename F>
  auto on(NodeId id, F fn) {
    Node* np = &node(id);
    return rt_.block_on(np->core, [np, fn]() mutable { return fn(*np); });
  }

  // Polls pred (run on the node's reactor) until true, or fails after 60 s
  // (a generous bound for sanitizer builds on a loaded machine; a passing
  // run takes milliseconds).
  template <typename F>
  bool wait_until(NodeId id, F pred) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < give_up) {
      if (on(id, pred)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }

  bool wait_connected(NodeId a, NodeId b) {
    return wait_until(a, [b](Node& n) {
      return n.t->connected(b, Lane::kPriority) && n.t->connected(b, Lane::kBulk);
    });
  }

 private:
  runtime::Runtime rt_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// ---- a blocking raw peer, for bad input ----

inline int raw_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  NORI_ASSERT(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{5, 0};  // a broken test fails instead of hanging
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

inline bool raw_send(int fd, const void* p, size_t n) {
  return ::send(fd, p, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
}

inline bool raw_recv(int fd, void* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::recv(fd, static_cast<char*>(p) + got, n - got, 0);
    if (r <= 0) return false;
    got += r;
  }
  return true;
}

// True when the peer closed the connection (EOF or reset) within SO_RCVTIMEO.
inline bool raw_closed_by_peer(int fd) {
  char c;
  for (;;) {
    ssize_t r = ::recv(fd, &c, 1, 0);
    if (r == 0) return true;
    if (r < 0) return errno == ECONNRESET;
  }
}

struct RawResult {
  Refusal refusal = Refusal::kNone;
  bool by_peer = false;
  uint64_t seed = 0;
};

// Runs the dialer side of the handshake over a blocking socket.
inline RawResult raw_handshake(int fd, const LocalIdentity& me, const ClusterKey& key,
                               NodeId target, const AcceptPolicy& policy,
                               Lane lane = Lane::kPriority) {
  Dialer d(me, key, target, lane, random_nonce());

  NORI_ASSERT(raw_send(fd, d.hello().data(), d.hello().size()));
  uint8_t buf[kChallengeBytes];
  if (!raw_recv(fd, buf, kHandshakePrefixBytes)) return {Refusal::kMalformed, false, 0};
  HandshakeStep s = d.on_challenge_prefix({buf, kHandshakePrefixBytes});
  if (s.refusal == Refusal::kNone) {
    NORI_ASSERT(raw_recv(fd, buf + 8, kChallengeBytes - 8));
    s = d.on_challenge({buf, kChallengeBytes}, policy);
  }
  if (s.refusal != Refusal::kNone) {
    if (!s.by_peer) raw_send(fd, s.send.data(), s.send.size());  // tell the acceptor why
    return {s.refusal, s.by_peer, 0};
  }
  NORI_ASSERT(raw_send(fd, s.send.data(), s.send.size()));
  if (!raw_recv(fd, buf, kVerdictBytes)) return {Refusal::kMalformed, false, 0};
  s = d.on_verdict({buf, kVerdictBytes});
  return {s.refusal, s.by_peer, d.session_seed()};
}

}  // namespace nori::net::testing
