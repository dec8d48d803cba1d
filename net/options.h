// What a per-core Transport is configured with, what it reports to the node
// layer (TransportHandler) and what it counts (TransportStats, LinkStats).
// docs/net.md explains the choices behind each default.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "net/frame.h"
#include "net/handshake.h"
#include "net/heartbeat.h"
#include "net/wire.h"

namespace nori::net {

struct TransportConfig {
  LocalIdentity self;                     // core_index must be the reactor the Transport lives on
  std::string cluster_secret;             // every node of the cluster has the same one
  std::string listen_host = "127.0.0.1";  // numeric IPv4 or IPv6
  uint16_t listen_port = 0;               // this core's port; 0 = ephemeral (see Transport::port())

  // Per peer and lane. Droppable messages (group, group_bulk) are refused
  // (kBusy, counted) once the queue holds queue_bytes_max bytes or
  // queue_messages_max messages; votes and heartbeat replies are still
  // admitted up to queue_hard_bytes_max, beyond which the peer has stopped
  // reading for so long that the whole queue is dropped (the groups are told)
  // rather than letting memory grow. One batch may be in flight on top.
  size_t queue_bytes_max = size_t{8} << 20;
  size_t queue_messages_max = 65536;
  size_t queue_hard_bytes_max = size_t{16} << 20;

  // Unauthenticated connections in their handshake at once; more are closed
  // at accept (counted as handshakes_shed), so a connection flood costs
  // bounded memory and file descriptors.
  uint32_t handshakes_in_flight_max = 64;
  uint32_t connect_timeout_ms = 1000;
  uint32_t handshake_timeout_ms = 2000;
  // A connection that has sent nothing for keepalive_ms sends an empty frame;
  // one that has received nothing for idle_timeout_ms is closed and replaced
  // (half-open or silent peer). TCP_USER_TIMEOUT is set to idle_timeout_ms too.
  uint32_t keepalive_ms = 250;
  uint32_t idle_timeout_ms = 3000;
  // Reconnect delay: exponential from backoff_min_ms to backoff_max_ms, each
  // delay drawn uniformly from [delay/2, delay] (jitter).
  uint32_t backoff_min_ms = 20;
  uint32_t backoff_max_ms = 2000;
  // Per connection, kept between frames: several batch frames fit, so the
  // partial frame at its end is moved to the front rarely (and is small).
  size_t recv_buffer_bytes = 512 * 1024;
};

// The node layer's side. Called on the Transport's reactor, never re-entered
// for the same connection; payload views are valid only during the call
// (they point into the connection's receive buffer). A handler may call the
// Transport's send/stage functions from inside a callback.
class TransportHandler {
 public:
  virtual ~TransportHandler() = default;
  // A group message (kGroup, kGroupUrgent, kGroupBulk) from `from`.
  virtual void on_message(NodeId from, GroupId group, MessageType type,
                          std::string_view payload) = 0;
  virtual void on_heartbeats(NodeId from, std::span<const HeartbeatEntry> entries) = 0;
  virtual void on_heartbeat_replies(NodeId from, std::span<const HeartbeatReply> replies) = 0;
  // Messages send() accepted for `to` that will not arrive: their connection
  // broke with them in flight, or the queue was dropped at its hard bound.
  // `groups` is sorted and deduplicated. A leader falls back to probing.
  virtual void on_dropped(NodeId to, std::span<const GroupId> groups) = 0;
  // A handshake with `peer` succeeded (either direction) and it proved to be
  // incarnation `incarnation` (the id its data directory was created with).
  // Called before the link carries anything; the node pins first-seen
  // incarnations so that a peer whose disk was wiped cannot pass for its
  // former self (Member::incarnation).
  virtual void on_peer_identified(NodeId peer, uint64_t incarnation) {}
  virtual void on_link_up(NodeId peer, Lane lane) {}
  virtual void on_link_down(NodeId peer, Lane lane) {}
};

// Per peer and lane. Plain counters: written and read on the owning reactor.
struct LinkStats {
  uint64_t writevs = 0;  // writev calls (one per batch unless short writes)
  uint64_t batches = 0;  // flushes: each takes everything queued so far
  uint64_t frames_sent = 0;
  uint64_t messages_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t heartbeat_messages_sent = 0;  // coalesced heartbeat messages
  uint64_t heartbeat_entries_sent = 0;   // groups carried by them
  uint64_t heartbeat_reply_messages_sent = 0;
  uint64_t frames_received = 0;
  uint64_t messages_received = 0;
  uint64_t bytes_received = 0;
  uint64_t drops_for_space = 0;       // send() refused with kBusy
  uint64_t messages_lost = 0;         // accepted, then lost (on_dropped)
  uint64_t queue_resets = 0;          // hard bound reached
  uint64_t heartbeats_discarded = 0;  // staged while the link was down (stale by the next tick)
  uint64_t connections = 0;           // established
  uint64_t disconnects = 0;
};

// Per core.
struct TransportStats {
  uint64_t accepted = 0;       // TCP connections accepted
  uint64_t dials = 0;          // connection attempts
  uint64_t dial_failures = 0;  // connect or handshake failed
  uint64_t handshakes_ok = 0;
  uint64_t handshakes_shed = 0;  // accepted sockets closed at once: too many handshakes in flight
  uint64_t idle_timeouts = 0;    // connections closed for silence
  uint64_t replaced = 0;         // an established connection replaced by a newer one
  uint64_t input_errors = 0;     // connections closed for bad input (sum of frame_errors)
  std::array<uint64_t, kRefusalCount> refused{};          // we refused the peer, by reason
  std::array<uint64_t, kRefusalCount> refused_by_peer{};  // the peer refused us, by reason
  std::array<uint64_t, kFrameErrorCount> frame_errors{};  // by FrameError
};

}  // namespace nori::net
