#include "net/transport.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "runtime/io.h"

namespace nori::net {

namespace io = runtime::io;
using std::chrono::milliseconds;

namespace {

// Closes an fd on scope exit unless released.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int release() { return std::exchange(fd_, -1); }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Runs t under a child scope that a timer cancels after d: every wait inside
// t then ends with kCancelled and *expired says it was the deadline.
template <typename T>
runtime::Task<T> with_deadline(runtime::Task<T> t, base::Duration d, bool* expired) {
  runtime::CancelScope scope(co_await runtime::current_scope());
  runtime::Timer timer([&scope, expired] {
    *expired = true;
    scope.cancel();
  });
  timer.arm_in(d);
  t.set_scope(&scope);
  co_return co_await std::move(t);
}

base::Error refused(Refusal r, bool by_peer, NodeId peer, uint16_t peer_cores, uint16_t our_cores) {
  if (r == Refusal::kCoreCountMismatch && !by_peer) {
    // The one refusal an operator must fix by configuration: say exactly what differs.
    return base::err(base::ErrorKind::kProtocol,
                     "handshake with node {} refused: it runs {} cores and this node {}; every "
                     "node of a cluster must run the same core count (group placement)",
                     peer, peer_cores, our_cores);
  }
  return base::err(base::ErrorKind::kProtocol, "handshake with node {} refused {}: {}", peer,
                   by_peer ? "by the peer" : "by us", to_string(r));
}

}  // namespace

base::Result<std::unique_ptr<Transport>> Transport::create(TransportConfig cfg,
                                                           TransportHandler& handler) {
  const LocalIdentity& me = cfg.self;
  if (me.node_id == 0 || me.incarnation == 0 || me.core_index >= me.core_count) {
    return base::err(base::ErrorKind::kInvalidArgument,
                     "bad identity: node {} incarnation {} core {}/{}", me.node_id, me.incarnation,
                     me.core_index, me.core_count);
  }
  if (cfg.cluster_secret.empty()) {
    return base::err(base::ErrorKind::kInvalidArgument, "the cluster secret is empty");
  }
  NORI_ASSIGN_OR_RETURN(SocketAddress addr, parse_address(cfg.listen_host, cfg.listen_port));
  NORI_ASSIGN_OR_RETURN(int fd, listen_socket(addr));
  auto port = local_port(fd);
  if (!port) {
    ::close(fd);
    return port.error();
  }
  std::unique_ptr<Transport> t(new Transport(std::move(cfg), handler, fd, *port));
  t->start(t->accept_loop());
  return t;
}

Transport::Transport(TransportConfig cfg, TransportHandler& handler, int listen_fd, uint16_t port)
    : cfg_(std::move(cfg)),
      handler_(handler),
      key_(ClusterKey::from_secret(cfg_.cluster_secret)),
      listen_fd_(listen_fd),
      port_(port),
      reactor_(&runtime::Reactor::here()),
      scope_(&runtime::Reactor::here().root_scope()) {
  Nonce seed = random_nonce();
  rng_.seed(base::load_u64(seed.data()));
}

Transport::~Transport() {
  NORI_ASSERT(shut_down_, "Transport destroyed without shutdown()");
}

void Transport::start(runtime::Task<void> t) {
  if (!gate_.enter()) return;
  runtime::spawn(scoped(this, std::move(t)));
}

runtime::Task<void> Transport::scoped(Transport* self, runtime::Task<void> t) {
  t.set_scope(&self->scope_);
  co_await std::move(t);
  self->gate_.leave();
}

Transport::Peer& Transport::peer(NodeId id) {
  auto& p = peers_[id];
  if (!p) {
    p = std::make_unique<Peer>();
    p->id = id;
    for (size_t lane = 0; lane < kLaneCount; ++lane) {
      p->links[lane] = std::make_unique<Link>(cfg_, handler_, stats_, gate_, scope_, id,
                                              static_cast<Lane>(lane));
    }
  }
  return *p;
}

Link& Transport::link(NodeId id, MessageType type) {
  return *peer(id).links[static_cast<size_t>(lane_of(type))];
}

base::Status Transport::set_peer_address(NodeId id, const std::string& host, uint16_t port) {
  NORI_ASSERT(&runtime::Reactor::here() == reactor_, "transport used from another reactor");
  if (id == cfg_.self.node_id) {
    return base::err(base::ErrorKind::kInvalidArgument, "node {} is this node", id);
  }
  NORI_ASSIGN_OR_RETURN(SocketAddress addr, parse_address(host, port));
  Peer& p = peer(id);
  p.address = addr;
  // The lower node id dials; the higher one only accepts (docs/net.md).
  if (cfg_.self.node_id < id && !p.dialing) {
    p.dialing = true;
    for (size_t lane = 0; lane < kLaneCount; ++lane)
      start(dial_loop(&p, static_cast<Lane>(lane)));
  }
  return {};
}

void Transport::forget_peer(NodeId id) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  Peer& p = *it->second;
  p.address.reset();  // the dial loops stop at their next attempt
  for (auto& l : p.links) {
    l->close();
    l->down_signal().notify();
  }
}

