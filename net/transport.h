// Transport: one core's links to the same core of every peer node
// (docs/net.md). Core i of every node runs one Transport; it listens on its
// own port, dials the peers whose node id is greater than its own (the lower
// id dials, the higher accepts; a newer connection replaces an older one for
// the same peer and lane; how the lower id learns of a higher one its log
// missed: docs/net.md, "Members a node missed"), authenticates every connection (handshake.h), and
// moves group messages and coalesced heartbeats over two lanes per peer:
// priority (votes, heartbeats, replication) and bulk (snapshot chunks,
// catch-up), each its own TCP connection so bulk bytes never sit in front of
// a vote.
//
//   auto t = Transport::create(cfg, handler);          // on the owning reactor
//   t->set_members(members);                           // from the log's configurations
//   t->set_peer_address(2, "10.0.0.2", 7100 + core);   // starts dialing if 2 > self
//   t->send(2, group, MessageType::kGroup, bytes);     // kBusy when the queue is full
//   t->stage_heartbeat(2, {group, term, min(commit, match), round});  // one message per flush
//   ... co_await t->shutdown();
//
// Heartbeats: the node layer stages one entry per group per tick for each
// peer; everything staged before the link's writer runs goes out as ONE
// heartbeat message per peer. A pending read-index request stages an extra
// entry with a new round at any time: it leaves in the current reactor round,
// with whatever else is queued, without waiting for the next tick.
//
// Threading: create, use and shut down on one reactor; not thread-safe.
// Nothing here is durable: a message is only "handed to the kernel" when its
// batch's write completes, and lost messages are reported by on_dropped.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>

#include "net/accept_policy.h"
#include "net/handshake.h"
#include "net/link.h"
#include "net/options.h"
#include "net/socket.h"
#include "runtime/base/result.h"
#include "runtime/cancel.h"
#include "runtime/reactor.h"
#include "runtime/task.h"

namespace nori::net {

class Transport {
 public:
  // Binds the listening socket and starts accepting. Call on the reactor that
  // will own the transport.
  static base::Result<std::unique_ptr<Transport>> create(TransportConfig cfg,
                                                         TransportHandler& handler);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // The port this core listens on.
  uint16_t port() const { return port_; }
  const LocalIdentity& self() const { return cfg_.self; }

  // The nodes accepted (see accept_policy.h). Existing connections are not
  // re-checked; the node layer closes removed peers with forget_peer.
  void set_members(std::span<const Member> members) { policy_.set_members(members); }
  // Where the same core of `peer` listens (numeric host). Dials it now and
  // whenever the connection drops if peer > self.
  base::Status set_peer_address(NodeId peer, const std::string& host, uint16_t port);
  // Closes the peer's connections and forgets its queues (a removed member).
  void forget_peer(NodeId peer);

  // Queues a group message (lane chosen by type). See Link::send.
  base::Status send(NodeId to, GroupId group, MessageType type, std::string_view payload);
  base::Status send(NodeId to, GroupId group, MessageType type, std::string&& payload);
  // After kBusy: completes when the lane's queue to `to` has room again.
  WaitList::Wait wait_for_space(NodeId to, Lane lane) {
    return peer(to).links[static_cast<size_t>(lane)]->wait_for_space();
  }
  void stage_heartbeat(NodeId to, const HeartbeatEntry& e);
  void stage_heartbeat_reply(NodeId to, const HeartbeatReply& r);

  bool connected(NodeId peer, Lane lane = Lane::kPriority) const;
  // Closes the current connection of a lane (tests, operators); the dialer reconnects.
  void disconnect(NodeId peer, Lane lane);
  const TransportStats& stats() const { return stats_; }
  // Why the last failed connection attempt (either direction) failed, for
  // operators: e.g. the two core counts when a node runs a different one.
  const std::string& last_handshake_error() const { return last_handshake_error_; }
  // nullptr for a peer never seen.
  const LinkStats* link_stats(NodeId peer, Lane lane) const;
  size_t queued_bytes(NodeId peer) const;

  // Stops accepting and dialing, closes every connection, waits for every
  // task of this transport to finish. Call before destroying it.
  runtime::Task<void> shutdown();

 private:
  struct Peer {
    NodeId id = 0;
    std::optional<SocketAddress> address;
    std::array<std::unique_ptr<Link>, kLaneCount> links;
    bool dialing = false;
  };
  struct Established {
    int fd;
    uint64_t seed;
    NodeId peer;
    Lane lane;
    uint64_t incarnation;
  };

  Transport(TransportConfig cfg, TransportHandler& handler, int listen_fd, uint16_t port);
  Peer& peer(NodeId id);
  Link& link(NodeId id, MessageType type);
  void start(runtime::Task<void> t);
  static runtime::Task<void> scoped(Transport* self, runtime::Task<void> t);
  void count_refusal(const HandshakeStep& s);

  runtime::Task<void> accept_loop();
  runtime::Task<void> accept_one(int fd);
  runtime::Task<base::Result<Established>> handshake_in(int fd);
  runtime::Task<void> dial_loop(Peer* p, Lane lane);
  runtime::Task<base::Result<Established>> dial_once(Peer* p, Lane lane);
  runtime::Task<base::Result<Established>> handshake_out(int fd, NodeId peer, Lane lane);

  TransportConfig cfg_;
  TransportHandler& handler_;
  ClusterKey key_;
  AcceptPolicy policy_;
  int listen_fd_;
  uint16_t port_;
  std::unordered_map<NodeId, std::unique_ptr<Peer>> peers_;
  TransportStats stats_;
  runtime::Reactor* reactor_;
  runtime::CancelScope scope_;  // every task of this transport runs under it
  runtime::Gate gate_;          // counts them
  std::mt19937_64 rng_;         // backoff jitter
  std::string last_handshake_error_;
  uint32_t handshakes_in_flight_ = 0;  // accepted, handshake not finished
  bool shut_down_ = false;
};

}  // namespace nori::net
