#include "raft/node/core_host.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>

#include "raft/node/node_control.h"
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
// Payload bytes one asynchronous read of old entries fetches (at least one
// Append's worth, append_bytes_max), and so the most a group keeps in its
// storage's read cache (raft/node/wal_storage.h).
constexpr uint64_t kStorageFetchBytesMin = uint64_t{4} << 20;
// Payload bytes per WAL read while scanning a group's configuration entries
// at start (add_group).
constexpr uint64_t kConfigScanBytes = uint64_t{1} << 20;
// Scraped figures (WAL, transport) are refreshed by ticks and, at most this
// often, by rounds.
constexpr int64_t kGaugesIntervalMs = 100;
// Jobs queued on a core's snapshot worker (writes, finishes, installs); a
// request beyond it is refused and comes again (the core re-asks).
constexpr size_t kSnapshotJobsMax = 64;
// install_snapshot copies the application's stream in pieces of this size.
constexpr size_t kInstallCopyBytes = 256 << 10;

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

// "snap-<index>-<term>.snap" (SnapshotStore::path_for), else false.
bool parse_snapshot_name(const std::string& name, Index& index, Term& term) {
  unsigned long long i = 0, t = 0;
  char tail[8] = {};
  if (std::sscanf(name.c_str(), "snap-%20llu-%20llu.%5s", &i, &t, tail) != 3) return false;
  if (std::string_view(tail) != "snap") return false;
  index = i;
  term = t;
  return true;
}

base::Error io_error(const char* what, const std::string& path) {
  return base::err(ErrorKind::kIo, "{} {}: {}", what, path, std::strerror(errno));
}

// The payload of a snapshot file whose digest and header were verified
// already (finishing a receive, recovery, install_snapshot's copy): the
// store's open_payload would read the whole file once more, on the reactor,
// to check the digest again. File layout: raft/snapshot/store.h (header,
// payload, u64 digest trailer).
constexpr uint64_t kSnapshotTrailerBytes = 8;
class VerifiedPayload final : public snapshot::SnapshotSource {
 public:
  static base::Result<std::unique_ptr<snapshot::SnapshotSource>> open(
      const snapshot::SnapshotFile& f) {
    const uint64_t begin = snapshot::encode_header(f.meta).size();
    if (f.size < begin + kSnapshotTrailerBytes) {
      return base::err(ErrorKind::kCorruption, "snapshot {} is shorter than its header", f.path);
    }
    int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);  // reactor-ok: restore, see docs
    if (fd < 0) return io_error("open", f.path);
    return std::unique_ptr<snapshot::SnapshotSource>(
        new VerifiedPayload(fd, begin, f.size - kSnapshotTrailerBytes, f.path));
  }
  ~VerifiedPayload() override { ::close(fd_); }
  base::Result<size_t> read(char* out, size_t n) override {
    if (off_ >= end_) return size_t{0};
    const size_t want = static_cast<size_t>(std::min<uint64_t>(n, end_ - off_));
    ssize_t r;
    do {
      r = ::pread(fd_, out, want, static_cast<off_t>(off_));  // reactor-ok: restore, see docs
    } while (r < 0 && errno == EINTR);
    if (r < 0) return io_error("read", path_);
    if (r == 0) return base::err(ErrorKind::kCorruption, "snapshot {} shrank", path_);
    off_ += static_cast<uint64_t>(r);
    return static_cast<size_t>(r);
  }

 private:
  VerifiedPayload(int fd, uint64_t begin, uint64_t end, std::string path)
      : fd_(fd), off_(begin), end_(end), path_(std::move(path)) {}
  int fd_;
  uint64_t off_, end_;
  std::string path_;
};

// The sink a view writes into: the store's writer, refusing once the node
// closes so that a long write stops early.
class CancellableSink final : public snapshot::SnapshotSink {
 public:
  CancellableSink(snapshot::SnapshotSink& inner, const SnapshotWorker& worker)
      : inner_(inner), worker_(worker) {}
  base::Status write(std::string_view bytes) override {
    if (worker_.cancelled()) {
      return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
    }
    return inner_.write(bytes);
  }

 private:
  snapshot::SnapshotSink& inner_;
  const SnapshotWorker& worker_;
};

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
      storage_disk_reads_(registry_.gauge(
          "raft_storage_disk_reads", "WAL reads of old entries that went to disk (asynchronous)")),
      snapshots_taken_(registry_.counter("raft_snapshots_taken_total", "Snapshots written here")),
      snapshots_installed_(registry_.counter("raft_snapshots_installed_total",
                                             "Snapshots installed here (received or given)")),
      snapshot_failures_(registry_.counter(
          "raft_snapshot_failures_total",
          "Snapshot takes, receives (digest, identity, I/O) and installs that failed")),
      snapshot_chunks_sent_(
          registry_.counter("raft_snapshot_chunks_sent_total", "Snapshot chunks sent")),
      snapshot_chunks_received_(registry_.counter("raft_snapshot_chunks_received_total",
                                                  "Snapshot chunks received and written")),
      snapshot_transfers_deferred_(
          registry_.counter("raft_snapshot_transfers_deferred_total",
                            "Snapshot sends held back by the transfer limit (re-driven later)")),
      snapshot_reactor_io_(
          registry_.counter("raft_snapshot_reactor_io_total",
                            "Blocking snapshot chunk reads/writes done on the reactor thread")),
      snapshot_reactor_io_bytes_(registry_.counter(
          "raft_snapshot_reactor_io_bytes_total",
          "Bytes of blocking snapshot chunk reads/writes done on the reactor thread")),
      quiesced_gauge_(registry_.gauge("raft_quiesced_groups",
                                      "Groups quiesced (no ticks, no heartbeats) on this core")),
      liveness_lost_(registry_.counter("raft_liveness_lost_total",
                                       "Peers this core stopped hearing from (liveness lost)")),
      liveness_pings_(
          registry_.counter("raft_liveness_pings_total", "Liveness pings staged to peers")),
      storage_fetches_(registry_.counter("raft_storage_fetches_total",
                                         "Asynchronous reads of entries no longer in memory")),
      address_books_received_(registry_.counter(
          "raft_address_books_received_total",
          "Peers' address books taken (members they know, for nodes this log never named)")),
      address_books_refused_(
          registry_.counter("raft_address_books_refused_total",
                            "Peers' address books dropped: malformed, or from a non-member")),
      members_introduced_(registry_.gauge(
          "raft_members_introduced",
          "Nodes admitted on the word of a member's address book, not (yet) named by this log")) {}

CoreHost::~CoreHost() = default;