namespace {
base::Status check_destination(NodeId to, NodeId self) {
  if (to == 0 || to == self) {
    return base::err(base::ErrorKind::kInvalidArgument, "cannot send to node {} from node {}", to,
                     self);
  }
  return {};
}
}  // namespace

base::Status Transport::send(NodeId to, GroupId group, MessageType type, std::string_view payload) {
  NORI_TRY(check_destination(to, cfg_.self.node_id));
  return link(to, type).send(type, group, payload);
}

base::Status Transport::send(NodeId to, GroupId group, MessageType type, std::string&& payload) {
  NORI_TRY(check_destination(to, cfg_.self.node_id));
  return link(to, type).send(type, group, std::move(payload));
}

void Transport::stage_heartbeat(NodeId to, const HeartbeatEntry& e) {
  NORI_ASSERT(to != 0 && to != cfg_.self.node_id, "heartbeat to node {} from itself", to);
  link(to, MessageType::kHeartbeats).stage_heartbeat(e);
}

void Transport::stage_heartbeat_reply(NodeId to, const HeartbeatReply& r) {
  NORI_ASSERT(to != 0 && to != cfg_.self.node_id, "heartbeat reply to node {} from itself", to);
  link(to, MessageType::kHeartbeatReplies).stage_heartbeat_reply(r);
}

bool Transport::connected(NodeId id, Lane lane) const {
  auto it = peers_.find(id);
  return it != peers_.end() && it->second->links[static_cast<size_t>(lane)]->connected();
}

void Transport::disconnect(NodeId id, Lane lane) {
  auto it = peers_.find(id);
  if (it != peers_.end()) it->second->links[static_cast<size_t>(lane)]->close();
}

const LinkStats* Transport::link_stats(NodeId id, Lane lane) const {
  auto it = peers_.find(id);
  if (it == peers_.end()) return nullptr;
  return &it->second->links[static_cast<size_t>(lane)]->stats();
}

size_t Transport::queued_bytes(NodeId id) const {
  auto it = peers_.find(id);
  if (it == peers_.end()) return 0;
  size_t n = 0;
  for (const auto& l : it->second->links)
    n += l->queued_bytes();
  return n;
}

runtime::Task<void> Transport::shutdown() {
  if (shut_down_) co_return;
  // Order: cancel every task first (accept, dials, handshakes, connection
  // loops), close the links so their sockets are shut down, then wait for all
  // tasks to leave the gate: only then are no operations on our fds in flight
  // and the listening socket can be closed.
  scope_.cancel();
  for (auto& [id, p] : peers_) {
    for (auto& l : p->links)
      l->close();
  }
  co_await gate_.close();
  ::close(listen_fd_);
  shut_down_ = true;
}

