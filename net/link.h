// Link: everything core i keeps for one lane to core i of one peer node: the
// bounded send queue (with its drop policy and the coalesced heartbeats
// staged for the next flush) and the current TCP connection, driven by a
// writer, a reader and a watchdog.
//
// Sending: send() encodes the message straight into the pending batch (one
// copy, none for large owned payloads) and wakes the writer; the writer yields
// once so that everything queued in the same reactor round joins the batch,
// then writes the whole batch with one gathered sendmsg. While that write is
// in flight, new messages gather in the next batch.
//
// Receiving: the reader receives into the connection's reusable FrameReader
// buffer and hands each verified frame's messages to the handler as views
// into that buffer (decoded in place, no copy). Bad input closes only this
// connection; the dialer replaces it.
//
// Ownership: the Transport owns its Links; a Link owns its current
// Connection, whose tasks are counted by the Transport's gate, so the
// Transport outlives them. Single reactor: every call on the owning reactor.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/frame.h"
#include "net/heartbeat.h"
#include "net/options.h"
#include "net/signal.h"
#include "runtime/base/bytes.h"
#include "runtime/base/clock.h"
#include "runtime/base/result.h"
#include "runtime/cancel.h"
#include "runtime/reactor.h"
#include "runtime/task.h"

namespace nori::net {

// Entries per coalesced heartbeat message: keeps one message under
// kMessageBytesMax even when every varint takes its 10 bytes. A core leading
// more groups toward one peer sends ceil(n / this) messages per flush.
inline constexpr size_t kHeartbeatEntriesPerMessageMax =
    (kMessageBytesMax - base::kVarintMaxBytes) / (4 * base::kVarintMaxBytes);
static_assert(kHeartbeatEntriesPerMessageMax <= kHeartbeatEntriesMax);

class Link {
 public:
  Link(const TransportConfig& cfg, TransportHandler& handler, TransportStats& transport_stats,
       runtime::Gate& gate, runtime::CancelScope& scope, NodeId peer, Lane lane);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // Queues one group message (see TransportConfig for the bounds): kBusy when a
  // droppable message does not fit (counted; the caller's group falls back to
  // probing), kInvalidArgument when it exceeds kMessageBytesMax.
  base::Status send(MessageType type, GroupId group, std::string_view payload);
  base::Status send(MessageType type, GroupId group, std::string&& payload);

  // Completes once the writer has taken the queue (room for a full queue's
  // worth again) or the queue was dropped; kCancelled if the caller's scope is
  // cancelled. For senders that got kBusy and want to wait rather than drop.
  WaitList::Wait wait_for_space() { return space_.wait(); }

  // Stages heartbeat entries for the next flush (priority lane). Entries for
  // the same group staged before a flush collapse to the last one. Discarded
  // (counted) when the link is down: by the next tick they would be stale.
  void stage_heartbeat(const HeartbeatEntry& e);
  void stage_heartbeat_reply(const HeartbeatReply& r);

  // Takes over an established connection (handshake done), replacing the
  // current one if any (the newest connection wins: its dialer has given up
  // on the old one).
  void attach(int fd, uint64_t seed);
  // Closes the current connection, if any.
  void close();
  bool connected() const { return conn_ != nullptr; }
  // Notified each time a connection ends (the dialer waits on it).
  Signal& down_signal() { return down_; }

  NodeId peer() const { return peer_; }
  Lane lane() const { return lane_; }
  size_t queued_bytes() const { return pending_.bytes(); }
  size_t queued_messages() const { return pending_.messages(); }
  const LinkStats& stats() const { return stats_; }

 private:
  struct Connection;
  runtime::Task<void> connection_task(Connection* c, bool writer);
  runtime::Task<void> write_loop(Connection* c);
  runtime::Task<void> read_loop(Connection* c);
  void end_connection(Connection* c);
  bool has_output(const Connection* c) const;
  void collect(Connection* c);
  void dispatch(Connection* c);
  base::Status admit(MessageType type, size_t payload_bytes);
  void note_queued(MessageType type, GroupId group);
  void lose(std::vector<GroupId>& groups);
  void on_watchdog(Connection* c);

  const TransportConfig& cfg_;
  TransportHandler& handler_;
  TransportStats& transport_stats_;
  runtime::Gate& gate_;
  runtime::CancelScope& scope_;
  const NodeId peer_;
  const Lane lane_;

  FrameBuilder pending_;                 // the next batch
  std::vector<GroupId> pending_groups_;  // one per group message in pending_
  std::vector<HeartbeatEntry> heartbeats_;
  std::vector<HeartbeatReply> heartbeat_replies_;
  std::string scratch_;  // heartbeat encoding

  Connection* conn_ = nullptr;
  Signal down_;
  WaitList space_;  // senders waiting for queue space
  LinkStats stats_;
};

}  // namespace nori::net
