#include "net/link.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "net/socket.h"
#include "runtime/io.h"

namespace nori::net {

namespace io = runtime::io;
using std::chrono::milliseconds;

struct Link::Connection {
  Connection(Link* l, int fd_, uint64_t seed_, runtime::CancelScope& parent, size_t recv_bytes)
      : link(l), fd(fd_), seed(seed_), scope(&parent), reader(seed_, recv_bytes), watchdog([this] {
          link->on_watchdog(this);
        }) {}

  Link* link;
  const int fd;
  const uint64_t seed;
  runtime::CancelScope scope;  // cancelled to end the connection; its tasks then unwind
  FrameReader reader;
  Signal wake;       // the writer parks here
  FrameBuilder out;  // the batch being written (the writer's)
  std::vector<GroupId> out_groups;
  std::vector<iovec> iov;
  std::vector<HeartbeatEntry> heartbeats_in;
  std::vector<HeartbeatReply> replies_in;
  base::TimePoint last_recv = base::BootClock::now();
  base::TimePoint last_send = base::BootClock::now();
  bool keepalive_due = false;
  int live_tasks = 0;
  bool ended = false;
  runtime::Timer watchdog;
};

Link::Link(const TransportConfig& cfg, TransportHandler& handler, TransportStats& transport_stats,
           runtime::Gate& gate, runtime::CancelScope& scope, NodeId peer, Lane lane)
    : cfg_(cfg),
      handler_(handler),
      transport_stats_(transport_stats),
      gate_(gate),
      scope_(scope),
      peer_(peer),
      lane_(lane) {}

Link::~Link() {
  NORI_ASSERT(conn_ == nullptr, "link to {} destroyed with a live connection", peer_);
}

// ---- sending ---------------------------------------------------------------

base::Status Link::admit(MessageType type, size_t payload_bytes) {
  if (payload_bytes > kMessageBytesMax) {
    return base::err(base::ErrorKind::kInvalidArgument, "message of {} bytes exceeds {}",
                     payload_bytes, kMessageBytesMax);
  }
  const size_t wire = payload_bytes + kMessageHeaderBytesMax;
  if (!is_never_dropped(type)) {
    if (pending_.bytes() + wire > cfg_.queue_bytes_max ||
        pending_.messages() + 1 > cfg_.queue_messages_max) {
      ++stats_.drops_for_space;
      return base::err(base::ErrorKind::kBusy, "queue to node {} full ({} bytes, {} messages)",
                       peer_, pending_.bytes(), pending_.messages());
    }
  } else if (pending_.bytes() + wire > cfg_.queue_hard_bytes_max) {
    // Votes are never refused for space; but a peer that has read nothing for
    // this long gets its whole queue dropped rather than unbounded memory.
    // Every group concerned is told and resynchronises by probing.
    ++stats_.queue_resets;
    lose(pending_groups_);
    pending_.clear();
    space_.notify_all();
  }
  return {};
}

void Link::note_queued(MessageType type, GroupId group) {
  pending_groups_.push_back(group);
  if (conn_ != nullptr) conn_->wake.notify();
}

base::Status Link::send(MessageType type, GroupId group, std::string_view payload) {
  NORI_ASSERT(type != MessageType::kHeartbeats && type != MessageType::kHeartbeatReplies,
              "heartbeats go through stage_heartbeat*");
  NORI_ASSERT(lane_of(type) == lane_, "{} on the wrong lane", to_string(type));
  if (auto st = admit(type, payload.size()); !st) return st;
  pending_.add(type, group, payload);
  note_queued(type, group);
  return {};
}

base::Status Link::send(MessageType type, GroupId group, std::string&& payload) {
  NORI_ASSERT(type != MessageType::kHeartbeats && type != MessageType::kHeartbeatReplies,
              "heartbeats go through stage_heartbeat*");
  NORI_ASSERT(lane_of(type) == lane_, "{} on the wrong lane", to_string(type));
  if (auto st = admit(type, payload.size()); !st) return st;
  pending_.add_owned(type, group, std::move(payload));
  note_queued(type, group);
  return {};
}

void Link::stage_heartbeat(const HeartbeatEntry& e) {
  NORI_ASSERT(lane_ == Lane::kPriority);
  if (conn_ == nullptr) {
    ++stats_.heartbeats_discarded;
    return;
  }
  heartbeats_.push_back(e);
  // A writer stuck behind a slow peer must not let ticks pile up: collapse
  // to one entry per group (bounded by the groups on this core).
  if (heartbeats_.size() >= 2 * kHeartbeatEntriesPerMessageMax) sort_dedupe_latest(heartbeats_);
  conn_->wake.notify();
}

void Link::stage_heartbeat_reply(const HeartbeatReply& r) {
  NORI_ASSERT(lane_ == Lane::kPriority);
  if (conn_ == nullptr) {
    ++stats_.heartbeats_discarded;
    return;
  }
  heartbeat_replies_.push_back(r);
  if (heartbeat_replies_.size() >= 2 * kHeartbeatEntriesPerMessageMax) {
    sort_dedupe_latest(heartbeat_replies_);
  }
  conn_->wake.notify();
}

void Link::lose(std::vector<GroupId>& groups) {
  if (groups.empty()) return;
  stats_.messages_lost += groups.size();
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  handler_.on_dropped(peer_, groups);
  groups.clear();
}

bool Link::has_output(const Connection* c) const {
  return !pending_.empty() || !heartbeats_.empty() || !heartbeat_replies_.empty() ||
         c->keepalive_due;
}

// Moves everything queued into the connection's batch: the pending messages
// (by swapping buffers, no copy), then one coalesced heartbeat message and
// one coalesced reply message.
void Link::collect(Connection* c) {
  NORI_ASSERT(c->out.empty() && c->out_groups.empty());
  std::swap(c->out, pending_);
  std::swap(c->out_groups, pending_groups_);
  space_.notify_all();  // the queue is empty again
  if (!heartbeats_.empty()) {
    sort_dedupe_latest(heartbeats_);
    std::span<const HeartbeatEntry> all(heartbeats_);
    for (size_t at = 0; at < all.size(); at += kHeartbeatEntriesPerMessageMax) {
      auto part = all.subspan(at, std::min(kHeartbeatEntriesPerMessageMax, all.size() - at));
      scratch_.clear();
      encode_heartbeats(part, scratch_);
      c->out.add(MessageType::kHeartbeats, 0, scratch_);
      ++stats_.heartbeat_messages_sent;
      stats_.heartbeat_entries_sent += part.size();
    }
    heartbeats_.clear();
  }
  if (!heartbeat_replies_.empty()) {
    sort_dedupe_latest(heartbeat_replies_);
    std::span<const HeartbeatReply> all(heartbeat_replies_);
    for (size_t at = 0; at < all.size(); at += kHeartbeatEntriesPerMessageMax) {
      auto part = all.subspan(at, std::min(kHeartbeatEntriesPerMessageMax, all.size() - at));
      scratch_.clear();
      encode_heartbeat_replies(part, scratch_);
      c->out.add(MessageType::kHeartbeatReplies, 0, scratch_);
      ++stats_.heartbeat_reply_messages_sent;
    }
    heartbeat_replies_.clear();
  }
  if (c->out.messages() == 0 && c->keepalive_due) c->out.add_keepalive();
  c->keepalive_due = false;
  // Checksums use this connection's seed, whatever connection was up when the
  // messages were queued.
  c->out.set_seed(c->seed);
  c->out.seal();
}

runtime::Task<void> Link::write_loop(Connection* c) {
  while (!c->scope.cancelled()) {
    if (!has_output(c)) {
      auto st = co_await c->wake.wait();
      if (!st) break;
      continue;
    }
    // Let the rest of this reactor round queue its messages: they join this
    // batch and leave in the same write.
    co_await runtime::yield();
    if (c->scope.cancelled()) break;
    collect(c);
    auto iov = c->out.iovecs();
    c->iov.assign(iov.begin(), iov.end());
    ++stats_.batches;
    auto st = co_await writev_all(c->fd, c->iov, &stats_.writevs);
    if (!st) {
      // Whatever part of the batch reached the peer, the rest is lost with
      // this connection: tell the groups, they resend.
      lose(c->out_groups);
      c->out.clear();
      break;
    }
    stats_.frames_sent += c->out.frames();
    stats_.messages_sent += c->out.messages();
    stats_.bytes_sent += c->out.bytes();
    c->last_send = base::BootClock::now();
    c->out.clear();
    c->out_groups.clear();
  }
}

// ---- receiving -------------------------------------------------------------

void Link::dispatch(Connection* c) {
  auto msgs = c->reader.messages();
  ++stats_.frames_received;
  stats_.messages_received += msgs.size();
  for (const MessageView& m : msgs) {
    switch (m.type) {
      case MessageType::kHeartbeats:
        c->heartbeats_in.clear();
        // Validated with the frame; decoding cannot fail now.
        NORI_ASSERT(decode_heartbeats(m.payload, c->heartbeats_in));
        handler_.on_heartbeats(peer_, c->heartbeats_in);
        break;
      case MessageType::kHeartbeatReplies:
        c->replies_in.clear();
        NORI_ASSERT(decode_heartbeat_replies(m.payload, c->replies_in));
        handler_.on_heartbeat_replies(peer_, c->replies_in);
        break;
      default:
        handler_.on_message(peer_, m.group, m.type, m.payload);
    }
  }
}

runtime::Task<void> Link::read_loop(Connection* c) {
  while (true) {
    std::span<char> w = c->reader.writable();
    auto r = co_await io::recv(c->fd, w.data(), w.size());
    if (!r || *r == 0) break;  // closed, reset, or cancelled
    c->reader.produced(*r);
    c->last_recv = base::BootClock::now();
    stats_.bytes_received += *r;
    FrameReader::Status st;
    while ((st = c->reader.next()) == FrameReader::kFrame)
      dispatch(c);
    if (st == FrameReader::kError) {
      ++transport_stats_.input_errors;
      ++transport_stats_.frame_errors[static_cast<size_t>(c->reader.error())];
      break;
    }
  }
}

// ---- connection lifetime ---------------------------------------------------

void Link::on_watchdog(Connection* c) {
  auto now = base::BootClock::now();
  if (now - c->last_recv > milliseconds(cfg_.idle_timeout_ms)) {
    // Silent or half-open: nothing (not even a keep-alive) for too long.
    ++transport_stats_.idle_timeouts;
    end_connection(c);
    return;
  }
  if (now - c->last_send >= milliseconds(cfg_.keepalive_ms)) {
    c->keepalive_due = true;
    c->wake.notify();
  }
  c->watchdog.arm_in(milliseconds(std::max<uint32_t>(1, cfg_.keepalive_ms / 2)));
}

void Link::attach(int fd, uint64_t seed) {
  if (conn_ != nullptr) {
    ++transport_stats_.replaced;
    ++transport_stats_.refused[static_cast<size_t>(Refusal::kDuplicate)];
    end_connection(conn_);
  }
  // A transport shutting down takes no new connection.
  if (gate_.closed()) {
    ::close(fd);
    return;
  }
  auto* c = new Connection(this, fd, seed, scope_, cfg_.recv_buffer_bytes);
  conn_ = c;
  ++stats_.connections;
  c->watchdog.arm_in(milliseconds(std::max<uint32_t>(1, cfg_.keepalive_ms / 2)));
  for (bool writer : {true, false}) {
    NORI_ASSERT(gate_.enter());
    ++c->live_tasks;
    runtime::spawn(connection_task(c, writer));
  }
  handler_.on_link_up(peer_, lane_);
  // Anything queued while the link was down goes out now.
  if (has_output(c)) c->wake.notify();
}

void Link::close() {
  if (conn_ != nullptr) end_connection(conn_);
}

void Link::end_connection(Connection* c) {
  if (c->ended) return;
  c->ended = true;
  c->watchdog.cancel();
  // Shut the socket down first so the peer sees the end even while our
  // cancelled operations drain; the fd itself is closed by the last task.
  ::shutdown(c->fd, SHUT_RDWR);
  c->scope.cancel();
  if (conn_ == c) {
    conn_ = nullptr;
    ++stats_.disconnects;
    // Staged heartbeats are for this connection's peer state; the next tick
    // stages fresh ones.
    stats_.heartbeats_discarded += heartbeats_.size() + heartbeat_replies_.size();
    heartbeats_.clear();
    heartbeat_replies_.clear();
    handler_.on_link_down(peer_, lane_);
    down_.notify();
  }
}

runtime::Task<void> Link::connection_task(Connection* c, bool writer) {
  {
    runtime::Task<void> t = writer ? write_loop(c) : read_loop(c);
    t.set_scope(&c->scope);
    co_await std::move(t);
  }
  // Either task ending ends the connection (the other is cancelled); the
  // last one out frees it, once no operation of either is in flight.
  end_connection(c);
  if (--c->live_tasks == 0) {
    ::close(c->fd);
    delete c;
  }
  gate_.leave();
}

}  // namespace nori::net