void Transport::count_refusal(const HandshakeStep& s) {
  auto i = static_cast<size_t>(s.refusal);
  if (s.by_peer) {
    ++stats_.refused_by_peer[i];
  } else {
    ++stats_.refused[i];
  }
}

// ---- accepting -------------------------------------------------------------

runtime::Task<void> Transport::accept_loop() {
  while (true) {
    auto fd = co_await io::accept(listen_fd_, nullptr, nullptr);
    if (!fd) {
      if (fd.error().kind() == base::ErrorKind::kCancelled || scope_.cancelled()) break;
      // EMFILE and friends: back off a little instead of spinning.
      auto st = co_await net::sleep_for(milliseconds(10));
      if (!st) break;
      continue;
    }
    if (scope_.cancelled()) {  // accepted just as shutdown began
      ::close(*fd);
      break;
    }
    ++stats_.accepted;
    if (handshakes_in_flight_ >= cfg_.handshakes_in_flight_max) {
      ++stats_.handshakes_shed;
      ::close(*fd);
      continue;
    }
    ++handshakes_in_flight_;
    start(accept_one(*fd));
  }
}

runtime::Task<void> Transport::accept_one(int raw_fd) {
  FdGuard fd(raw_fd);
  tune_connected_socket(fd.get(), cfg_.idle_timeout_ms);
  bool expired = false;
  auto r = co_await with_deadline(handshake_in(fd.get()), milliseconds(cfg_.handshake_timeout_ms),
                                  &expired);
  --handshakes_in_flight_;
  if (!r) {
    // A peer that connects and sends nothing (or too little) ends here.
    if (expired) ++stats_.refused[static_cast<size_t>(Refusal::kTimeout)];
    last_handshake_error_ = expired ? "handshake timed out" : r.error().message();
    co_return;
  }
  ++stats_.handshakes_ok;
  handler_.on_peer_identified(r->peer, r->incarnation);
  peer(r->peer).links[static_cast<size_t>(r->lane)]->attach(fd.release(), r->seed);
}

runtime::Task<base::Result<Transport::Established>> Transport::handshake_in(int fd) {
  Acceptor a(cfg_.self, key_, random_nonce());
  uint8_t buf[kHelloBytes];
  static_assert(kHelloBytes >= kProofBytes);
  NORI_CO_TRY(co_await read_exact(fd, buf, kHandshakePrefixBytes));
  HandshakeStep s = a.on_hello_prefix({buf, kHandshakePrefixBytes});
  if (s.refusal == Refusal::kNone) {
    NORI_CO_TRY(
        co_await read_exact(fd, buf + kHandshakePrefixBytes, kHelloBytes - kHandshakePrefixBytes));
    s = a.on_hello({buf, kHelloBytes}, policy_);
  }
  if (s.refusal != Refusal::kNone) {
    count_refusal(s);
    (void)co_await send_all(fd, s.send);  // best effort: the reason, then close
    co_return refused(s.refusal, false, a.peer(), a.peer_core_count(), cfg_.self.core_count);
  }
  NORI_CO_TRY(co_await send_all(fd, s.send));  // the challenge
  NORI_CO_TRY(co_await read_exact(fd, buf, kHandshakePrefixBytes));
  s = a.on_proof_prefix({buf, kHandshakePrefixBytes});
  if (s.refusal == Refusal::kNone) {
    NORI_CO_TRY(
        co_await read_exact(fd, buf + kHandshakePrefixBytes, kProofBytes - kHandshakePrefixBytes));
    s = a.on_proof({buf, kProofBytes});
  }
  if (s.refusal != Refusal::kNone) {
    count_refusal(s);
    if (!s.by_peer) (void)co_await send_all(fd, s.send);
    co_return refused(s.refusal, s.by_peer, a.peer(), a.peer_core_count(), cfg_.self.core_count);
  }
  NORI_CO_TRY(co_await send_all(fd, s.send));  // the verdict
  co_return Established{fd, a.session_seed(), a.peer(), a.lane(), a.peer_incarnation()};
}

