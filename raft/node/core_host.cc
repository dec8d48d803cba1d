#include "raft/node/core_host.h"

#include <chrono>
#include <ctime>

#include "runtime/runtime.h"
#include "wal/posix_dir.h"

namespace nori::raft {

using base::BootClock;
using base::ErrorKind;
namespace metrics = runtime::metrics;
using runtime::Task;

namespace {

// raft_role gauges are per group; beyond this many groups on a core they are
// not registered (a scrape of 10,000 idle groups should not be 10,000 lines).
constexpr size_t kRoleGaugeGroupsMax = 256;

uint8_t role_code(Role r) {
  switch (r) {
    case Role::kFollower:
      return 0;
    case Role::kPreCandidate:
    case Role::kCandidate:
      return 1;
    case Role::kLeader:
      return 2;
  }
  return 0;
}

NodeEventKind event_kind(EventKind k) {
  switch (k) {
    case EventKind::kVoteRequest:
      return NodeEventKind::kVoteReq;
    case EventKind::kVoteGranted:
      return NodeEventKind::kVoteGranted;
    case EventKind::kLeaderElected:
      return NodeEventKind::kLeaderElected;
    case EventKind::kStepDown:
      return NodeEventKind::kStepDown;
  }
  return NodeEventKind::kVoteReq;
}

int64_t unix_ms_now() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace

CoreHost::CoreHost(Node& node, const RaftConfig& cfg, unsigned core, uint64_t incarnation)
    : node_(node),
      cfg_(cfg),
      core_(core),
      incarnation_(incarnation),
      commit_ms_(registry_.histogram("raft_commit_ms", "Propose call to committed (quorum durable)",
                                     metrics::kMillis)),
      apply_ms_(registry_.histogram("raft_apply_ms", "Time to apply one batch of committed entries",
                                    metrics::kMillis)),
      read_index_ms_(registry_.histogram("read_index_ms", "Linearizable read call to granted",
                                         metrics::kMillis)),
      stage_queued_(registry_.histogram("raft_stage_ms", "Per-request stage, from the propose call",
                                        metrics::kMillis, {{"stage", "queued"}})),
      stage_leader_wal_(registry_.histogram("raft_stage_ms",
                                            "Per-request stage, from the propose call",
                                            metrics::kMillis, {{"stage", "leader_wal_durable"}})),
      stage_quorum_(registry_.histogram("raft_stage_ms", "Per-request stage, from the propose call",
                                        metrics::kMillis, {{"stage", "quorum_durable"}})),
      stage_applied_(registry_.histogram("raft_stage_ms",
                                         "Per-request stage, from the propose call",
                                         metrics::kMillis, {{"stage", "applied"}})),
      round_groups_(registry_.histogram("raft_round_groups", "Groups with work per driver round",
                                        metrics::kPlain)),
      elections_(registry_.counter("raft_elections_total", "Elections this node started")),
      send_refused_(registry_.counter("raft_send_refused_total",
                                      "Messages the transport refused for space (retransmitted)")),
      messages_lost_(registry_.counter("raft_messages_lost_total",
                                       "Groups told that messages to a peer were lost")),
      apply_queue_(
          registry_.gauge("raft_apply_queue", "Committed entries in the last apply batch")),
      groups_gauge_(registry_.gauge("raft_groups", "Groups hosted")),
      wal_writes_(registry_.gauge("wal_durable_writes", "Durable WAL writes (syncs) so far")),
      wal_entries_(registry_.gauge("wal_entries", "Entries appended to the WAL so far")),
      wal_bytes_(registry_.gauge("wal_write_bytes", "Bytes written durably to the WAL so far")),
      net_bytes_sent_(registry_.gauge("net_bytes_sent", "Bytes sent to peers so far")),
      net_frames_sent_(registry_.gauge("net_frames_sent", "Frames sent to peers so far")),
      net_refused_conns_(registry_.gauge("net_refused_connections", "Handshakes refused so far")),
      net_queue_bytes_(registry_.gauge("net_queue_bytes", "Bytes queued toward peers")),
      storage_disk_reads_(
          registry_.gauge("raft_storage_disk_reads", "Entries read back from segment files")) {}

CoreHost::~CoreHost() = default;

Task<base::Status> CoreHost::start(std::vector<GroupId> initial_groups) {
  const std::string dir = fmt::format("{}/core-{}", cfg_.data_dir, core_);
  NORI_CO_TRY(wal::make_dir(dir));
  auto w = co_await wal::Wal::open(dir, cfg_.wal_options());
  if (!w.ok()) co_return std::move(w).error();
  wal_ = std::move(w).value();
  reader_ = std::make_unique<SegmentReader>(dir);

  const PeerAddress* self = cfg_.self_address();
  net::TransportConfig tc;
  tc.self = {cfg_.cluster_id, cfg_.node_id, incarnation_, static_cast<uint16_t>(core_),
             static_cast<uint16_t>(cfg_.cores)};
  tc.cluster_secret = cfg_.cluster_secret;
  tc.listen_host = self->host;
  tc.listen_port = static_cast<uint16_t>(self->port + core_);
  tc.queue_bytes_max = cfg_.send_queue_bytes_max;
  tc.queue_hard_bytes_max = 2 * cfg_.send_queue_bytes_max;
  auto t = net::Transport::create(tc, *this);
  if (!t.ok()) co_return std::move(t).error();
  transport_ = std::move(t).value();
  port_ = transport_->port();
  // Bootstrap members: incarnation 0 = any (docs/node.md, "Incarnations").
  std::vector<net::Member> members;
  for (const PeerAddress& p : cfg_.peers)
    members.push_back({p.id, 0});
  transport_->set_members(members);
  for (const PeerAddress& p : cfg_.peers) {
    if (p.id == cfg_.node_id) continue;
    NORI_CO_TRY(transport_->set_peer_address(p.id, p.host, static_cast<uint16_t>(p.port + core_)));
  }

  tick_timer_ = std::make_unique<runtime::Timer>([this] { on_tick(); });

  // Every group the WAL knows, then the configured ones placed here.
  std::vector<GroupId> ids;
  for (const auto& [g, log] : wal_->engine().groups())
    ids.push_back(g);
  for (GroupId g : initial_groups) {
    if (placement(g, cfg_.cores) == core_ && wal_->group(g) == nullptr) ids.push_back(g);
  }
  for (GroupId g : ids)
    NORI_CO_TRY(add_group(g));

  for (int k = 0; k < 2; ++k) {
    Task<void> task = k == 0 ? driver_loop() : durability_loop();
    task.set_scope(&loops_scope_);
    NORI_ASSERT(loops_gate_.enter());
    runtime::spawn(std::move(task));
  }
  arm_tick_timer();
  co_return base::Status{};
}

Task<void> CoreHost::close() {
  if (closing_) co_return;
  closing_ = true;
  for (auto& [id, g] : groups_)
    fail_all_waiters(g.get(), ErrorKind::kShuttingDown, "the node is shutting down");
  loops_scope_.cancel();
  co_await loops_gate_.close();
  if (tick_timer_) tick_timer_->cancel();
  if (transport_) co_await transport_->shutdown();
  if (wal_) co_await wal_->close();
  for (auto& [id, g] : groups_)
    node_.unregister_group(id);
  groups_.clear();
}

// ---- groups ----------------------------------------------------------------------

base::Status CoreHost::add_group(GroupId id) {
  if (closing_) return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  if (placement(id, cfg_.cores) != core_) {
    return base::err(ErrorKind::kInvalidArgument, "group {} belongs to core {}, not {}", id,
                     placement(id, cfg_.cores), core_);
  }
  if (groups_.contains(id)) return base::err(ErrorKind::kInvalidArgument, "group {} exists", id);
  GroupHooks hooks = node_.group_hooks(id);
  auto g = std::make_unique<Group>(id, this);
  g->storage = std::make_unique<WalStorage>(*wal_, *reader_, id);
  if (hooks.applied > g->storage->last_index()) {
    return base::err(ErrorKind::kInvalidArgument,
                     "group {}: applied index {} is beyond the last index {} in the WAL", id,
                     hooks.applied, g->storage->last_index());
  }
  auto r = Raft::create(cfg_.group_config(id, hooks.applied), *g->storage, BootClock::now());
  if (!r.ok()) return std::move(r).error();
  g->raft = std::move(r).value();
  g->apply_fn = std::move(hooks.apply);
  g->manual_ack = hooks.manual_ack;
  g->delivered = g->last_normal = g->acked = g->raft_applied = hooks.applied;
  g->cell = std::make_shared<GroupStatusCell>();
  if (groups_.size() < kRoleGaugeGroupsMax) {
    g->role_gauge = &registry_.gauge("raft_role", "0 follower, 1 candidate, 2 leader",
                                     {{"group", std::to_string(id)}});
  }
  node_.register_group(id, g->cell);
  Group* gp = g.get();
  groups_.emplace(id, std::move(g));
  groups_gauge_.set(static_cast<int64_t>(groups_.size()));
  publish_status(gp);
  rearm(gp);
  mark_dirty(gp);
  return {};
}

CoreHost::Group* CoreHost::find(GroupId g) {
  auto it = groups_.find(g);
  return it == groups_.end() ? nullptr : it->second.get();
}

void CoreHost::mark_dirty(Group* g) {
  if (g->dirty) return;
  g->dirty = true;
  dirty_.push_back(g);
  round_signal_.notify();
}

void CoreHost::fail_all_waiters(Group* g, ErrorKind kind, const char* why) {
  auto proposals = std::move(g->proposals);
  g->proposals.clear();
  for (auto& [id, w] : proposals) {
    // A proposal the core accepted may still commit: only kOutcomeUnknown is
    // honest for it, whatever the reason we stop waiting.
    w->resolve(ProposalResult{id, 0, 0, base::Error(ErrorKind::kOutcomeUnknown, why)});
  }
  auto reads = std::move(g->reads);
  g->reads.clear();
  for (auto& [id, w] : reads)
    w->resolve(ReadResult{id, ReadMode::kLease, 0, false, base::Error(kind, why)});
}

// ---- API on the group's core -----------------------------------------------------

Task<base::Result<Index>> CoreHost::propose(GroupId id, std::string data, TimePoint called) {
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  Group* g = find(id);
  if (g == nullptr) co_return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  const uint64_t req = next_request_id_++;
  const TimePoint now = BootClock::now();
  stage_queued_.record(now - called);
  auto r = g->raft->propose(std::move(data), req, now,
                            now + std::chrono::milliseconds(cfg_.propose_timeout_ms));
  if (!r.ok()) {
    // Certainly not appended. A replica that knows no leader while it cannot
    // even reach a quorum of voters says so: the caller should not retry
    // elsewhere on this side of the partition.
    if (r.error().kind() == ErrorKind::kNotLeader && r.error().hint() == kNoNode) {
      const size_t reachable = connected_voters();
      if (reachable < cfg_.peers.size() / 2 + 1) {
        co_return base::err(ErrorKind::kNoQuorum,
                            "group {}: no leader and only {} of {} voters reachable", id, reachable,
                            cfg_.peers.size());
      }
    }
    co_return std::move(r).error();
  }
  OneShot<ProposalResult> waiter;
  g->proposals.emplace(req, &waiter);
  g->stages.push_back({*r, called});
  mark_dirty(g);
  ProposalResult pr = co_await waiter;
  if (!pr.ok()) co_return std::move(*pr.error);
  const TimePoint done = BootClock::now();
  commit_ms_.record(done - called);
  stage_quorum_.record(done - called);
  co_return pr.index;
}

Task<base::Status> CoreHost::read(GroupId id, ReadMode mode, TimePoint called) {
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  Group* g = find(id);
  if (g == nullptr) co_return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  const uint64_t req = next_request_id_++;
  // The clock is read after the read arrived on this core (lease rule).
  NORI_CO_TRY(g->raft->read(mode, req, BootClock::now()));
  OneShot<ReadResult> waiter;
  g->reads.emplace(req, &waiter);
  runtime::Timer deadline([this, id, req, &waiter] {
    Group* grp = find(id);
    if (grp != nullptr && grp->reads.erase(req) > 0) {
      waiter.resolve(ReadResult{
          req, ReadMode::kLease, 0, false,
          base::err(ErrorKind::kTimedOut, "read not granted within {} ms", cfg_.read_timeout_ms)});
    }
  });
  deadline.arm_in(std::chrono::milliseconds(cfg_.read_timeout_ms));
  mark_dirty(g);
  ReadResult rr = co_await waiter;
  deadline.cancel();
  if (!rr.granted()) co_return std::move(*rr.error);
  if (mode != ReadMode::kStaleNoGuarantee) read_index_ms_.record(BootClock::now() - called);
  co_return base::Status{};
}

size_t CoreHost::connected_voters() const {
  size_t n = 0;
  for (const PeerAddress& p : cfg_.peers) {
    if (p.id == cfg_.node_id || transport_->connected(p.id)) ++n;
  }
  return n;
}

base::Status CoreHost::transfer_leader(GroupId id, NodeId target) {
  Group* g = find(id);
  if (g == nullptr) return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  NORI_TRY(g->raft->transfer_leadership(target, BootClock::now()));
  mark_dirty(g);
  return {};
}

base::Status CoreHost::subscribe_applied(GroupId id, ApplyFn fn, bool manual_ack) {
  Group* g = find(id);
  if (g == nullptr) return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  g->apply_fn = std::move(fn);
  g->manual_ack = manual_ack;
  g->acked = g->last_normal = g->delivered;
  return {};
}

base::Status CoreHost::ack_applied(GroupId id, Index index) {
  Group* g = find(id);
  if (g == nullptr) return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  if (index > g->delivered) {
    return base::err(ErrorKind::kInvalidArgument, "ack_applied({}) beyond delivered index {}",
                     index, g->delivered);
  }
  if (index > g->acked) {
    g->acked = index;
    report_applied(g, BootClock::now());
    mark_dirty(g);
  }
  return {};
}

// ---- rounds ----------------------------------------------------------------------

Task<void> CoreHost::driver_loop() {
  while (!closing_) {
    base::Status st = co_await round_signal_.wait();
    if (!st.ok() || closing_) break;
    // Let every coroutine already runnable in this reactor pass (the links'
    // readers, other callers' proposals) add its input first: what they mark
    // dirty joins this round and leaves in the same WAL write and batches.
    co_await runtime::yield();
    co_await run_round();
  }
  loops_gate_.leave();
}

Task<void> CoreHost::run_round() {
  round_batch_.clear();
  round_batch_.swap(dirty_);
  round_groups_.record(round_batch_.size());
  for (size_t i = 0; i < round_batch_.size(); ++i) {
    Group* g = round_batch_[i];
    g->dirty = false;
    if (g->raft->has_ready()) co_await handle_ready(g);
    if (closing_) co_return;
    publish_status(g);
    rearm(g);
  }
  arm_tick_timer();
}

template <typename F>
Task<std::optional<wal::Position>> CoreHost::wal_append(F append) {
  bool told = false;
  while (true) {
    base::Result<wal::Position> r = append();
    if (r.ok()) co_return *r;
    if (r.error().kind() == ErrorKind::kBusy) {
      // Backpressure: every chunk is being written. The whole round waits,
      // which is what stops proposals from outrunning the disk.
      base::Status st = co_await wal_->wait_writable();
      if (!st.ok()) co_return std::nullopt;
      continue;
    }
    if (r.error().kind() == ErrorKind::kNoSpace) {
      if (!told)
        fmt::print(stderr, "nori: core {}: WAL disk full, retrying: {}\n", core_,
                   r.error().to_string());
      told = true;
      base::Status st = co_await runtime::sleep_for(std::chrono::milliseconds(10));
      if (!st.ok()) co_return std::nullopt;
      continue;
    }
    // Anything else means the core's view of its log and the WAL diverged.
    NORI_PANIC("core {}: WAL append failed: {}", core_, r.error().to_string());
  }
}

Task<void> CoreHost::handle_ready(Group* g) {
  Ready& rd = g->ready;
  g->raft->take_ready(rd);
  const GroupId id = g->id;

  // 1. Persist: hard state first (a vote waits only for its own record and
  // what was appended before it), then truncation, then entries.
  std::optional<wal::Position> hs_pos;
  if (rd.hard_state) {
    const wal::HardState hs{rd.hard_state->term, rd.hard_state->vote, rd.hard_state->commit};
    hs_pos = co_await wal_append([&] { return wal_->persist_hard_state(id, hs); });
    if (!hs_pos) co_return;
    g->last_hs_pos = *hs_pos;
  }
  if (rd.truncate_from) {
    const Index last_kept = *rd.truncate_from - 1;
    auto p = co_await wal_append([&] { return wal_->truncate_suffix(id, last_kept); });
    if (!p) co_return;
  }
  if (!rd.entries.empty()) {
    payload_arena_.clear();
    terms_scratch_.clear();
    offsets_scratch_.clear();
    for (const Entry& e : rd.entries) {
      offsets_scratch_.push_back(payload_arena_.size());
      encode_payload(e, payload_arena_);
      terms_scratch_.push_back(e.term);
    }
    offsets_scratch_.push_back(payload_arena_.size());
    views_scratch_.clear();
    for (size_t k = 0; k + 1 < offsets_scratch_.size(); ++k) {
      views_scratch_.emplace_back(payload_arena_.data() + offsets_scratch_[k],
                                  offsets_scratch_[k + 1] - offsets_scratch_[k]);
    }
    const Index first = rd.entries.front().index;
    auto p = co_await wal_append(
        [&] { return wal_->append_entries(id, first, terms_scratch_, views_scratch_); });
    if (!p) co_return;
  }

  // 2 + 3. Messages: kNow leave at once (a leader's appends go out while its
  // own write is in flight); the others wait behind the WAL position.
  Deferred hsd{g->last_hs_pos, id, std::nullopt, std::nullopt, {}};
  Deferred entd{wal_->append_position(), id, std::nullopt, std::nullopt, {}};
  if (rd.hard_state) hsd.hs = *rd.hard_state;
  if (!rd.entries.empty()) entd.entries = {rd.entries.back().index, rd.entries.back().term};
  for (OutMessage& om : rd.messages) {
    switch (om.after) {
      case SendAfter::kNow:
        send(std::move(om.msg));
        break;
      case SendAfter::kHardState:
        hsd.messages.push_back(std::move(om.msg));
        break;
      case SendAfter::kEntries:
        entd.messages.push_back(std::move(om.msg));
        break;
    }
  }
  if (hsd.hs || !hsd.messages.empty()) defer(std::move(hsd));
  if (entd.entries || !entd.messages.empty()) defer(std::move(entd));

  // 4. Apply, resolve, publish.
  const TimePoint now = BootClock::now();
  if (!rd.committed.empty()) apply_committed(g, rd.committed, now);
  for (ProposalResult& pr : rd.proposals) {
    auto it = g->proposals.find(pr.proposal_id);
    if (it == g->proposals.end()) continue;
    OneShot<ProposalResult>* w = it->second;
    g->proposals.erase(it);
    w->resolve(std::move(pr));
  }
  for (ReadResult& rr : rd.reads) {
    auto it = g->reads.find(rr.request_id);
    if (it == g->reads.end()) continue;  // timed out already
    OneShot<ReadResult>* w = it->second;
    g->reads.erase(it);
    w->resolve(std::move(rr));
  }
  for (const Event& e : rd.events) {
    node_.publish_event(
        NodeEvent{event_kind(e.kind), e.group, e.term, e.node, e.time, unix_ms_now()});
  }
}

void CoreHost::defer(Deferred d) {
  if (deferred_.empty() && d.pos <= wal_->durable_position()) {
    run_deferred(d, BootClock::now());
    return;
  }
  // Keep the queue ordered by position: waiting longer than needed is safe.
  if (!deferred_.empty() && d.pos < deferred_.back().pos) d.pos = deferred_.back().pos;
  deferred_.push_back(std::move(d));
  deferred_signal_.notify();
}

void CoreHost::run_deferred(Deferred& d, TimePoint now) {
  Group* g = find(d.group);
  if (g == nullptr) return;
  // Acknowledge first: the core then knows what is durable before anything
  // that depends on it (our vote, our append reply) reaches a peer.
  if (d.hs) g->raft->hard_state_persisted(*d.hs, now);
  if (d.entries) {
    g->raft->entries_persisted(d.entries->first, d.entries->second, now);
    on_entries_durable(g, d.entries->first, now);
  }
  for (Message& m : d.messages)
    send(std::move(m));
  mark_dirty(g);
}

Task<void> CoreHost::durability_loop() {
  while (!closing_) {
    if (deferred_.empty()) {
      base::Status st = co_await deferred_signal_.wait();
      if (!st.ok()) break;
      continue;
    }
    const wal::Position pos = deferred_.front().pos;
    if (wal_->durable_position() < pos) {
      base::Status st = co_await wal_->wait_durable(pos);
      if (!st.ok()) break;
    }
    const TimePoint now = BootClock::now();
    const wal::Position durable = wal_->durable_position();
    while (!deferred_.empty() && deferred_.front().pos <= durable) {
      Deferred d = std::move(deferred_.front());
      deferred_.pop_front();
      run_deferred(d, now);
    }
  }
  loops_gate_.leave();
}

void CoreHost::send(Message&& m) {
  const NodeId to = m.to;
  switch (m.type()) {
    case MessageType::kHeartbeat: {
      const auto& hb = std::get<Heartbeat>(m.body);
      transport_->stage_heartbeat(to, {m.group, m.term, hb.commit, hb.round});
      return;
    }
    case MessageType::kHeartbeatReply: {
      const auto& r = std::get<HeartbeatReply>(m.body);
      transport_->stage_heartbeat_reply(to, {m.group, m.term, r.round, 0});
      return;
    }
    default:
      break;
  }
  const bool urgent = m.type() == MessageType::kVoteRequest ||
                      m.type() == MessageType::kVoteReply || m.type() == MessageType::kTimeoutNow;
  std::string buf;
  buf.reserve(encoded_size(m));
  encode_message(m, buf);
  base::Status st = transport_->send(
      to, m.group, urgent ? net::MessageType::kGroupUrgent : net::MessageType::kGroup,
      std::move(buf));
  // A refused append is retransmitted by the core (stalled-round probing).
  if (!st.ok()) send_refused_.inc();
}

// ---- applying --------------------------------------------------------------------

void CoreHost::apply_committed(Group* g, std::vector<Entry>& committed, TimePoint now) {
  apply_queue_.set(static_cast<int64_t>(committed.size()));
  for (const Entry& e : committed) {
    if (e.index <= g->delivered) continue;  // below the application's applied index
    if (e.type == EntryType::kNormal && g->apply_fn) {
      g->apply_fn(e.index, e.data);
      g->last_normal = e.index;
    }
    g->delivered = e.index;
  }
  const TimePoint done = BootClock::now();
  apply_ms_.record(done - now);
  report_applied(g, done);
}

void CoreHost::report_applied(Group* g, TimePoint now) {
  Index applied = g->delivered;
  // Manual acks: everything delivered counts once the application acked the
  // last command it was given (no-ops need no ack).
  if (g->manual_ack && g->acked < g->last_normal) applied = g->acked;
  if (applied <= g->raft_applied) return;
  g->raft->applied(applied, now);
  g->raft_applied = applied;
  while (!g->stages.empty() && g->stages.front().index <= applied) {
    stage_applied_.record(now - g->stages.front().called);
    g->stages.pop_front();
    if (g->stages_wal_done > 0) --g->stages_wal_done;
  }
}

void CoreHost::on_entries_durable(Group* g, Index index, TimePoint now) {
  size_t k = g->stages_wal_done;
  while (k < g->stages.size() && g->stages[k].index <= index) {
    stage_leader_wal_.record(now - g->stages[k].called);
    ++k;
  }
  g->stages_wal_done = k;
}

void CoreHost::publish_status(Group* g) {
  const Raft& r = *g->raft;
  const uint8_t role = role_code(r.role());
  if (r.role() != g->last_role) {
    if (r.role() == Role::kCandidate) elections_.inc();
    g->last_role = r.role();
  }
  GroupStatusCell& c = *g->cell;
  c.leader.store(r.leader(), std::memory_order_relaxed);
  c.term.store(r.term(), std::memory_order_relaxed);
  c.commit.store(r.commit_index(), std::memory_order_relaxed);
  c.applied.store(r.applied_index(), std::memory_order_relaxed);
  c.role.store(role, std::memory_order_release);
  if (g->role_gauge != nullptr) g->role_gauge->set(role);
}

// ---- ticks -----------------------------------------------------------------------

TimePoint CoreHost::quantize(TimePoint t) const {
  const int64_t q = int64_t{cfg_.tick_granularity_ms} * 1'000'000;
  const int64_t ns = base::to_ns(t);
  return base::time_from_ns((ns + q - 1) / q * q);
}

void CoreHost::rearm(Group* g) {
  const TimePoint t = g->raft->next_tick();
  if (t == TimePoint::max()) {
    g->timer.disarm();
    return;
  }
  const TimePoint q = quantize(t);
  if (!g->timer.armed() || g->timer.deadline() != q) deadlines_.arm(g->timer, q);
}

void CoreHost::arm_tick_timer() {
  if (closing_ || !tick_timer_) return;
  if (deadlines_.empty()) {
    tick_timer_->cancel();
    tick_at_ = TimePoint::max();
    return;
  }
  const TimePoint t = deadlines_.earliest();
  if (!tick_timer_->armed() || t != tick_at_) {
    tick_timer_->arm_at(t);
    tick_at_ = t;
  }
}

void CoreHost::GroupTimer::fire_node(runtime::TimerNode* n) {
  auto* t = static_cast<GroupTimer*>(n);
  t->group->raft->tick(BootClock::now());
  t->host->mark_dirty(t->group);
}

void CoreHost::on_tick() {
  tick_at_ = TimePoint::max();
  const TimePoint now = BootClock::now();
  // Due groups tick (fire_node) and are processed in the next round, which
  // re-arms them; groups not due are not touched.
  deadlines_.fire_expired(now, SIZE_MAX);
  arm_tick_timer();
  // Figures read by scrapes from other threads.
  const wal::WalStats ws = wal_->stats();
  wal_writes_.set(static_cast<int64_t>(ws.durable_writes));
  wal_entries_.set(static_cast<int64_t>(ws.engine.entries));
  wal_bytes_.set(static_cast<int64_t>(ws.engine.write_bytes));
  storage_disk_reads_.set(static_cast<int64_t>(reader_->disk_reads()));
  const net::TransportStats& ts = transport_->stats();
  uint64_t refused = 0;
  for (uint64_t r : ts.refused)
    refused += r;
  net_refused_conns_.set(static_cast<int64_t>(refused));
  uint64_t bytes = 0, frames = 0, queued = 0;
  for (const PeerAddress& p : cfg_.peers) {
    if (p.id == cfg_.node_id) continue;
    for (net::Lane lane : {net::Lane::kPriority, net::Lane::kBulk}) {
      if (const net::LinkStats* ls = transport_->link_stats(p.id, lane)) {
        bytes += ls->bytes_sent;
        frames += ls->frames_sent;
      }
    }
    queued += transport_->queued_bytes(p.id);
  }
  net_bytes_sent_.set(static_cast<int64_t>(bytes));
  net_frames_sent_.set(static_cast<int64_t>(frames));
  net_queue_bytes_.set(static_cast<int64_t>(queued));
}

// ---- peer input ------------------------------------------------------------------

void CoreHost::on_message(net::NodeId from, net::GroupId group, net::MessageType type,
                          std::string_view payload) {
  Group* g = find(group);
  if (g == nullptr) return;  // a group this node does not host (yet): the sender retries
  auto m = decode_message(payload);
  if (!m.ok() || m->group != group || m->from != from || m->to != cfg_.node_id) return;
  g->raft->step(std::move(m).value(), BootClock::now());
  mark_dirty(g);
}

void CoreHost::on_heartbeats(net::NodeId from, std::span<const net::HeartbeatEntry> entries) {
  const TimePoint now = BootClock::now();
  for (const net::HeartbeatEntry& e : entries) {
    Group* g = find(e.group);
    if (g == nullptr) continue;
    g->raft->step(Message{e.group, from, cfg_.node_id, e.term, Heartbeat{e.commit, e.round}}, now);
    mark_dirty(g);
  }
}

void CoreHost::on_heartbeat_replies(net::NodeId from,
                                    std::span<const net::HeartbeatReply> replies) {
  const TimePoint now = BootClock::now();
  for (const net::HeartbeatReply& r : replies) {
    Group* g = find(r.group);
    if (g == nullptr) continue;
    g->raft->step(Message{r.group, from, cfg_.node_id, r.term, HeartbeatReply{r.round}}, now);
    mark_dirty(g);
  }
}

void CoreHost::on_dropped(net::NodeId to, std::span<const net::GroupId> groups) {
  // The core notices the stall on its next heartbeat rounds and re-sends.
  messages_lost_.inc(groups.size());
}

void CoreHost::collect(NodeMetricsSnapshot& out) const {
  commit_ms_.snapshot_into(out.commit);
  apply_ms_.snapshot_into(out.apply);
  read_index_ms_.snapshot_into(out.read_index);
  stage_queued_.snapshot_into(out.stage_queued);
  stage_leader_wal_.snapshot_into(out.stage_leader_wal);
  stage_quorum_.snapshot_into(out.stage_quorum);
  stage_applied_.snapshot_into(out.stage_applied);
  out.elections += elections_.value();
  out.send_refused += send_refused_.value();
  if (wal_) {
    const wal::WalStats ws = wal_->stats();
    out.wal_writes += ws.durable_writes;
    out.wal_entries += ws.engine.entries;
    out.wal_bytes += ws.engine.write_bytes;
  }
  if (reader_) out.storage_disk_reads += reader_->disk_reads();
  if (transport_) {
    for (const PeerAddress& p : cfg_.peers) {
      if (p.id == cfg_.node_id) continue;
      for (net::Lane lane : {net::Lane::kPriority, net::Lane::kBulk}) {
        if (const net::LinkStats* ls = transport_->link_stats(p.id, lane)) {
          out.net_bytes_sent += ls->bytes_sent;
          out.net_messages_sent += ls->messages_sent;
        }
      }
    }
  }
}

}  // namespace nori::raft