Task<base::Status> CoreHost::start(std::vector<GroupId> initial_groups) {
  const std::string dir = fmt::format("{}/core-{}", cfg_.data_dir, core_);
  NORI_CO_TRY(wal::make_dir(dir));
  auto w = co_await wal::Wal::open(dir, cfg_.wal_options());
  if (!w.ok()) co_return std::move(w).error();
  wal_ = std::move(w).value();

  pins_ = std::make_unique<PeerPins>(fmt::format("{}/peers-core-{}", cfg_.data_dir, core_));
  NORI_CO_TRY(pins_->load());

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
    peer_addr_[p.id] = format_member_address(p);
    admitted_.insert(p.id);
  }

  tick_timer_ = std::make_unique<runtime::Timer>([this] { on_tick(); });
  if (cfg_.quiesce) {
    liveness_timer_ = std::make_unique<runtime::Timer>([this] { on_liveness_tick(); });
  }
  worker_ = std::make_unique<SnapshotWorker>(runtime::Reactor::here(), kSnapshotJobsMax);
  // The WAL holds more than wal_log_bytes_max because these groups pin its
  // oldest segment: a snapshot lets them compact (groups without snapshot
  // hooks cannot, and keep pinning). Called on this core, inside reclaim.
  wal_->set_pinned_callback([this](const std::vector<uint64_t>& pinning) {
    if (closing_) return;
    for (uint64_t id : pinning) {
      Group* g = find(id);
      if (g == nullptr || !g->snap) continue;
      g->raft->trigger_snapshot();
      mark_dirty(g);
    }
  });
  limiter_ = std::make_unique<snapshot::TransferLimiter>(
      cfg_.snapshot_transfers_max, cfg_.snapshot_send_bytes_per_s,
      4 * uint64_t{cfg_.snapshot_chunk_bytes}, BootClock::now());
  {
    // Blocking, once, before this core serves anything.
    std::error_code ec;
    std::filesystem::create_directories(cfg_.data_dir + "/snapshots", ec);
    if (ec) {
      co_return base::err(ErrorKind::kIo, "create {}/snapshots: {}", cfg_.data_dir, ec.message());
    }
  }

  // Every group the WAL knows, then the configured ones placed here.
  std::vector<GroupId> ids;
  for (const auto& [g, log] : wal_->engine().groups())
    ids.push_back(g);
  for (GroupId g : initial_groups) {
    if (placement(g, cfg_.cores) == core_ && wal_->group(g) == nullptr) ids.push_back(g);
  }
  for (GroupId g : ids)
    NORI_CO_TRY(co_await add_group(g));
  // Peers from every recovered configuration, once (not once per group).
  starting_ = false;
  refresh_peers();

  for (int k = 0; k < 2; ++k) {
    Task<void> task = k == 0 ? driver_loop() : durability_loop();
    task.set_scope(&loops_scope_);
    NORI_ASSERT(loops_gate_.enter());
    runtime::spawn(std::move(task));
  }
  arm_tick_timer();
  if (liveness_timer_) liveness_timer_->arm_in(std::chrono::milliseconds(cfg_.heartbeat_ms));
  co_return base::Status{};
}

Task<void> CoreHost::close() {
  if (closing_) co_return;
  closing_ = true;
  for (auto& [id, g] : groups_)
    fail_all_waiters(g.get(), ErrorKind::kShuttingDown, "the node is shutting down");
  fail_forwards();  // node-wide changes waiting on another node (core_host_lifecycle.cc)
  // The worker first: a snapshot being written gives up (cancelled), every
  // queued job's completion is handed back to this reactor (and ignored, or
  // resolves an install_snapshot caller). Joining blocks this reactor for at
  // most the current job's next write; shutdown only.
  if (worker_) worker_->stop();
  loops_scope_.cancel();
  co_await loops_gate_.close();
  if (tick_timer_) tick_timer_->cancel();
  if (liveness_timer_) liveness_timer_->cancel();
  if (transport_) co_await transport_->shutdown();
  if (wal_) co_await wal_->close();
  for (auto& [id, g] : groups_)
    node_.unregister_group(id);
  groups_.clear();
}

// ---- groups ----------------------------------------------------------------------