// ---- dialing ---------------------------------------------------------------

runtime::Task<void> Transport::dial_loop(Peer* p, Lane lane) {
  Link& l = *p->links[static_cast<size_t>(lane)];
  uint32_t backoff_ms = cfg_.backoff_min_ms;
  while (!scope_.cancelled() && p->address) {
    if (l.connected()) {
      auto st = co_await l.down_signal().wait();
      if (!st) break;
      continue;
    }
    ++stats_.dials;
    bool expired = false;
    auto r = co_await with_deadline(
        dial_once(p, lane), milliseconds(cfg_.connect_timeout_ms + cfg_.handshake_timeout_ms),
        &expired);
    if (r) {
      ++stats_.handshakes_ok;
      handler_.on_peer_identified(r->peer, r->incarnation);
      l.attach(r->fd, r->seed);
      backoff_ms = cfg_.backoff_min_ms;
      continue;
    }
    ++stats_.dial_failures;
    if (expired) ++stats_.refused[static_cast<size_t>(Refusal::kTimeout)];
    last_handshake_error_ = expired ? "connect or handshake timed out" : r.error().message();
    if (scope_.cancelled()) break;
    // Exponential backoff with jitter: uniform in [backoff/2, backoff], so
    // the cores of a restarted node do not all redial in step.
    std::uniform_int_distribution<uint32_t> jitter(backoff_ms / 2, backoff_ms);
    auto st = co_await net::sleep_for(milliseconds(jitter(rng_)));
    if (!st) break;
    backoff_ms = std::min(backoff_ms * 2, cfg_.backoff_max_ms);
  }
  p->dialing = false;
}

runtime::Task<base::Result<Transport::Established>> Transport::dial_once(Peer* p, Lane lane) {
  NORI_CO_ASSIGN_OR_RETURN(int raw, tcp_socket(p->address->family()));
  FdGuard fd(raw);
  SocketAddress addr = *p->address;
  NORI_CO_TRY(co_await io::connect(fd.get(), addr.get(), addr.length));
  tune_connected_socket(fd.get(), cfg_.idle_timeout_ms);
  NORI_CO_ASSIGN_OR_RETURN(Established e, co_await handshake_out(fd.get(), p->id, lane));
  e.fd = fd.release();
  co_return e;
}

runtime::Task<base::Result<Transport::Established>> Transport::handshake_out(int fd, NodeId id,
                                                                             Lane lane) {
  Dialer d(cfg_.self, key_, id, lane, random_nonce());
  NORI_CO_TRY(co_await send_all(fd, d.hello()));
  uint8_t buf[kChallengeBytes];
  NORI_CO_TRY(co_await read_exact(fd, buf, kHandshakePrefixBytes));
  HandshakeStep s = d.on_challenge_prefix({buf, kHandshakePrefixBytes});
  if (s.refusal == Refusal::kNone) {
    NORI_CO_TRY(co_await read_exact(fd, buf + kHandshakePrefixBytes,
                                    kChallengeBytes - kHandshakePrefixBytes));
    s = d.on_challenge({buf, kChallengeBytes}, policy_);
  }
  if (s.refusal != Refusal::kNone) {
    count_refusal(s);
    if (!s.by_peer) (void)co_await send_all(fd, s.send);
    co_return refused(s.refusal, s.by_peer, id, d.peer_core_count(), cfg_.self.core_count);
  }
  NORI_CO_TRY(co_await send_all(fd, s.send));  // the proof
  NORI_CO_TRY(co_await read_exact(fd, buf, kVerdictBytes));
  s = d.on_verdict({buf, kVerdictBytes});
  if (s.refusal != Refusal::kNone) {
    count_refusal(s);
    co_return refused(s.refusal, s.by_peer, id, d.peer_core_count(), cfg_.self.core_count);
  }
  co_return Established{fd, d.session_seed(), id, lane, d.peer_incarnation()};
}

}  // namespace nori::net