Task<base::Status> CoreHost::add_group(GroupId id) {
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  if (placement(id, cfg_.cores) != core_) {
    co_return base::err(ErrorKind::kInvalidArgument, "group {} belongs to core {}, not {}", id,
                        placement(id, cfg_.cores), core_);
  }
  if (groups_.contains(id)) co_return base::err(ErrorKind::kInvalidArgument, "group {} exists", id);
  GroupHooks hooks = node_.group_hooks(id);
  if (static_cast<bool>(hooks.capture_snapshot) != static_cast<bool>(hooks.restore_snapshot)) {
    co_return base::err(ErrorKind::kInvalidArgument,
                        "group {}: set both capture_snapshot and restore_snapshot, or neither", id);
  }
  auto g = std::make_unique<Group>(id, this);
  g->storage = std::make_unique<WalStorage>(
      *wal_, id, std::max<uint64_t>(cfg_.append_bytes_max, kStorageFetchBytesMin));
  g->storage->set_fetch_starter([this, id](Index lo, Index hi, uint64_t bytes_max) {
    return start_fetch(id, lo, hi, bytes_max);
  });
  const wal::GroupLog* log = wal_->group(id);
  const Index compacted = log == nullptr ? 0 : log->compact_index();
  Index applied = hooks.applied;
  snapshot::SnapshotFile snap;
  if (hooks.capture_snapshot) {
    g->snap = std::make_unique<SnapState>();
    g->snap->capture = std::move(hooks.capture_snapshot);
    g->snap->restore = std::move(hooks.restore_snapshot);
    auto store = snapshot::SnapshotStore::open(fmt::format("{}/snapshots/{}", cfg_.data_dir, id));
    if (!store.ok()) co_return std::move(store).error();
    g->snap->store = std::move(store).value();
    NORI_CO_ASSIGN_OR_RETURN(snap, recover_snapshot(id, *g->snap->store));
    if (snap.meta.index > 0) {
      g->snap->files.emplace(snap.meta.index, snap);
      // Recovery (raft/storage.h): the state machine is restored from the
      // snapshot before Raft exists, unless the application's own durable
      // state is already at or past it. Entries at or below it are never
      // applied again (Config::applied).
      if (applied < snap.meta.index) {
        NORI_CO_ASSIGN_OR_RETURN(auto src, VerifiedPayload::open(snap));
        if (auto st = g->snap->restore(*src); !st.ok()) {
          co_return base::err(st.error().kind(), "group {}: restoring snapshot {}: {}", id,
                              snap.meta.index, st.error().message());
        }
        applied = snap.meta.index;
        snapshots_installed_.inc();
      }
    }
  }
  if (compacted > 0 && snap.meta.index < compacted) {
    // The log starts after `compacted`: without a snapshot at or past it the
    // entries before are gone for good.
    co_return base::err(
        ErrorKind::kCorruption,
        "group {}: the WAL is compacted through {} but {} (snapshot hooks {})", id, compacted,
        snap.meta.index == 0 ? std::string("no snapshot file matches it")
                             : fmt::format("the newest snapshot is {}", snap.meta.index),
        g->snap ? "set" : "not set");
  }
  if (applied > std::max(g->storage->last_index(), snap.meta.index)) {
    co_return base::err(ErrorKind::kInvalidArgument,
                        "group {}: applied index {} is beyond the last index {} in the WAL", id,
                        applied, g->storage->last_index());
  }
  g->storage->set_snapshot_meta(snap.meta);
  {
    // Raft's constructor scans the configuration entries synchronously; read
    // them here through the WAL's io_uring path (the old ones are on disk
    // only) so the constructor never waits on the disk.
    std::vector<Entry> conf;
    const Index from = snap.meta.index + 1;
    for (Index i = from;;) {
      const wal::GroupLog* gl = wal_->group(id);
      if (gl == nullptr || gl->entry_count() == 0 || i > gl->last_index()) break;
      i = std::max(i, gl->first_index());
      auto batch = co_await wal_->read_entries(id, i, gl->last_index() + 1, kConfigScanBytes);
      if (!batch.ok()) {
        co_return base::err(batch.error().kind(), "group {}: reading its log from {}: {}", id, i,
                            batch.error().message());
      }
      if (batch->empty()) break;
      for (const wal::Entry& w : *batch) {
        if (w.payload.empty() ||
            static_cast<uint8_t>(w.payload[0]) != static_cast<uint8_t>(EntryType::kConfig)) {
          continue;
        }
        Entry e;
        NORI_CO_TRY(decode_payload(w.payload, w.index, w.term, e));
        conf.push_back(std::move(e));
      }
      i = batch->back().index + 1;
    }
    // The scan may have suspended: another create of the same id may have
    // won meanwhile.
    if (groups_.contains(id)) {
      co_return base::err(ErrorKind::kInvalidArgument, "group {} exists", id);
    }
    g->storage->set_config_entries(from, std::move(conf));
  }
  Config rc = cfg_.group_config(id, applied);
  // This core answers the group's liveness questions (quiescence); it
  // outlives every group it hosts.
  if (cfg_.quiesce) rc.liveness = this;
  if (!g->snap) {
    // No way to take one: never ask (the log is never compacted).
    rc.snapshot_log_bytes_max = UINT64_MAX;
    rc.snapshot_entries_max = UINT64_MAX;
  }
  auto r = Raft::create(rc, *g->storage, BootClock::now());
  if (!r.ok()) co_return std::move(r).error();
  g->raft = std::move(r).value();
  g->apply_fn = std::move(hooks.apply);
  g->manual_ack = hooks.manual_ack;
  g->delivered = g->last_normal = g->acked = g->raft_applied = applied;
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
  gp->configs_seen = gp->raft->configurations_version();
  if (!starting_) refresh_peers();  // a group created at run time
  co_return base::Status{};
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
  // An accepted configuration change may still complete.
  auto members = std::move(g->member_waiters);
  g->member_waiters.clear();
  for (MemberWaiter* w : members)
    w->done.resolve(base::Error(ErrorKind::kOutcomeUnknown, why));
  // A removal not taken out by a round yet (close): it did not happen.
  if (RemoveRequest* r = std::exchange(g->removal, nullptr)) {
    r->appended.resolve(base::Error(kind, why));
  }
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
      const auto [reachable, voters] = connected_voters(g);
      if (voters > 0 && reachable < voters / 2 + 1) {
        co_return base::err(ErrorKind::kNoQuorum,
                            "group {}: no leader and only {} of {} voters reachable", id, reachable,
                            voters);
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

// Voters of the group's configuration in effect (the incoming half if
// joint) that this node reaches, itself included; and how many there are.
std::pair<size_t, size_t> CoreHost::connected_voters(const Group* g) const {
  const std::vector<NodeId>& voters = g->raft->membership().voters;
  size_t n = 0;
  for (NodeId v : voters) {
    if (v == cfg_.node_id || transport_->connected(v)) ++n;
  }
  return {n, voters.size()};
}

std::vector<MemberAddress> CoreHost::known_addresses() const {
  std::vector<MemberAddress> out;
  for (const auto& [id, a] : peer_addr_)
    out.push_back({id, a});
  out.push_back({cfg_.node_id, format_member_address(*cfg_.self_address())});
  return out;
}

bool CoreHost::names_unknown_peer(const Raft& r) const {
  for (size_t i = 0; i < r.configuration_count(); ++i) {
    const Membership& m = r.configuration(i);
    for (const auto* list : {&m.voters, &m.voters_outgoing, &m.learners}) {
      for (NodeId id : *list) {
        if (id != cfg_.node_id && !admitted_.contains(id)) return true;
      }
    }
    for (const MemberAddress& a : m.addresses) {
      if (a.id == cfg_.node_id) continue;
      auto it = peer_addr_.find(a.id);
      if (it == peer_addr_.end() || it->second != a.address) return true;
    }
  }
  return false;
}

void CoreHost::on_peer_identified(NodeId peer, uint64_t incarnation) {
  if (closing_ || !pins_ || !admitted_.contains(peer)) return;
  auto changed = pins_->pin(peer, incarnation);
  if (!changed.ok()) {
    // Not pinned: this peer stays accepted with any incarnation for now.
    fmt::print(stderr, "nori: core {}: pinning node {}: {}\n", core_, peer,
               changed.error().to_string());
    return;
  }
  if (!*changed) return;
  std::vector<net::Member> accepted;
  accepted.reserve(admitted_.size());
  for (NodeId id : admitted_)
    accepted.push_back({id, required_incarnation(id)});
  transport_->set_members(accepted);
  // Peers introduced by this core's book now need that incarnation too.
  update_address_book();
}

uint64_t CoreHost::required_incarnation(NodeId peer) const {
  if (uint64_t pinned = pins_->of(peer); pinned != 0) return pinned;
  auto it = introduced_.find(peer);
  return it == introduced_.end() ? 0 : it->second;
}

void CoreHost::on_link_up(NodeId peer, net::Lane lane) {
  // One book per connection, on the priority lane (the bulk lane's link-up
  // would only repeat it).
  if (lane == net::Lane::kPriority) send_address_book(peer);
}

void CoreHost::send_address_book(NodeId peer) {
  if (closing_ || book_out_.empty()) return;
  // group_urgent: never refused for space. A book is small and sent once
  // per link-up or change; were it dropped behind a full queue, a node that
  // missed a member would stay cut off from it until the next link-up.
  // A book lost with a broken connection is sent again at the next link-up.
  (void)transport_->send(peer, kNodeControlGroup, net::MessageType::kGroupUrgent, book_out_);
}

void CoreHost::on_address_book(NodeId from, std::string_view payload) {
  auto book = decode_address_book(payload);
  // Only a member of this core's configurations (or contact list) vouches;
  // an introduced node cannot introduce others (address_gossip.h).
  // During start() the vouchers are not known yet: the first refresh_peers
  // drops the books of senders that may not vouch (AddressGossip::keep_only).
  if (!book.ok() || (!starting_ && !vouchers_.contains(from))) {
    address_books_refused_.inc();
    return;
  }
  address_books_received_.inc();
  gossip_.received(from, std::move(book->entries));
  // Applied by the next round's refresh_peers, not here: this runs inside
  // the link's reader, and a refresh may close other links.
  peers_dirty_ = true;
  round_signal_.notify();
}

void CoreHost::refresh_peers() {
  if (closing_ || !transport_) return;
  // Every node a group here may still act with (Raft::configuration(i): the
  // latest committed configuration and every later entry), and the newest
  // address recorded for each (configurations are visited oldest first).
  std::set<NodeId> members;
  std::map<NodeId, std::string> book;
  bool contacts = groups_.empty();
  for (const auto& [gid, g] : groups_) {
    const Raft& r = *g->raft;
    bool configured = false;
    for (size_t i = 0; i < r.configuration_count(); ++i) {
      const Membership& m = r.configuration(i);
      for (const auto* list : {&m.voters, &m.voters_outgoing, &m.learners})
        members.insert(list->begin(), list->end());
      for (const MemberAddress& a : m.addresses)
        book[a.id] = a.address;
      configured = configured || !m.voters.empty();
    }
    // A group with no configuration yet (a joining node) hears from the
    // contact list (`peers`) until its leader's log names the members.
    if (!configured) contacts = true;
  }
  members.erase(cfg_.node_id);
  // The configurations' members, before contacts and introductions: what
  // this core's book tells peers, and (cumulated) what gossip never decides.
  named_ = members;
  log_named_.insert(named_.begin(), named_.end());
  // `peers` addresses serve members the configurations give none (the
  // bootstrap voters); the log's address wins. Bootstrap peers that are in
  // no configuration any more are no longer admitted: once the removal of
  // a node commits, it is refused like any stranger.
  for (const PeerAddress& p : cfg_.peers) {
    if (contacts && p.id != cfg_.node_id) members.insert(p.id);
    book.try_emplace(p.id, format_member_address(p));
  }
  // Members the log never named, on the word of an admitted member's book
  // (address_gossip.h): admitted with the incarnation the book gave, and
  // their address used only where neither the log nor `peers` gives one.
  vouchers_ = members;
  gossip_.keep_only(vouchers_);
  introduced_.clear();
  for (AddressGossip::Introduced& m : gossip_.introduced(log_named_, cfg_.node_id)) {
    if (members.contains(m.node)) continue;  // a contact: admitted already
    members.insert(m.node);
    book.try_emplace(m.node, std::move(m.address));
    introduced_[m.node] = m.incarnation;
  }
  members_introduced_.set(static_cast<int64_t>(introduced_.size()));

  // Admit first; then close the links of nodes no longer admitted (a
  // removed member: its removal is committed here, or it would still be in
  // configuration(0); or a node no book names any more); then (re)address.
  // Each member is admitted with the incarnation it proved in its first
  // handshake here (0 until then: any; an introduced one, what its book
  // said), so a member whose disk was wiped is refused (peer_pins.h).
  std::vector<net::Member> accepted;
  accepted.reserve(members.size());
  for (NodeId id : members)
    accepted.push_back({id, required_incarnation(id)});
  transport_->set_members(accepted);
  for (NodeId id : admitted_) {
    if (members.contains(id)) continue;
    transport_->forget_peer(id);
    peer_addr_.erase(id);
    // Removed: it may come back only with new data (join), i.e. a new
    // incarnation, through membership change.
    if (base::Status st = pins_->unpin(id); !st.ok()) {
      fmt::print(stderr, "nori: core {}: unpinning node {}: {}\n", core_, id,
                 st.error().to_string());
    }
  }
  admitted_ = members;
  for (NodeId id : members) {
    auto it = book.find(id);
    if (it == book.end()) continue;  // no address known: it dials us if its id is lower
    auto cur = peer_addr_.find(id);
    if (cur != peer_addr_.end() && cur->second == it->second) continue;
    auto pa = parse_member_address(id, it->second);
    base::Status st = pa.ok() ? base::Status{} : base::Status(pa.error());
    if (st.ok() && uint32_t{pa->port} + core_ > 65535) {
      st =
          base::err(ErrorKind::kInvalidArgument, "port {} + core {} passes 65535", pa->port, core_);
    }
    if (st.ok()) {
      st = transport_->set_peer_address(id, pa->host, static_cast<uint16_t>(pa->port + core_));
    }
    if (!st.ok()) {
      // A configuration recorded an address this core cannot use: the peer
      // stays unreachable from here (it may still dial us).
      fmt::print(stderr, "nori: core {}: member {} at '{}': {}\n", core_, id, it->second,
                 st.error().to_string());
      continue;
    }
    peer_addr_[id] = it->second;
  }
  update_address_book();
}

void CoreHost::update_address_book() {
  // This core's book: the members its configurations name, with the address
  // it dials (usable ones only) and the incarnation it pinned, and itself.
  AddressBookMsg out;
  auto add = [&out](NodeId id, uint64_t incarnation, const std::string& address) {
    if (out.entries.size() >= kAddressBookEntriesMax) return;
    if (!parse_member_address(id, address).ok()) return;
    out.entries.push_back({id, incarnation, address});
  };
  std::map<NodeId, std::pair<uint64_t, std::string>> sorted;
  for (NodeId id : named_) {
    auto it = peer_addr_.find(id);
    if (it != peer_addr_.end()) sorted[id] = {pins_->of(id), it->second};
  }
  sorted[cfg_.node_id] = {incarnation_, format_member_address(*cfg_.self_address())};
  for (const auto& [id, entry] : sorted)
    add(id, entry.first, entry.second);
  std::string encoded = encode_address_book(out);
  if (encoded == book_out_) return;
  book_out_ = std::move(encoded);
  // A changed book goes to every connected peer at once (a node cut off
  // from a new member learns of it now, not at its next reconnect).
  for (NodeId id : admitted_) {
    if (transport_->connected(id)) send_address_book(id);
  }
}

Task<base::Status> CoreHost::change_member(GroupId id, bool adding, NodeId node, std::string addr,
                                           Node::MemberWait wait) {
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  Group* g = find(id);
  if (g == nullptr) co_return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  if (node == kNoNode) co_return base::err(ErrorKind::kInvalidArgument, "node id 0");
  // The new configuration records every address this node knows for the
  // members (so a new member can reach all of them; the core keeps only
  // members'), then the new member's, which wins.
  std::vector<MemberAddress> addresses = known_addresses();
  if (adding) {
    if (node == cfg_.node_id) {
      co_return base::err(ErrorKind::kInvalidArgument, "node {} cannot add itself", node);
    }
    auto pa = parse_member_address(node, addr);
    if (!pa.ok()) co_return std::move(pa).error();
    if (uint32_t{pa->port} + cfg_.cores - 1 > 65535) {
      co_return base::err(ErrorKind::kInvalidArgument,
                          "address '{}' of node {}: port + {} cores passes 65535", addr, node,
                          cfg_.cores);
    }
    addresses.push_back({node, format_member_address(*pa)});
  }
  const TimePoint now = BootClock::now();
  auto r = adding ? g->raft->add_member(node, now, addresses)
                  : g->raft->remove_member(node, now, addresses);
  // Even refused, the core may have started something (removing the leader
  // starts the handover): let a round run.
  mark_dirty(g);
  if (!r.ok()) co_return std::move(r).error();
  if (wait == Node::MemberWait::kAppended) co_return base::Status{};
  MemberWaiter w;
  w.adding = adding;
  w.id = node;
  g->member_waiters.push_back(&w);
  runtime::Timer deadline([this, id, &w] {
    Group* grp = find(id);
    if (grp == nullptr) return;
    auto it = std::find(grp->member_waiters.begin(), grp->member_waiters.end(), &w);
    if (it == grp->member_waiters.end()) return;
    grp->member_waiters.erase(it);
    w.done.resolve(base::err(ErrorKind::kOutcomeUnknown,
                             "group {}: membership change not complete within {} ms; it goes on "
                             "(a learner is promoted once caught up) unless abandoned",
                             id, cfg_.member_change_timeout_ms));
  });
  deadline.arm_in(std::chrono::milliseconds(cfg_.member_change_timeout_ms));
  base::Status st = co_await w.done;
  deadline.cancel();
  co_return st;
}

void CoreHost::check_member_waiters(Group* g) {
  const Raft& r = *g->raft;
  const Membership& m = r.membership();
  // Settled: the latest configuration is committed and is neither joint nor
  // waiting for a promotion, so nothing more happens to the change without
  // a new call. The steps (learner, joint, leave) are taken by whichever
  // node leads; this node watches only its own log and commit index, so it
  // keeps waiting through a change of leader.
  if (r.membership_index() > r.commit_index() || m.joint() || !m.promote.empty()) return;
  auto waiters = std::move(g->member_waiters);
  g->member_waiters.clear();
  for (MemberWaiter* w : waiters) {
    const bool done = w->adding ? m.is_voter(w->id) : !m.contains(w->id);
    if (done) {
      w->done.resolve(base::Status{});
    } else {
      w->done.resolve(base::err(ErrorKind::kCancelled,
                                "group {}: the change of node {} was abandoned; configuration "
                                "now {}",
                                g->id, w->id, to_string(m)));
    }
  }
}

base::Status CoreHost::abandon_member_change(GroupId id) {
  Group* g = find(id);
  if (g == nullptr) return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  auto r = g->raft->abandon_member_change(BootClock::now());
  if (!r.ok()) return std::move(r).error();
  mark_dirty(g);
  return {};
}

base::Result<Membership> CoreHost::membership(GroupId id) {
  Group* g = find(id);
  if (g == nullptr) return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  return g->raft->membership();
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
    // A group installing a snapshot keeps its Ready until the core is reset
    // (install() marks it dirty again): nothing reaches its log in between.
    if (g->snap && g->snap->installing) {
      rearm(g);
      continue;
    }
    // remove_group: the group leaves here, between two groups' steps, where
    // nothing else holds it (core_host_lifecycle.cc). An install finishes first.
    if (g->removal != nullptr) {
      co_await retire_group(g);
      if (closing_) co_return;
      continue;
    }
    if (g->raft->has_ready()) co_await handle_ready(g);
    if (closing_) co_return;
    publish_status(g);
    rearm(g);
    if (g->raft->configurations_version() != g->configs_seen) {
      g->configs_seen = g->raft->configurations_version();
      peers_dirty_ = true;
    }
  }
  // Once per round, however many groups changed: refresh_peers visits every
  // group of the core (O(groups)), so one call per changed group would be
  // quadratic when many commit configuration entries together.
  if (peers_dirty_) {
    peers_dirty_ = false;
    refresh_peers();
  }
  arm_tick_timer();
  // The tick timer never fires on a core whose groups only follow (each
  // heartbeat pushes the election deadline back), so rounds refresh the
  // scraped figures too, at most every kGaugesIntervalMs.
  const TimePoint now = BootClock::now();
  if (now - last_gauges_ >= std::chrono::milliseconds(kGaugesIntervalMs)) publish_gauges(now);
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
  // The group's configurations changed (an entry appended or truncated, one
  // committed, a snapshot installed): the peers are refreshed at the end of
  // the round, except when a configuration names a node (or an address) the
  // transport does not know yet: then at once, BEFORE this round's messages
  // leave, so that the first append to a new member is queued on a link
  // that knows where to dial.
  if (g->raft->configurations_version() != g->configs_seen) {
    g->configs_seen = g->raft->configurations_version();
    peers_dirty_ = true;
    if (names_unknown_peer(*g->raft)) {
      peers_dirty_ = false;
      refresh_peers();
    }
  }

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

  // Snapshot work comes before applying: a requested snapshot is of the
  // state machine before this Ready's committed entries.
  if (rd.snapshot) {
    co_await handle_snapshot_work(g, *rd.snapshot);
    if (closing_) co_return;
  }

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
  if (!g->member_waiters.empty()) check_member_waiters(g);
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
      // A quiesce heartbeat carries a flag the coalesced batch has no room
      // for: it goes as a full message, once per follower per quiescence.
      if (hb.quiesce) break;
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
  // Urgent: never dropped for space (a lost quiesce heartbeat costs the
  // follower an election timeout and a wake-up, so it rides with the votes).
  const bool urgent = m.type() == MessageType::kVoteRequest ||
                      m.type() == MessageType::kVoteReply || m.type() == MessageType::kTimeoutNow ||
                      m.type() == MessageType::kHeartbeat;
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
  if (r.quiesced() != g->quiesced) {
    g->quiesced = r.quiesced();
    if (g->quiesced) {
      ++quiesced_count_;
      // Idle: give back the output buffers the last rounds grew and the
      // empty stage queue (docs/node.md, "Memory per group"); a wake-up
      // allocates them again.
      g->ready = Ready{};
      g->stages.release();
    } else {
      --quiesced_count_;
    }
    quiesced_gauge_.set(static_cast<int64_t>(quiesced_count_));
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
  publish_gauges(now);
}

void CoreHost::publish_gauges(TimePoint now) {
  last_gauges_ = now;
  // Figures read by scrapes from other threads.
  const wal::WalStats ws = wal_->stats();
  wal_writes_.set(static_cast<int64_t>(ws.durable_writes));
  wal_entries_.set(static_cast<int64_t>(ws.engine.entries));
  wal_bytes_.set(static_cast<int64_t>(ws.engine.write_bytes));
  storage_disk_reads_.set(static_cast<int64_t>(ws.disk_reads));
  const net::TransportStats& ts = transport_->stats();
  uint64_t refused = 0;
  for (uint64_t r : ts.refused)
    refused += r;
  net_refused_conns_.set(static_cast<int64_t>(refused));
  uint64_t bytes = 0, frames = 0, queued = 0;
  for (const auto& [peer, addr] : peer_addr_) {
    for (net::Lane lane : {net::Lane::kPriority, net::Lane::kBulk}) {
      if (const net::LinkStats* ls = transport_->link_stats(peer, lane)) {
        bytes += ls->bytes_sent;
        frames += ls->frames_sent;
      }
    }
    queued += transport_->queued_bytes(peer);
  }
  net_bytes_sent_.set(static_cast<int64_t>(bytes));
  net_frames_sent_.set(static_cast<int64_t>(frames));
  net_queue_bytes_.set(static_cast<int64_t>(queued));
}

// ---- peer input ------------------------------------------------------------------

void CoreHost::on_message(net::NodeId from, net::GroupId group, net::MessageType type,
                          std::string_view payload) {
  note_heard(from, BootClock::now());
  if (group == kNodeControlGroup) {  // node-control (node_control.h), not a group's
    on_node_control(from, payload);
    return;
  }
  Group* g = find(group);
  if (g == nullptr) return;  // a group this node does not host (yet): the sender retries
  auto m = decode_message(payload);
  if (!m.ok() || m->group != group || m->from != from || m->to != cfg_.node_id) return;
  g->raft->step(std::move(m).value(), BootClock::now());
  mark_dirty(g);
}

void CoreHost::on_heartbeats(net::NodeId from, std::span<const net::HeartbeatEntry> entries) {
  const TimePoint now = BootClock::now();
  note_heard(from, now);
  for (const net::HeartbeatEntry& e : entries) {
    if (e.group == kNodeControlGroup) continue;  // a liveness ping: noted above
    Group* g = find(e.group);
    if (g == nullptr) continue;
    g->raft->step(Message{e.group, from, cfg_.node_id, e.term, Heartbeat{e.commit, e.round}}, now);
    mark_dirty(g);
  }
}

void CoreHost::on_heartbeat_replies(net::NodeId from,
                                    std::span<const net::HeartbeatReply> replies) {
  const TimePoint now = BootClock::now();
  note_heard(from, now);
  for (const net::HeartbeatReply& r : replies) {
    Group* g = find(r.group);
    if (g == nullptr) continue;
    g->raft->step(Message{r.group, from, cfg_.node_id, r.term, HeartbeatReply{r.round}}, now);
    mark_dirty(g);
  }
}

// ---- liveness -------------------------------------------------------------------

bool CoreHost::node_live(NodeId node, TimePoint now) const {
  for (const PeerLiveness& p : liveness_) {
    if (p.id == node) {
      return now - p.heard < std::chrono::milliseconds(cfg_.election_timeout_max_ms);
    }
  }
  return false;
}

void CoreHost::note_heard(NodeId peer, TimePoint now) {
  for (PeerLiveness& p : liveness_) {
    if (p.id == peer) {
      p.heard = std::max(p.heard, now);
      p.lost = false;
      return;
    }
  }
  liveness_.push_back(PeerLiveness{peer, now, false});
}

void CoreHost::on_liveness_tick() {
  if (closing_) return;
  const TimePoint now = BootClock::now();
  // 1. One ping per admitted peer, in the heartbeat batch the link sends
  // anyway when groups still heartbeat (one entry more), alone otherwise.
  for (NodeId id : admitted_) {
    transport_->stage_heartbeat(id, {kNodeControlGroup, 0, 0, ++liveness_seq_});
    liveness_pings_.inc();
  }
  // 2. Peers silent for an election timeout: every quiesced group is told
  // (O(groups), only when a peer is lost, which is rare). Groups that wake
  // go back on the tick wheel; their round sends what waking produced.
  lost_scratch_.clear();
  for (PeerLiveness& p : liveness_) {
    if (!p.lost && !node_live(p.id, now)) {
      p.lost = true;
      lost_scratch_.push_back(p.id);
      liveness_lost_.inc();
    }
  }
  if (!lost_scratch_.empty() && quiesced_count_ > 0) {
    for (auto& [gid, gp] : groups_) {
      Group* g = gp.get();
      if (!g->raft->quiesced()) continue;
      for (NodeId id : lost_scratch_)
        g->raft->liveness_lost(id, now);
      if (!g->raft->quiesced()) {
        rearm(g);
        mark_dirty(g);
      }
    }
    arm_tick_timer();
  }
  liveness_timer_->arm_in(std::chrono::milliseconds(cfg_.heartbeat_ms));
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
    out.storage_disk_reads += ws.disk_reads;
  }
  if (transport_) {
    for (const auto& [peer, addr] : peer_addr_) {
      for (net::Lane lane : {net::Lane::kPriority, net::Lane::kBulk}) {
        if (const net::LinkStats* ls = transport_->link_stats(peer, lane)) {
          out.net_bytes_sent += ls->bytes_sent;
          out.net_messages_sent += ls->messages_sent;
        }
      }
    }
  }
}

// ---- snapshots -------------------------------------------------------------------

// The newest snapshot file the WAL confirms: its (index, term) is the WAL's
// entry or start point for the group. A newer file the WAL does not confirm
// is an install whose reset record never became durable (a crash between
// install steps 1 and 2): the old state stands and the file goes. Older
// files are superseded. Temporary and corrupt files go too (store.recover).
base::Result<snapshot::SnapshotFile> CoreHost::recover_snapshot(GroupId id,
                                                                snapshot::SnapshotStore& store) {
  const wal::GroupLog* log = wal_->group(id);
  std::vector<std::pair<Index, Term>> candidates;
  std::error_code ec;
  for (const auto& ent : std::filesystem::directory_iterator(store.dir(), ec)) {
    Index i = 0;
    Term t = 0;
    if (parse_snapshot_name(ent.path().filename().string(), i, t)) candidates.emplace_back(i, t);
  }
  if (ec) return base::err(ErrorKind::kIo, "list {}: {}", store.dir(), ec.message());
  std::sort(candidates.rbegin(), candidates.rend());
  snapshot::SnapshotFile chosen;
  for (const auto& [i, t] : candidates) {
    if (log == nullptr || log->term(i) != std::optional<uint64_t>(t)) continue;
    if (log->first_index() > i + 1) continue;  // cannot happen: compaction stays at or below
    auto f = snapshot::verify_file(store.path_for(SnapshotMeta{i, t, {}}));
    if (!f.ok()) continue;  // corrupt: an older one may still serve; recover() removes it
    chosen = *f;
    break;
  }
  if (chosen.meta.index > 0) store.pin(chosen);
  auto newest = store.recover();
  if (chosen.meta.index > 0) store.unpin(chosen);
  if (!newest.ok()) return std::move(newest).error();
  if (newest->meta.index > chosen.meta.index) {
    // Unconfirmed by the WAL (see above).
    if (::unlink(newest->path.c_str()) != 0) return io_error("unlink", newest->path);
    NORI_TRY(store.sync_dir());
  }
  return chosen;
}

void CoreHost::publish(Group* g, NodeEventKind kind) {
  node_.publish_event(
      NodeEvent{kind, g->id, g->raft->term(), cfg_.node_id, BootClock::now(), unix_ms_now()});
}

uint64_t CoreHost::start_fetch(GroupId g, Index lo, Index hi, uint64_t bytes_max) {
  if (closing_) return 0;
  const uint64_t ticket = ++fetch_tickets_;
  // Spawned, not run here: this is called from inside a Raft method, which
  // must return before anything calls back into that Raft object.
  spawn_gated(fetch_task(g, ticket, lo, hi, bytes_max));
  return ticket;
}

Task<void> CoreHost::fetch_task(GroupId id, uint64_t ticket, Index lo, Index hi,
                                uint64_t bytes_max) {
  auto r = co_await wal_->read_entries(id, lo, hi, bytes_max);
  storage_fetches_.inc();
  // The group may have been removed (or removed and created again: the
  // ticket, unique on this core, tells the new storage it is not its fetch).
  Group* g = find(id);
  if (g == nullptr || !g->storage->fetch_done(ticket, std::move(r))) co_return;
  g->raft->entries_fetched(BootClock::now());
  mark_dirty(g);
}

void CoreHost::spawn_gated(Task<void> t) {
  if (closing_ || !loops_gate_.enter()) return;
  Task<void> w = gated(std::move(t));
  w.set_scope(&loops_scope_);
  runtime::spawn(std::move(w));
}

Task<void> CoreHost::gated(Task<void> t) {
  co_await std::move(t);
  loops_gate_.leave();
}

Task<void> CoreHost::handle_snapshot_work(Group* g, SnapshotWork& sw) {
  const GroupId id = g->id;
  if (sw.request) take_snapshot(g, *sw.request);
  if (sw.compact_before) {
    // Entries below compact_before are covered by a durable snapshot file
    // (snapshot_taken came after it): the WAL may drop them. The mark is
    // (last dropped index, its term), which the WAL keeps as the group's
    // start point (term(first_index() - 1) after a restart).
    const Index last_dropped = *sw.compact_before - 1;
    const wal::GroupLog* log = wal_->group(id);
    std::optional<uint64_t> t;
    if (log != nullptr) t = log->term(last_dropped);
    if (t && last_dropped > log->compact_index()) {
      const uint64_t term = *t;
      auto p = co_await wal_append([&] { return wal_->mark_compacted(id, last_dropped, term); });
      if (!p) co_return;
    }
  }
  for (const SnapshotSend& ss : sw.sends)
    send_snapshot_chunk(g, ss);
  for (SnapshotChunkIn& in : sw.chunks)
    receive_chunk(g, in);
}

void CoreHost::take_snapshot(Group* g, const SnapshotMeta& meta) {
  const TimePoint now = BootClock::now();
  // Declining a request: snapshot_taken with the snapshot the core already
  // has clears the request; the thresholds ask again later.
  auto decline = [&](const char* why) {
    if (why != nullptr) {
      snapshot_failures_.inc();
      fmt::print(stderr, "nori: group {}: snapshot at {} not taken: {}\n", g->id, meta.index, why);
    }
    g->raft->snapshot_taken(g->raft->snapshot(), now);
    mark_dirty(g);
  };
  if (!g->snap) return decline(nullptr);
  if (g->snap->taking) return decline(nullptr);  // one at a time; asked again
  // The view must be exactly at meta.index. With manual acks the
  // application may hold entries it has not acked yet: not a point the core
  // can name, so wait for a quieter moment.
  if (g->delivered != meta.index) return decline(nullptr);
  auto view = g->snap->capture();
  if (!view.ok()) return decline(view.error().to_string().c_str());
  publish(g, NodeEventKind::kSnapshotStart);
  auto shared_view = std::make_shared<std::unique_ptr<SnapshotView>>(std::move(view).value());
  snapshot::SnapshotStore* store = g->snap->store.get();
  SnapshotWorker* worker = worker_.get();
  const GroupId id = g->id;
  bool queued = worker_->run<base::Result<snapshot::SnapshotFile>>(
      [store, worker, shared_view, meta]() -> base::Result<snapshot::SnapshotFile> {
        // Worker thread: temporary file, the view's bytes, sync, rename,
        // sync the directory (SnapshotWriter::commit).
        NORI_ASSIGN_OR_RETURN(auto writer, store->begin(meta));
        CancellableSink sink(*writer, *worker);
        NORI_TRY((*shared_view)->write(sink));
        shared_view->reset();  // the view's resources go before the sync
        return writer->commit();
      },
      [this, id, meta](base::Result<snapshot::SnapshotFile> f) {
        on_snapshot_written(id, meta, std::move(f));
      });
  if (!queued) return decline("the snapshot worker's queue is full");
  g->snap->taking = true;
}

void CoreHost::on_snapshot_written(GroupId id, SnapshotMeta meta,
                                   base::Result<snapshot::SnapshotFile> file) {
  if (closing_) return;
  Group* g = find(id);
  if (g == nullptr || !g->snap) return;
  g->snap->taking = false;
  const TimePoint now = BootClock::now();
  if (!file.ok()) {
    snapshot_failures_.inc();
    fmt::print(stderr, "nori: group {}: writing snapshot {} failed: {}\n", id, meta.index,
               file.error().to_string());
    g->raft->snapshot_taken(g->raft->snapshot(), now);  // clears the request
    mark_dirty(g);
    return;
  }
  g->snap->files[meta.index] = *file;
  // Durable: the core may compact behind it now (compact_before follows).
  g->raft->snapshot_taken(meta, now);
  snapshots_taken_.inc();
  remove_superseded(g, g->raft->snapshot().index);
  publish(g, NodeEventKind::kSnapshotDone);
  mark_dirty(g);
}

// Older files are removed once a newer one is durable (and, for an installed
// one, its reset record): unless a transfer is still reading them (pinned;
// the next removal or the next recovery takes them).
void CoreHost::remove_superseded(Group* g, Index newest) {
  auto& files = g->snap->files;
  for (auto it = files.begin(); it != files.end() && it->first < newest;) {
    if (g->snap->store->pinned(it->second.path)) {
      ++it;
      continue;
    }
    ::unlink(it->second.path.c_str());  // a leftover is removed by the next recovery
    it = files.erase(it);
  }
}

void CoreHost::end_transfer(Group* g, NodeId to) {
  auto it = g->snap->sending.find(to);
  if (it == g->snap->sending.end()) return;
  limiter_->finish(it->second.key);
  g->snap->store->unpin(it->second.file);
  g->snap->sending.erase(it);
  remove_superseded(g, g->raft->snapshot().index);
}

void CoreHost::send_snapshot_chunk(Group* g, const SnapshotSend& ss) {
  if (!g->snap) return;
  if (ss.finished) {
    end_transfer(g, ss.to);
    return;
  }
  const snapshot::TransferKey key{g->id, ss.to, ss.meta.index, ss.meta.term};
  auto it = g->snap->sending.find(ss.to);
  if (it != g->snap->sending.end() && it->second.key != key) {
    end_transfer(g, ss.to);  // superseded by a newer snapshot
    it = g->snap->sending.end();
  }
  if (it == g->snap->sending.end()) {
    auto f = g->snap->files.find(ss.meta.index);
    if (f == g->snap->files.end() || f->second.meta.term != ss.meta.term) {
      // Cannot happen: the core sends only a snapshot it was told is durable.
      snapshot_failures_.inc();
      fmt::print(stderr, "nori: group {}: no file for snapshot {} to send to {}\n", g->id,
                 ss.meta.index, ss.to);
      return;
    }
    if (!limiter_->try_start(key)) {
      // Too many transfers run: the core re-drives this one after
      // snapshot_timeout_ms.
      snapshot_transfers_deferred_.inc();
      return;
    }
    g->snap->store->pin(f->second);
    it = g->snap->sending.emplace(ss.to, Outgoing{key, f->second}).first;
  }
  const snapshot::SnapshotFile& file = it->second.file;
  // A blocking read of one chunk on the reactor (counted; docs/node.md).
  auto data = g->snap->store->read_file_range(file, ss.offset, cfg_.snapshot_chunk_bytes);
  if (!data.ok()) {
    snapshot_failures_.inc();
    fmt::print(stderr, "nori: group {}: reading snapshot {} at {}: {}\n", g->id, ss.meta.index,
               ss.offset, data.error().to_string());
    return;  // re-driven after the timeout
  }
  snapshot_reactor_io_.inc();
  snapshot_reactor_io_bytes_.inc(data->size());
  const uint64_t n = data->size();
  Message m{g->id, cfg_.node_id, ss.to, ss.term,
            SnapshotChunk{.index = ss.meta.index,
                          .index_term = ss.meta.term,
                          .offset = ss.offset,
                          .total_bytes = file.size,
                          .digest = file.digest,
                          .last = ss.offset + n == file.size,
                          .membership = ss.meta.membership.encode(),
                          .data = std::move(data).value()}};
  std::string buf;
  buf.reserve(encoded_size(m));
  encode_message(m, buf);
  snapshot_chunks_sent_.inc();
  if (ss.offset > 0 && dropped_chunks_ < cfg_.unsafe_snapshot_drop_sent_chunks_for_testing) {
    ++dropped_chunks_;
    return;  // "lost on the way": the core re-drives after snapshot_timeout_ms
  }
  const TimePoint now = BootClock::now();
  const TimePoint at = limiter_->reserve(n, now);
  if (at <= now) {
    base::Status st = transport_->send(ss.to, g->id, net::MessageType::kGroupBulk, std::move(buf));
    if (!st.ok()) send_refused_.inc();  // re-driven after the timeout
    return;
  }
  spawn_gated(send_bulk_later(at, ss.to, g->id, std::move(buf)));
}

Task<void> CoreHost::send_bulk_later(TimePoint at, NodeId to, GroupId group, std::string buf) {
  base::Status st = co_await runtime::sleep_until(at);
  if (!st.ok() || closing_) co_return;
  st = transport_->send(to, group, net::MessageType::kGroupBulk, std::move(buf));
  if (!st.ok()) send_refused_.inc();
}

void CoreHost::receive_chunk(Group* g, SnapshotChunkIn& in) {
  const TimePoint now = BootClock::now();
  SnapshotChunk& c = in.chunk;
  if (!g->snap) return;  // never acknowledged: the leader gives up after its timeout
  SnapState& sn = *g->snap;
  auto mem = Membership::decode(c.membership);
  if (!mem.ok() || sn.finishing || sn.installing) return;  // the core checked; cannot happen
  SnapshotMeta meta{c.index, c.index_term, std::move(*mem)};
  if (c.offset == 0) {
    // A new transfer (the core discarded any other partial one).
    sn.receiver.reset();
    auto r = sn.store->begin_receive(meta);
    if (!r.ok()) {
      snapshot_failures_.inc();
      fmt::print(stderr, "nori: group {}: receiving snapshot {}: {}\n", g->id, c.index,
                 r.error().to_string());
      g->raft->snapshot_receive_failed(now);
      mark_dirty(g);
      return;
    }
    sn.receiver = std::move(r).value();
    sn.recv_meta = meta;
    sn.recv_term = in.term;
    publish(g, NodeEventKind::kSnapshotStart);
  } else if (!sn.receiver || sn.recv_meta.index != meta.index || sn.recv_meta.term != meta.term ||
             sn.recv_term != in.term || sn.receiver->written() != c.offset) {
    // The core accepted a chunk we have no file for (cannot happen): start over.
    g->raft->snapshot_receive_failed(now);
    mark_dirty(g);
    return;
  }
  if (cfg_.unsafe_snapshot_corrupt_received_chunks_for_testing > corrupted_chunks_ &&
      !c.data.empty()) {
    ++corrupted_chunks_;
    c.data[c.data.size() / 2] ^= 0x5a;
  }
  // A blocking write of one chunk on the reactor (counted; docs/node.md).
  base::Status st = sn.receiver->write_chunk(c.offset, c.data);
  snapshot_reactor_io_.inc();
  snapshot_reactor_io_bytes_.inc(c.data.size());
  if (!st.ok()) {
    snapshot_failures_.inc();
    fmt::print(stderr, "nori: group {}: writing snapshot chunk at {}: {}\n", g->id, c.offset,
               st.error().to_string());
    sn.receiver.reset();
    g->raft->snapshot_receive_failed(now);
    mark_dirty(g);
    return;
  }
  snapshot_chunks_received_.inc();
  g->raft->snapshot_chunk_written(meta, in.term, sn.receiver->written(), now);
  mark_dirty(g);
  if (!c.last) return;
  // The whole file is here: sync, digest, identity, rename, sync the
  // directory on the worker (install step 1), then install on this core.
  auto receiver =
      std::make_shared<std::unique_ptr<snapshot::SnapshotReceiver>>(std::move(sn.receiver));
  const uint64_t digest = c.digest;
  const GroupId id = g->id;
  const Term leader_term = in.term;
  bool queued = worker_->run<base::Result<snapshot::SnapshotFile>>(
      [receiver, meta, digest]() { return (*receiver)->finish(meta, digest); },
      [this, id, meta, leader_term](base::Result<snapshot::SnapshotFile> f) {
        on_received_file(id, meta, leader_term, std::move(f));
      });
  if (!queued) {
    snapshot_failures_.inc();
    g->raft->snapshot_receive_failed(now);
    return;
  }
  sn.finishing = true;
}

void CoreHost::on_received_file(GroupId id, SnapshotMeta meta, Term leader_term,
                                base::Result<snapshot::SnapshotFile> file) {
  (void)leader_term;
  if (closing_) return;
  Group* g = find(id);
  if (g == nullptr || !g->snap) return;
  g->snap->finishing = false;
  if (!file.ok()) {
    // A corrupt transfer (digest or identity) or an I/O error: from 0 again.
    snapshot_failures_.inc();
    fmt::print(stderr, "nori: group {}: received snapshot {} rejected: {}\n", id, meta.index,
               file.error().to_string());
    g->raft->snapshot_receive_failed(BootClock::now());
    mark_dirty(g);
    return;
  }
  spawn_gated(install_received(id, std::move(meta), std::move(file).value()));
}

Task<void> CoreHost::install_received(GroupId id, SnapshotMeta meta, snapshot::SnapshotFile file) {
  Group* g = find(id);
  if (g == nullptr) co_return;
  base::Status st = co_await install(g, std::move(meta), std::move(file));
  if (!st.ok() && !closing_) {
    // Refused (the commit index moved past it meanwhile, or this node leads
    // now): the core's transfer ends and the leader re-drives what it needs.
    fmt::print(stderr, "nori: group {}: snapshot install: {}\n", id, st.error().to_string());
    if ((g = find(id)) != nullptr) {
      g->raft->snapshot_receive_failed(BootClock::now());
      mark_dirty(g);
    }
  }
}

// Install steps 2-4 (raft/storage.h; step 1, the durable verified file, is
// done): the reset record durable, the state machine restored, the core told.
Task<base::Status> CoreHost::install(Group* g, SnapshotMeta meta, snapshot::SnapshotFile file) {
  const GroupId id = g->id;
  SnapState& sn = *g->snap;
  if (sn.installing) co_return base::err(ErrorKind::kBusy, "group {}: an install runs", id);
  if (g->raft->is_leader()) {
    co_return base::err(ErrorKind::kInvalidArgument, "group {}: the leader installs no snapshot",
                        id);
  }
  if (meta.index <= g->raft->commit_index()) {
    co_return base::err(ErrorKind::kInvalidArgument,
                        "group {}: snapshot {} is at or below the commit index {}", id, meta.index,
                        g->raft->commit_index());
  }
  sn.installing = true;
  auto pos = co_await wal_append([&] { return wal_->reset_group(id, meta.index, meta.term); });
  if (!pos) {
    sn.installing = false;
    co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  }
  base::Status st = co_await wal_->wait_durable(*pos);
  if (!st.ok()) {
    // Closing. The reset record may or may not be durable; recovery
    // finishes the install from the file, or keeps the old state.
    sn.installing = false;
    co_return st;
  }
  if (cfg_.unsafe_snapshot_exit_after_reset_for_testing) std::_Exit(86);
  // From here the durable log starts after the snapshot: the state machine
  // MUST become the snapshot's. A failure leaves no consistent way on
  // (the log and the state machine disagree), so it stops the process and
  // recovery restores from the file.
  auto src = VerifiedPayload::open(file);
  NORI_ASSERT(src.ok(), "group {}: snapshot {} unreadable after its reset record: {}", id,
              meta.index, src.ok() ? "" : src.error().to_string());
  base::Status rs = sn.restore(**src);
  NORI_ASSERT(rs.ok(), "group {}: restore_snapshot({}) failed after its reset record: {}", id,
              meta.index, rs.ok() ? "" : rs.error().to_string());
  const TimePoint now = BootClock::now();
  g->delivered = g->last_normal = g->acked = g->raft_applied = meta.index;
  while (!g->stages.empty() && g->stages.front().index <= meta.index) {
    g->stages.pop_front();
    if (g->stages_wal_done > 0) --g->stages_wal_done;
  }
  sn.files[meta.index] = file;
  sn.installing = false;
  g->raft->snapshot_installed(meta, now);
  snapshots_installed_.inc();
  remove_superseded(g, meta.index);
  publish(g, NodeEventKind::kSnapshotDone);
  mark_dirty(g);
  co_return base::Status{};
}

base::Status CoreHost::trigger_snapshot(GroupId id) {
  Group* g = find(id);
  if (g == nullptr) return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  if (!g->snap) {
    return base::err(ErrorKind::kInvalidArgument,
                     "group {} has no snapshot hooks (capture_snapshot / restore_snapshot)", id);
  }
  g->raft->trigger_snapshot();
  mark_dirty(g);
  return {};
}

Task<base::Status> CoreHost::install_snapshot(GroupId id, std::istream& in) {
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  Group* g = find(id);
  if (g == nullptr) co_return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  if (!g->snap) {
    co_return base::err(ErrorKind::kInvalidArgument,
                        "group {} has no snapshot hooks (capture_snapshot / restore_snapshot)", id);
  }
  if (g->snap->finishing || g->snap->installing) {
    co_return base::err(ErrorKind::kBusy, "group {}: a snapshot install runs", id);
  }
  // Step 1 on the worker: copy the stream to a temporary file, sync it,
  // verify digest and header, rename to its final name, sync the directory.
  snapshot::SnapshotStore* store = g->snap->store.get();
  SnapshotWorker* worker = worker_.get();
  std::istream* src = &in;
  OneShot<base::Result<snapshot::SnapshotFile>> done;
  bool queued = worker_->run<base::Result<snapshot::SnapshotFile>>(
      [store, worker, src]() -> base::Result<snapshot::SnapshotFile> {
        const std::string tmp = store->dir() + "/install.tmp";
        const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
        int fd = ::open(tmp.c_str(), flags, 0644);  // reactor-ok: worker thread
        if (fd < 0) return io_error("create", tmp);
        auto fail = [&](base::Error e) {
          ::close(fd);
          ::unlink(tmp.c_str());
          return e;
        };
        std::string buf(kInstallCopyBytes, '\0');
        while (*src) {
          if (worker->cancelled()) {
            return fail(base::Error(ErrorKind::kShuttingDown, "the node is shutting down"));
          }
          src->read(buf.data(), static_cast<std::streamsize>(buf.size()));
          const auto n = static_cast<size_t>(src->gcount());
          for (size_t off = 0; off < n;) {
            ssize_t w = ::write(fd, buf.data() + off, n - off);  // reactor-ok: worker thread
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return fail(io_error("write", tmp));
            off += static_cast<size_t>(w);
          }
        }
        if (src->bad()) return fail(base::err(ErrorKind::kIo, "reading the snapshot stream"));
        const bool synced = ::fdatasync(fd) == 0;  // reactor-ok: worker thread
        if (!synced) return fail(io_error("fdatasync", tmp));
        ::close(fd);
        auto f = snapshot::verify_file(tmp);
        if (!f.ok()) {
          ::unlink(tmp.c_str());
          return std::move(f).error();
        }
        const std::string final_path = store->path_for(f->meta);
        if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
          auto e = io_error("rename", tmp);
          ::unlink(tmp.c_str());
          return e;
        }
        NORI_TRY(store->sync_dir());
        f->path = final_path;
        return f;
      },
      [&done](base::Result<snapshot::SnapshotFile> f) { done.resolve(std::move(f)); });
  if (!queued) co_return base::err(ErrorKind::kBusy, "the snapshot worker's queue is full");
  g->snap->finishing = true;
  base::Result<snapshot::SnapshotFile> f = co_await done;
  g = find(id);
  if (g == nullptr) co_return base::err(ErrorKind::kNotFound, "no group {} on this node", id);
  g->snap->finishing = false;
  if (!f.ok()) co_return std::move(f).error();
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "the node is shutting down");
  const SnapshotMeta meta = f->meta;
  base::Status st = co_await install(g, meta, *f);
  if (!st.ok() && !g->snap->files.contains(meta.index)) {
    // Refused (at or below commit, leader): the file is not ours to keep.
    ::unlink(f->path.c_str());
  }
  co_return st;
}

}  // namespace nori::raft
