#include "tests/sim/simulation.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include "raft/raft.h"
#include "runtime/base/bytes.h"
#include "tests/lincheck/checker.h"
#include "tests/sim/client_router.h"
#include "tests/sim/clock.h"
#include "tests/sim/kv.h"
#include "tests/sim/rng.h"
#include "tests/sim/storage.h"
#include "tests/sim/trace.h"

namespace nori::sim {

using raft::GroupId;
using raft::Index;
using raft::NodeId;
using raft::Term;

// ---------------------------------------------------------------------------
// Options, reports.

SimOptions SimOptions::lease_hazard_for_seed(uint64_t seed) {
  SimOptions o = for_seed(seed);
  o.lease_hazard = true;
  o.fault_interval_mean = 2500 * kMillisecond;
  o.read_fraction = 0.6;
  o.stale_read_fraction = 0;
  o.lease_read_fraction = 0.9;
  o.op_timeout = 400 * kMillisecond;
  return o;
}

SimOptions SimOptions::for_seed(uint64_t seed) {
  SimOptions o;
  o.seed = seed;
  Rng r(seed * 0x2545f4914f6cdd1dULL + 17);
  o.nodes = r.chance(0.5) ? 3 : 5;
  o.groups = static_cast<int>(r.uniform(1, 3));
  o.loss = r.unit() * 0.05;
  o.duplicate = r.unit() * 0.03;
  o.latency_mean = r.uniform(300'000, 3'000'000);
  o.latency_tail_chance = r.unit() * 0.05;
  o.fault_interval_mean = r.uniform(400, 2500) * kMillisecond;
  o.clients = static_cast<int>(r.uniform(3, 6));
  o.keys = static_cast<int>(r.uniform(1, 4));
  o.lease_read_fraction = r.unit();
  o.clock_offset_max_ms = r.uniform(200, 1000);
  o.op_timeout = r.uniform(300, 1500) * kMillisecond;
  // Sometimes a slow disk, so that crashes catch writes in flight.
  o.disk_mean = r.chance(0.5) ? r.uniform(100'000, 1'000'000) : r.uniform(1, 15) * kMillisecond;
  // Append coalescing (raft::Config::append_hold_us): the default hold, none
  // (pure pipelining) or a short one. A generator of its own keeps every
  // other draw of a seed as it was.
  Rng h(seed * 0xbf58476d1ce4e5b9ULL + 53);
  switch (h.uniform(0, 2)) {
    case 0:
      o.raft.append_hold_us = 0;
      break;
    case 1:
      break;
    default:
      o.raft.append_hold_us = static_cast<uint32_t>(h.uniform(100, 3000));
      break;
  }
  return o;
}

SimOptions SimOptions::snapshots_for_seed(uint64_t seed) {
  SimOptions o = for_seed(seed);
  o.snapshots = true;
  Rng r(seed * 0x9e3779b97f4a7c15ULL + 29);
  // A snapshot every few dozen applied entries, a short log behind it: a
  // follower down for a second or cut off by a partition falls behind the
  // leader's log start and needs the snapshot.
  o.raft.snapshot_entries_max = static_cast<uint64_t>(r.uniform(20, 120));
  o.raft.snapshot_keep_entries = static_cast<uint64_t>(r.uniform(0, 30));
  o.raft.snapshot_log_bytes_max = 64 << 10;
  // Transfers are re-driven (from the last acknowledged offset) after this
  // long without progress: short enough to happen within a run.
  o.raft.snapshot_timeout_ms = static_cast<uint32_t>(r.uniform(400, 1500));
  // Files are a few hundred bytes: chunks small enough that a transfer takes
  // several round trips and is interrupted by losses, crashes, partitions.
  o.snapshot_chunk_bytes = static_cast<uint64_t>(r.uniform(8, 64));
  o.install_crash_chance = r.chance(0.5) ? 0.1 : 0.0;
  return o;
}

SimOptions SimOptions::membership_for_seed(uint64_t seed) {
  SimOptions o = snapshots_for_seed(seed);
  o.membership = true;
  Rng r(seed * 0xd1b54a32d192ed03ULL + 41);
  o.spares = static_cast<int>(r.uniform(1, 2));
  o.change_interval_mean = r.uniform(400, 1500) * kMillisecond;
  o.raft.promote_lag_entries_max = static_cast<uint64_t>(r.uniform(0, 20));
  // Long enough for progress to be required: a crash late in the fault
  // phase keeps a node down up to 2.5 s into it, then an election and the
  // restarted voters' lease promise (about 2.1 s) pass before a commit.
  o.quiet = 8 * kSecond;
  o.require_progress = true;
  return o;
}

void SimOptions::with_quiesce() {
  quiesce = true;
  Rng r(seed * 0xd1b54a32d192ed03ULL + 41);
  // Fewer, slower clients: a group is idle for several heartbeats between
  // operations (it quiesces after two idle ticks), and wakes for the next.
  clients = static_cast<int>(r.uniform(2, 3));
  think_max = r.uniform(300, 1200) * kMillisecond;
  // Where progress is required after the faults (membership mode: 8 s of
  // quiet), those few slow clients send only a handful of writes, many to
  // nodes outside the group (11 nodes, a 2-4 member group), some lost, and
  // a new leader first waits out the old lease (~2.1 s): 4 of 10,859 60-s
  // runs saw no client write commit in time although the group had a leader
  // and committed when asked (traced seeds 501037, 503801, 506565, 507869).
  // Twice the quiet time gives them as many writes as the fast clients get.
  // Still needed with the clients' routing (ClientRouter): without it, 1 of
  // 10,000 60-s runs (seed 507319) failed with clients on the leader: a
  // 2-voter group's other voter was paused until 2.1 s into the quiet, then
  // an election and the lease wait left 1.6 s for two slow clients.
  if (require_progress) quiet *= 2;
}

std::string SimOptions::replay_command() const {
  SimOptions base = lease_hazard ? lease_hazard_for_seed(seed)
                    : membership ? membership_for_seed(seed)
                    : snapshots  ? snapshots_for_seed(seed)
                                 : for_seed(seed);
  std::string cmd = fmt::format("{} --seed {}", NORI_SIM_BINARY, seed);
  if (storm) cmd += fmt::format(" --storm --storm-rounds {}", storm_rounds);
  if (lease_hazard) cmd += " --lease-hazard";
  if (quiesce) cmd += " --quiesce";
  if (membership) {
    cmd += " --membership";
  } else if (snapshots) {
    cmd += " --snapshots";
  }
  if (install_crash_chance != base.install_crash_chance) {
    cmd += fmt::format(" --install-crash-chance {}", install_crash_chance);
  }
  if (install_crash_step != base.install_crash_step) {
    cmd += fmt::format(" --install-crash-step {}", install_crash_step);
  }
  if (unsafe_install_reset_before_file_for_testing) cmd += " --unsafe-install-reset-first";
  if (unsafe_clients_guess_at_random_for_testing) cmd += " --unsafe-random-clients";
  if (duration != base.duration) cmd += fmt::format(" --duration-ms {}", duration / kMillisecond);
  if (clock_drift_ppm != base.clock_drift_ppm) {
    cmd += fmt::format(" --drift-ppm {}", clock_drift_ppm);
  }
  if (raft.unsafe_skip_new_leader_lease_wait_for_testing) cmd += " --unsafe-skip-lease-wait";
  if (raft.unsafe_lease_read_skips_clock_check_for_testing) cmd += " --unsafe-lease-no-clock";
  cmd += fmt::format(" --trace /tmp/nori-sim-{}.jsonl", seed);
  return cmd;
}

std::string Distribution::summary() const {
  if (samples_ms.empty()) return "n=0";
  std::vector<double> s = samples_ms;
  std::sort(s.begin(), s.end());
  auto pct = [&](double p) {
    size_t i = static_cast<size_t>(p * static_cast<double>(s.size() - 1) + 0.5);
    return s[std::min(i, s.size() - 1)];
  };
  return fmt::format("n={} min {:.0f} p50 {:.0f} p90 {:.0f} p99 {:.0f} max {:.0f} ms", s.size(),
                     s.front(), pct(0.5), pct(0.9), pct(0.99), s.back());
}

std::string SimReport::summary() const {
  std::string s = fmt::format(
      "seed {}: {} | {} events, {} client ops ({} ok, {} fail, {} info, {} stale reads not "
      "checked), {} lease reads, {} read-index reads, {} entries committed, {} leader terms, "
      "{} crashes, {} pauses, {} partitions, {} transfers, {} writes lost in crashes",
      seed, ok ? "ok" : "FAILED", events, client_ops, ok_ops, failed_ops, info_ops, stale_reads,
      lease_reads, read_index_reads, committed_entries, leaders, crashes, pauses, partitions,
      transfers, lost_writes);
  if (snapshots_taken + installs + adds + removes > 0) {
    s += fmt::format(
        "\n  snapshots: {} taken, {} installed, {} chunks sent ({} re-sent from the last "
        "acknowledged offset), {} crashes during installs (by step: {} {} {} {}), recovered "
        "{} old / {} new",
        snapshots_taken, installs, snapshot_chunks, snapshot_resends, install_crash_total(),
        install_crashes[1], install_crashes[2], install_crashes[3], install_crashes[4],
        recovered_old, recovered_new);
    if (recovered_own_newer > 0) {
      s += fmt::format(" / {} its own newer snapshot (a stale install)", recovered_own_newer);
    }
    s += fmt::format(
        "\n  membership: {} adds, {} removes ({} of the leader), {} replaces, {} abandoned, {} "
        "reimaged under a new id, {} changes completed",
        adds, removes, leader_removes, replaces, abandons, wipes, changes_completed);
  }
  if (quiesces + wakes + liveness_lost > 0) {
    s += fmt::format("\n  quiescence: {} replicas went quiet, {} woke, {} liveness losses",
                     quiesces, wakes, liveness_lost);
  }
  if (!time_to_leader.samples_ms.empty() || !time_to_write.samples_ms.empty()) {
    s += fmt::format("\n  time to new leader: {}\n  time to first committed write: {}",
                     time_to_leader.summary(), time_to_write.summary());
  }
  for (const std::string& v : violations)
    s += "\n  VIOLATION: " + v;
  if (violation_count > violations.size()) {
    s += fmt::format("\n  ... and {} more", violation_count - violations.size());
  }
  if (!ok) s += "\n  replay: " + replay;
  return s;
}

size_t SimReport::install_crash_total() const {
  return install_crashes[1] + install_crashes[2] + install_crashes[3] + install_crashes[4];
}

namespace {

char g_abort_context[512];

void on_abort(int) {
  const char prefix[] = "\n[nori-sim] aborted during a simulation; replay: ";
  ssize_t unused = ::write(2, prefix, sizeof prefix - 1);
  unused = ::write(2, g_abort_context, std::strlen(g_abort_context));
  unused = ::write(2, "\n", 1);
  (void)unused;
}

}  // namespace

void set_abort_context(const std::string& replay) {
  size_t n = std::min(replay.size(), sizeof g_abort_context - 1);
  std::memcpy(g_abort_context, replay.data(), n);
  g_abort_context[n] = '\0';
  static bool installed = false;
  if (!installed) {
    std::signal(SIGABRT, on_abort);
    installed = true;
  }
}

// ---------------------------------------------------------------------------
// The simulation.

namespace {

double ms(SimTime t) {
  return static_cast<double>(t) / kMillisecond;
}

// Search steps per key before the linearizability check gives up (an
// undecided history counts as a failure). Histories of a correct core need a
// few thousand; non-linearizable ones with many unknown-outcome appends can
// need exponentially many.
constexpr uint64_t kLincheckStepsMax = 5'000'000;

// The share of client attempts sent to any node id instead of where the
// client's routing points (Simulation::attempt).
constexpr double kClientProbeChance = 0.1;

enum class Outcome : uint8_t { kOk, kFailCertain, kUnknown };

// One attempt of a client operation, as it travels to a node: everything the
// node needs is copied in, since the client may have moved on (timed out and
// started another operation) by the time a delayed request is handled.
struct ClientRequest {
  size_t client = 0;
  uint64_t op_seq = 0;   // which operation of the client
  uint64_t attempt = 0;  // which attempt of that operation
  lincheck::OpKind kind = lincheck::OpKind::kGet;
  raft::ReadMode mode = raft::ReadMode::kLease;
  std::string key, value;
  uint64_t client_id = 0, command_seq = 0;
  SimTime deadline = 0;
  // Set by the node when a read arrives: when the core decided whether its
  // lease covers the read, and in which term.
  SimTime arrived = 0;
  Term arrival_term = 0;
};

struct HeldMessage {
  raft::Message msg;
  uint64_t hs_seq = 0;       // hard-state lane must reach this
  uint64_t entries_seq = 0;  // entry lane must reach this
};

// A snapshot install in progress on a follower (raft/storage.h order).
struct Install {
  raft::SnapshotMeta meta;
  raft::SnapshotMeta old_meta;  // the durable snapshot before it
  SnapshotFile file;
  // Snapshots this node took of its own state that became durable while
  // the install ran (the snapshot lane runs on). One newer than `meta` means
  // the install was stale: the core had committed past it meanwhile.
  std::vector<raft::SnapshotMeta> taken;
};

// The partial snapshot file being received (volatile: forgotten on crash,
// as the core forgets the transfer on restart).
struct Receiving {
  raft::SnapshotMeta meta;
  Term leader_term = 0;
  std::string data;
};

struct Replica {
  GroupId group = 0;
  SimStorage storage;
  // Not in the bootstrap configuration: a spare node, or a new machine that
  // replaced a decommissioned one (it starts with no configuration and
  // learns it from a leader).
  bool joined = false;
  std::unique_ptr<raft::Raft> raft;
  bool quiesced = false;  // as of the last drain (statistics)
  raft::Ready ready;
  KvStore kv;
  Index applied = 0;
  std::vector<HeldMessage> held;
  SimTime tick_at = -1;  // real time of the pending tick; -1: none
  SimTime hs_lane_free = 0, entries_lane_free = 0;
  std::map<uint64_t, ClientRequest> proposals;
  std::map<uint64_t, ClientRequest> reads;
  std::vector<std::pair<Index, ClientRequest>> reads_waiting_apply;
  // Snapshots (volatile unless said otherwise).
  SimTime snap_lane_free = 0;  // writes of snapshot files and received chunks
  std::optional<Receiving> receiving;
  std::optional<Install> installing;
  // An install a crash interrupted: recovery must give old_meta or meta.
  std::optional<Install> interrupted;
  std::map<NodeId, Index> pinned;  // leader: snapshot being sent to each peer
  std::map<NodeId, std::pair<Index, uint64_t>> last_send;  // (index, offset)
};

// Node-level liveness as a node's driver sees it (raft::NodeLiveness):
// the local time it last heard from each peer, from any delivered message or
// liveness ping. Lost with the process (reset on restart).
class SimLiveness final : public raft::NodeLiveness {
 public:
  explicit SimLiveness(base::Duration timeout) : timeout_(timeout) {}
  bool node_live(NodeId node, base::TimePoint now) const override {
    auto it = heard_.find(node);
    return it != heard_.end() && now - it->second < timeout_;
  }
  void heard(NodeId node, base::TimePoint now) {
    base::TimePoint& t = heard_[node];
    t = std::max(t, now);
    lost_.erase(node);
  }
  void reset() {
    heard_.clear();
    lost_.clear();
  }
  // Peers heard from once and silent for the timeout now, each reported
  // once until heard from again.
  std::vector<NodeId> newly_lost(base::TimePoint now) {
    std::vector<NodeId> out;
    for (const auto& [id, t] : heard_) {
      if (now - t >= timeout_ && lost_.insert(id).second) out.push_back(id);
    }
    return out;
  }

 private:
  base::Duration timeout_;
  std::map<NodeId, base::TimePoint> heard_;
  std::set<NodeId> lost_;
};

struct Node {
  NodeId id = 0;
  std::unique_ptr<SimLiveness> liveness;
  SimClock clock{0, 0};
  bool up = true;
  uint64_t incarnation = 0;
  SimTime paused_until = 0;
  std::deque<std::function<void()>> deferred;  // work that arrived during a pause
  std::vector<std::unique_ptr<Replica>> replicas;
  // Decommissioned (reimaged): down for good; the machine comes back as a
  // new node under a new id. A removed node's id is never reused with an
  // empty disk: with a stale configuration from an old snapshot it could
  // form a majority of that old configuration with other removed nodes
  // (the simulator found exactly that; docs/simulation.md).
  bool retired = false;
};

// A reply as the client's routing sees it (ClientRouter): who answered,
// whether it served as leader or says it does not lead (and whom it names),
// and its configuration.
struct Answer {
  NodeId from = 0;
  bool served = false;      // a write or a linearizable read: it led
  bool not_leader = false;  // refused: it does not lead
  NodeId hint = 0;
  Index membership_index = 0;
  std::vector<NodeId> members;  // voters of both halves and learners
};

struct Client {
  explicit Client(ClientRouter r) : router(std::move(r)) {}
  size_t index = 0;
  GroupId group = 0;
  uint64_t id = 0;
  bool busy = false;
  lincheck::Operation op;
  raft::ReadMode mode = raft::ReadMode::kLease;
  uint64_t op_seq = 0;   // which operation (unique in the run); replies name it
  uint64_t attempt = 0;  // which attempt of the current operation
  uint64_t seq = 0;      // the client's own write counter (for unique values)
  SimTime deadline = 0;
  NodeId last_target = 0;  // where the current attempt went
  ClientRouter router;
  // Only with unsafe_clients_guess_at_random_for_testing: the leader a
  // refusal named, forgotten after any timeout.
  NodeId guess = 0;
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& o)
      : o_(o), rng_(o.seed), net_rng_(rng_.fork()), trace_(o.trace_path) {
    drift_ppm_ = o_.clock_drift_ppm >= 0 ? o_.clock_drift_ppm
                                         : 0.9 * static_cast<double>(o_.raft.max_clock_drift_ppm);
    total_nodes_ = o_.nodes + (o_.membership ? o_.spares : 0);
    blocked_.assign(total_nodes_ + 1, std::vector<int>(total_nodes_ + 1, 0));
    for (int i = 1; i <= total_nodes_; ++i)
      nodes_.push_back(make_node(static_cast<NodeId>(i), i > o_.nodes));
    for (auto& n : nodes_)
      start_node(*n);
    // Clients are configured with the founding members of their group.
    std::vector<NodeId> founders;
    for (int i = 1; i <= o_.nodes; ++i)
      founders.push_back(static_cast<NodeId>(i));
    for (int g = 0; g < o_.groups; ++g) {
      for (int c = 0; c < o_.clients; ++c) {
        Client cl(ClientRouter(founders, clients_.size()));
        cl.index = clients_.size();
        cl.group = static_cast<GroupId>(g + 1);
        cl.id = clients_.size();
        clients_.push_back(cl);
      }
    }
    histories_.resize(o_.groups);
  }

  SimReport run() {
    const SimTime end_faults = o_.duration;
    const SimTime end_clients = o_.duration + o_.quiet - o_.op_timeout - 200 * kMillisecond;
    const SimTime end = o_.duration + o_.quiet;
    clients_until_ = std::max<SimTime>(end_clients, kSecond);
    for (Client& c : clients_) {
      sched_.after(rng_.uniform(0, 50) * kMillisecond, [this, &c] { next_op(c); });
    }
    schedule_drift_change();
    if (o_.storm) {
      sched_.after(500 * kMillisecond, [this] { storm_poll(); });
    } else if (o_.fault_interval_mean > 0) {
      schedule_fault(end_faults);
    }
    if (o_.membership) {
      schedule_membership_change(end_faults);
      schedule_membership_housekeeping();
    }
    script_nodes_.assign(o_.script.size(), 0);
    for (size_t i = 0; i < o_.script.size(); ++i) {
      sched_.at(o_.script[i].at, [this, i] { run_script_step(i); });
    }
    sched_.after(kSecond, [this] { periodic_check(); });
    sched_.at(end_faults, [this] { heal_everything(); });
    sched_.run_until(end);

    // Operations still waiting for a reply: writes become info, reads drop.
    for (Client& c : clients_) {
      if (c.busy) finish(c, Outcome::kUnknown, "");
    }
    final_checks();
    return report();
  }

 private:
  // --- helpers ----------------------------------------------------------------
  SimTime now() const { return sched_.now(); }
  base::TimePoint local(const Node& n) const { return n.clock.local(now()); }
  Node& node(NodeId id) { return *nodes_[id - 1]; }
  Replica& replica(Node& n, GroupId g) { return *n.replicas[g - 1]; }

  void trace(const char* ev, nlohmann::json fields) {
    if (trace_.enabled()) trace_.write(now(), ev, std::move(fields));
  }

  double draw_drift() { return (rng_.unit() * 2 - 1) * drift_ppm_; }

  SimTime net_latency() {
    SimTime d = o_.latency_min +
                static_cast<SimTime>(net_rng_.exponential(static_cast<double>(o_.latency_mean)));
    if (net_rng_.chance(o_.latency_tail_chance)) {
      d += static_cast<SimTime>(net_rng_.exponential(static_cast<double>(o_.latency_tail_mean)));
    }
    return d;
  }

  SimTime disk_latency() {
    return o_.disk_min + static_cast<SimTime>(rng_.exponential(static_cast<double>(o_.disk_mean)));
  }

  // Runs `fn` as node `n` (incarnation `inc`): dropped if the node crashed
  // since, deferred while it is paused.
  void on_node(Node& n, uint64_t inc, std::function<void()> fn) {
    if (!n.up || n.incarnation != inc) return;
    if (n.paused_until > now()) {
      n.deferred.push_back(std::move(fn));
      return;
    }
    fn();
  }

  raft::Config config_for(const Node& n, const Replica& r) {
    raft::Config c = o_.raft;
    c.id = n.id;
    c.group = r.group;
    c.voters.clear();
    c.learners.clear();
    // A joining node starts with no configuration: it learns it from the
    // leader (the bootstrap one is used only while the log has no snapshot).
    if (!r.joined) {
      for (int i = 1; i <= o_.nodes; ++i)
        c.voters.push_back(static_cast<NodeId>(i));
    }
    c.random_seed = rng_.next() | 1;
    if (o_.quiesce) c.liveness = n.liveness.get();
    // The KV store is in memory: restored from the durable snapshot (if
    // any), then the log after it is replayed (start_node).
    c.applied = 0;
    return c;
  }

  std::unique_ptr<Node> make_node(NodeId id, bool joined) {
    auto n = std::make_unique<Node>();
    n->id = id;
    n->liveness =
        std::make_unique<SimLiveness>(std::chrono::milliseconds(o_.raft.election_timeout_max_ms));
    const int64_t offset = rng_.uniform(-o_.clock_offset_max_ms, o_.clock_offset_max_ms);
    n->clock = SimClock(offset * kMillisecond, draw_drift());
    for (int g = 0; g < o_.groups; ++g) {
      auto r = std::make_unique<Replica>();
      r->group = static_cast<GroupId>(g + 1);
      r->joined = joined;
      n->replicas.push_back(std::move(r));
    }
    trace("node", {{"node", id}, {"offset_ms", offset}, {"drift_ppm", n->clock.drift_ppm()}});
    return n;
  }

  // Decommissions `x` (a member of no group) for good and brings up a new
  // machine with an empty disk under a new id, outside every group.
  void reimage(Node& x) {
    x.retired = true;
    crash(x, 0);
    ++wipes_;
    const NodeId id = static_cast<NodeId>(nodes_.size() + 1);
    total_nodes_ = static_cast<int>(id);
    for (auto& row : blocked_)
      row.resize(total_nodes_ + 1, 0);
    blocked_.emplace_back(total_nodes_ + 1, 0);
    nodes_.push_back(make_node(id, true));
    trace("reimage", {{"node", x.id}, {"new_id", id}});
    start_node(*nodes_.back());
  }

  // --- node lifecycle ------------------------------------------------------------
  void start_node(Node& n) {
    n.up = true;
    n.liveness->reset();
    if (o_.quiesce) schedule_liveness(n);
    for (auto& rp : n.replicas) {
      Replica& r = *rp;
      raft::Config c = config_for(n, r);
      r.kv = KvStore();
      r.applied = 0;
      recover_snapshot(n, r, c);
      r.raft = std::make_unique<raft::Raft>(c, r.storage, local(n));
      drain(n, r);
    }
  }

  // Recovery (raft/storage.h): the state machine is restored from the
  // durable snapshot before the core is built; the log after it is replayed.
  void recover_snapshot(Node& n, Replica& r, raft::Config& c) {
    const raft::SnapshotMeta snap = r.storage.snapshot_meta();
    if (r.interrupted) {
      // A crash cut an install short: the durable state is the old snapshot
      // or the new one, never anything else. "Old" includes a snapshot the
      // node took of its own state meanwhile; one of those may even be newer
      // than the install (the core went on committing during the transfer,
      // so the install was stale and the storage ignores its older reset
      // record). The state restored is checked against the committed log
      // below (checker_.on_restore) in every case.
      const Install& in = *r.interrupted;
      const bool taken_here = std::find(in.taken.begin(), in.taken.end(), snap) != in.taken.end();
      if (snap == in.meta) {
        ++recovered_new_;
      } else if (snap == in.old_meta || (taken_here && snap.index < in.meta.index)) {
        ++recovered_old_;
      } else if (taken_here) {
        ++recovered_own_newer_;
      } else {
        checker_.violation(fmt::format(
            "install recovery: group {} node {} was installing snapshot {} (term {}) over {} "
            "and recovered snapshot {} (term {}): neither old nor new (t={:.3f} ms)",
            r.group, n.id, in.meta.index, in.meta.term, in.old_meta.index, snap.index, snap.term,
            ms(now())));
      }
      trace("install_recovered",
            {{"node", n.id}, {"group", r.group}, {"snapshot", snap.index}, {"new", in.meta.index}});
      r.interrupted.reset();
    }
    if (snap.index == 0) {
      checker_.on_restart(r.group, n.id);
      return;
    }
    const SnapshotFile* f = r.storage.file(snap.index);
    if (f == nullptr) {
      // Only a driver that made the reset record durable before the file
      // gets here. It restores what it has (the newest older file, or
      // nothing) under the new index: the mix the content check catches.
      checker_.violation(fmt::format(
          "install recovery: group {} node {}: the log is reset to snapshot {} but its file is "
          "missing (t={:.3f} ms)",
          r.group, n.id, snap.index, ms(now())));
      f = r.storage.newest_file_at_or_below(snap.index);
    }
    if (f != nullptr) {
      auto kv = KvStore::decode_state(f->data);
      NORI_ASSERT(kv.ok(), "a durable snapshot file does not decode");
      r.kv = std::move(*kv);
    }
    r.applied = snap.index;
    c.applied = snap.index;
    checker_.on_restore(r.group, n.id, snap.index, r.kv, "restart recovery", now());
  }

  void crash(Node& n, SimTime down_for) {
    ++crashes_;
    n.up = false;
    ++n.incarnation;
    n.paused_until = 0;
    n.deferred.clear();
    size_t lost = 0;
    for (auto& rp : n.replicas) {
      Replica& r = *rp;
      lost += r.storage.crash();
      r.raft.reset();
      r.held.clear();
      r.tick_at = -1;
      r.hs_lane_free = r.entries_lane_free = 0;
      r.proposals.clear();
      r.reads.clear();
      r.reads_waiting_apply.clear();
      r.snap_lane_free = 0;
      r.receiving.reset();
      if (r.installing) r.interrupted = std::move(r.installing);
      r.installing.reset();
      r.pinned.clear();
      r.last_send.clear();
    }
    lost_writes_ += lost;
    trace("crash", {{"node", n.id}, {"lost_writes", lost}, {"down_ms", ms(down_for)}});
    const uint64_t inc = n.incarnation;
    sched_.after(down_for, [this, &n, inc] {
      if (n.up || n.incarnation != inc || n.retired) return;
      trace("restart", {{"node", n.id}});
      start_node(n);
    });
  }

  void pause(Node& n, SimTime d) {
    if (!n.up || n.paused_until > now()) return;
    ++pauses_;
    n.paused_until = now() + d;
    trace("pause", {{"node", n.id}, {"ms", ms(d)}});
    const uint64_t inc = n.incarnation;
    sched_.at(n.paused_until, [this, &n, inc] {
      if (!n.up || n.incarnation != inc) return;
      trace("resume", {{"node", n.id}, {"deferred", n.deferred.size()}});
      n.paused_until = 0;
      // Work that queued up while paused runs in arrival order; a tick too,
      // since timers fired while the process was stopped.
      std::deque<std::function<void()>> work;
      work.swap(n.deferred);
      for (auto& fn : work) {
        if (!n.up || n.incarnation != inc) return;
        fn();
      }
      for (auto& rp : n.replicas) {
        rp->tick_at = -1;
        schedule_tick(n, *rp, now());
      }
    });
  }

  // --- the driver loop for one replica ------------------------------------------
  void drain(Node& n, Replica& r) {
    while (r.raft && r.raft->has_ready()) {
      r.raft->take_ready(r.ready);
      raft::Ready& rd = r.ready;
      // 1. Persistence: hard state on its own lane, entries on theirs.
      if (rd.hard_state) {
        r.storage.write_hard_state(*rd.hard_state);
        r.hs_lane_free = std::max(r.hs_lane_free, now()) + disk_latency();
        const uint64_t inc = n.incarnation;
        sched_.at(r.hs_lane_free, [this, &n, &r, inc] {
          on_node(n, inc, [this, &n, &r] {
            raft::HardState hs = r.storage.complete_hard_state();
            r.raft->hard_state_persisted(hs, local(n));
            release_held(n, r);
            drain(n, r);
          });
        });
      }
      if (rd.truncate_from || !rd.entries.empty()) {
        r.storage.write_entries(rd.truncate_from, rd.entries);
        complete_log_write(n, r, nullptr);
      }
      // 2. Messages: now, or once the writes they depend on are durable.
      for (raft::OutMessage& om : rd.messages) {
        switch (om.after) {
          case raft::SendAfter::kNow:
            send(n, std::move(om.msg));
            break;
          case raft::SendAfter::kHardState:
            r.held.push_back({std::move(om.msg), r.storage.issued_hard_state_seq(), 0});
            break;
          case raft::SendAfter::kEntries:
            r.held.push_back({std::move(om.msg), r.storage.issued_hard_state_seq(),
                              r.storage.issued_entries_seq()});
            break;
        }
      }
      release_held(n, r);
      // 3. Events (before applying: a leader's completeness is judged on the
      // log it was elected with).
      for (const raft::Event& ev : rd.events) {
        trace("raft_event", {{"node", n.id},
                             {"group", r.group},
                             {"kind", raft::to_string(ev.kind)},
                             {"term", ev.term},
                             {"about", ev.node},
                             {"membership", raft::to_string(r.raft->membership())},
                             {"membership_index", r.raft->membership_index()}});
        if (ev.kind == raft::EventKind::kLeaderElected) {
          checker_.on_leader(r.group, ev.term, ev.node, now());
          if (ev.node == n.id) {
            checker_.check_leader_completeness(r.group, n.id, ev.term, r.storage.written_log(),
                                               now(), r.storage.written_snapshot().index,
                                               r.storage.written_snapshot().term);
            on_new_leader(r.group, ev.term);
          }
        }
      }
      // 4. Snapshot work: a request sees the state machine BEFORE this
      // Ready's committed entries are applied (raft/ready.h).
      if (rd.snapshot) snapshot_work(n, r, *rd.snapshot);
      if (!r.raft) return;  // an install step crashed the node
      // 5. Apply committed entries, then acknowledge.
      if (!rd.committed.empty()) {
        for (const raft::Entry& e : rd.committed)
          apply(n, r, e);
        r.raft->applied(r.applied, local(n));
        serve_waiting_reads(n, r);
      }
      // 6. Reads and proposals.
      for (raft::ReadResult& rr : rd.reads)
        on_read_result(n, r, rr);
      for (raft::ProposalResult& pr : rd.proposals)
        on_proposal_result(n, r, pr);
    }
    if (r.raft && r.raft->is_leader()) checker_.on_leader(r.group, r.raft->term(), n.id, now());
    if (r.raft && r.raft->quiesced() != r.quiesced) {
      r.quiesced = r.raft->quiesced();
      ++(r.quiesced ? quiesces_ : wakes_);
      if (trace_.enabled()) {
        trace(r.quiesced ? "quiesce" : "wake", {{"node", n.id}, {"group", r.group}});
      }
    }
    if (r.raft) schedule_tick(n, r, now());
  }

  // --- node-level liveness (o_.quiesce) --------------------------------------------
  // Every heartbeat interval while the node runs: one ping to every other
  // node over the simulated network (lost, delayed or blocked like any
  // message), then the peers silent for the timeout are reported to every
  // quiesced replica, as CoreHost does.
  void schedule_liveness(Node& n) {
    const uint64_t inc = n.incarnation;
    sched_.after(SimTime{o_.raft.heartbeat_ms} * kMillisecond, [this, &n, inc] {
      if (!n.up || n.incarnation != inc) return;
      on_node(n, inc, [this, &n] { liveness_tick(n); });
      schedule_liveness(n);
    });
  }

  void liveness_tick(Node& n) {
    for (int i = 1; i <= total_nodes_; ++i) {
      const NodeId to = static_cast<NodeId>(i);
      if (to == n.id || link_blocked(n.id, to) || net_rng_.chance(o_.loss)) continue;
      sched_.after(net_latency(), [this, from = n.id, to] {
        Node& t = node(to);
        if (!t.up || link_blocked(from, to)) return;
        on_node(t, t.incarnation, [this, &t, from] { t.liveness->heard(from, local(t)); });
      });
    }
    const base::TimePoint at = local(n);
    for (NodeId lost : n.liveness->newly_lost(at)) {
      ++liveness_lost_;
      trace("liveness_lost", {{"node", n.id}, {"peer", lost}});
      for (auto& rp : n.replicas) {
        Replica& r = *rp;
        if (!r.raft || !r.raft->quiesced()) continue;
        r.raft->liveness_lost(lost, at);
        drain(n, r);
      }
    }
  }

  // Schedules the completion of the log-lane write just queued (FIFO: each
  // completes after the previous one). `then` runs after it is durable
  // (nullptr: an append or compaction, acknowledged to the core).
  void complete_log_write(Node& n, Replica& r, std::function<void()> then) {
    r.entries_lane_free = std::max(r.entries_lane_free, now()) + disk_latency();
    const uint64_t inc = n.incarnation;
    sched_.at(r.entries_lane_free, [this, &n, &r, inc, then = std::move(then)] {
      on_node(n, inc, [this, &n, &r, then] {
        auto [index, term] = r.storage.complete_entries();
        if (then) {
          release_held(n, r);
          then();
          return;
        }
        if (index > 0) r.raft->entries_persisted(index, term, local(n));
        release_held(n, r);
        drain(n, r);
      });
    });
  }

  // Runs `fn` as node `n` once a snapshot-lane write (file or chunk) is
  // durable; lost if the node crashes first.
  void after_snap_write(Node& n, Replica& r, std::function<void()> fn) {
    r.snap_lane_free = std::max(r.snap_lane_free, now()) + disk_latency();
    const uint64_t inc = n.incarnation;
    sched_.at(r.snap_lane_free, [this, &n, inc, fn = std::move(fn)] { on_node(n, inc, fn); });
  }

  // --- snapshots --------------------------------------------------------------
  void snapshot_work(Node& n, Replica& r, raft::SnapshotWork& sw) {
    if (sw.request) take_snapshot(n, r, *sw.request);
    if (sw.compact_before) {
      r.storage.write_compaction(*sw.compact_before);
      complete_log_write(n, r, nullptr);
    }
    for (const raft::SnapshotSend& ss : sw.sends)
      send_snapshot_chunk(n, r, ss);
    for (raft::SnapshotChunkIn& in : sw.chunks) {
      if (!r.raft) return;
      receive_chunk(n, r, std::move(in));
    }
  }

  // Taking one: the state machine's point-in-time state is captured now
  // (it is exactly at the requested index) and written off the hot path;
  // the core hears of it once the file is durable.
  void take_snapshot(Node& n, Replica& r, const raft::SnapshotMeta& meta) {
    if (r.applied != meta.index) {
      checker_.violation(fmt::format(
          "snapshot request: group {} node {} asked for index {} with the state machine at {}",
          r.group, n.id, meta.index, r.applied));
      return;
    }
    checker_.check_state(r.group, n.id, meta.index, r.kv, "snapshot taken", now());
    SnapshotFile f{meta, r.kv.encode_state(), 0};
    f.digest = base::xxh3_64(f.data.data(), f.data.size(), 0);
    trace("snapshot_take", {{"node", n.id},
                            {"group", r.group},
                            {"index", meta.index},
                            {"term", meta.term},
                            {"membership", raft::to_string(meta.membership)}});
    after_snap_write(n, r, [this, &n, &r, f = std::move(f)]() mutable {
      const raft::SnapshotMeta m = f.meta;
      r.storage.put_file(std::move(f));
      r.storage.set_taken_snapshot(m);
      if (r.installing) r.installing->taken.push_back(m);
      ++snapshots_taken_;
      r.raft->snapshot_taken(m, local(n));
      remove_superseded(r);
      drain(n, r);
    });
  }

  void remove_superseded(Replica& r) {
    std::vector<Index> pinned;
    for (auto& [to, idx] : r.pinned)
      pinned.push_back(idx);
    r.storage.remove_superseded_files(pinned);
  }

  void send_snapshot_chunk(Node& n, Replica& r, const raft::SnapshotSend& ss) {
    if (ss.finished) {
      r.pinned.erase(ss.to);
      r.last_send.erase(ss.to);
      remove_superseded(r);
      return;
    }
    const SnapshotFile* f = r.storage.file(ss.meta.index);
    if (f == nullptr) {
      checker_.violation(fmt::format(
          "snapshot send: group {} node {} must send snapshot {} to {} but has no such file",
          r.group, n.id, ss.meta.index, ss.to));
      return;
    }
    r.pinned[ss.to] = ss.meta.index;
    auto& last = r.last_send[ss.to];
    if (ss.offset > 0 && last == std::make_pair(ss.meta.index, ss.offset)) ++snapshot_resends_;
    last = {ss.meta.index, ss.offset};
    NORI_ASSERT(ss.offset <= f->data.size());
    raft::SnapshotChunk c;
    c.index = ss.meta.index;
    c.index_term = ss.meta.term;
    c.offset = ss.offset;
    c.total_bytes = f->data.size();
    c.digest = f->digest;
    c.last = ss.offset + o_.snapshot_chunk_bytes >= f->data.size();
    c.membership = ss.meta.membership.encode();
    c.data = f->data.substr(ss.offset, o_.snapshot_chunk_bytes);
    ++snapshot_chunks_;
    send(n, raft::Message{r.group, n.id, ss.to, ss.term, raft::SnapshotChunkMsg(std::move(c))});
  }

  // A chunk the core accepted: written (after a disk latency) to the partial
  // file, then acknowledged; the last one is verified and installed.
  void receive_chunk(Node& n, Replica& r, raft::SnapshotChunkIn in) {
    raft::SnapshotChunk& c = in.chunk;
    auto mem = raft::Membership::decode(c.membership);
    if (!mem.ok()) {
      checker_.violation(
          fmt::format("group {} node {}: the core accepted a snapshot chunk with "
                      "an undecodable configuration",
                      r.group, n.id));
      return;
    }
    raft::SnapshotMeta meta{c.index, c.index_term, std::move(*mem)};
    if (c.offset == 0) r.receiving = Receiving{meta, in.term, {}};
    after_snap_write(n, r, [this, &n, &r, meta, term = in.term, c = std::move(c)] {
      // A chunk of a transfer the core has since replaced is dropped.
      if (!r.receiving || !(r.receiving->meta == meta) || r.receiving->leader_term != term ||
          r.receiving->data.size() != c.offset) {
        return;
      }
      r.receiving->data += c.data;
      const uint64_t end = r.receiving->data.size();
      r.raft->snapshot_chunk_written(meta, term, end, local(n));
      if (c.last) {
        std::string data = std::move(r.receiving->data);
        r.receiving.reset();
        if (base::xxh3_64(data.data(), data.size(), 0) != c.digest || end != c.total_bytes) {
          r.raft->snapshot_receive_failed(local(n));
        } else if (!r.installing) {
          start_install(n, r, meta, std::move(data), c.digest);
        }
      }
      drain(n, r);
    });
  }

  // Crashes the installing node at step boundary `step` (1: file durable,
  // 2: reset record durable, 3: state machine restored, 4: acknowledged)
  // when the options say so. True if it crashed.
  bool maybe_crash_in_install(Node& n, Replica& r, int step) {
    // Faults (these crashes included) stop when the quiet phase starts.
    if (o_.install_crash_chance <= 0 || now() >= o_.duration) return false;
    if (o_.install_crash_step != 0 && o_.install_crash_step != step) return false;
    if (!rng_.chance(o_.install_crash_chance)) return false;
    ++install_crashes_[step];
    trace("install_crash", {{"node", n.id}, {"group", r.group}, {"step", step}});
    crash(n, rng_.uniform(50 * kMillisecond, o_.crash_down_max));
    return true;
  }

  // raft/storage.h's install order, each step durable before the next.
  void start_install(Node& n, Replica& r, const raft::SnapshotMeta& meta, std::string data,
                     uint64_t digest) {
    Install in{meta, r.storage.snapshot_meta(), SnapshotFile{meta, std::move(data), digest}, {}};
    r.installing = std::move(in);
    trace("install_start", {{"node", n.id},
                            {"group", r.group},
                            {"index", meta.index},
                            {"term", meta.term},
                            {"membership", raft::to_string(meta.membership)}});
    if (o_.unsafe_install_reset_before_file_for_testing) {
      install_reset(
          n, r, [this, &n, &r] { install_file(n, r, [this, &n, &r] { install_restore(n, r); }); });
    } else {
      install_file(
          n, r, [this, &n, &r] { install_reset(n, r, [this, &n, &r] { install_restore(n, r); }); });
    }
  }

  // Step 1: the file (temporary file, sync, rename, directory sync).
  void install_file(Node& n, Replica& r, std::function<void()> next) {
    after_snap_write(n, r, [this, &n, &r, next = std::move(next)] {
      r.storage.put_file(r.installing->file);
      if (maybe_crash_in_install(n, r, 1)) return;
      next();
    });
  }

  // Step 2: the record resetting the log to the snapshot.
  void install_reset(Node& n, Replica& r, std::function<void()> next) {
    r.storage.write_reset(r.installing->meta);
    complete_log_write(n, r, [this, &n, &r, next = std::move(next)] {
      remove_superseded(r);
      if (maybe_crash_in_install(n, r, 2)) return;
      next();
    });
  }

  // Steps 3 and 4: the state machine restored, then the core told (which
  // acknowledges to the leader). Nothing runs between them: the core could
  // otherwise hand out entries to apply on top of the restored state.
  void install_restore(Node& n, Replica& r) {
    const Install& in = *r.installing;
    auto kv = KvStore::decode_state(in.file.data);
    NORI_ASSERT(kv.ok(), "a verified snapshot file does not decode");
    r.kv = std::move(*kv);
    r.applied = in.meta.index;
    checker_.on_restore(r.group, n.id, in.meta.index, r.kv, "snapshot install", now());
    if (maybe_crash_in_install(n, r, 3)) return;
    r.raft->snapshot_installed(in.meta, local(n));
    serve_waiting_reads(n, r);
    ++installs_;
    trace("install_done", {{"node", n.id}, {"group", r.group}, {"index", in.meta.index}});
    drain(n, r);
    if (!n.up) return;
    if (maybe_crash_in_install(n, r, 4)) return;
    r.installing.reset();
  }

  void release_held(Node& n, Replica& r) {
    if (r.held.empty()) return;
    const uint64_t hs = r.storage.durable_hard_state_seq();
    const uint64_t es = r.storage.durable_entries_seq();
    // Stable: messages keep their order.
    std::vector<HeldMessage> keep;
    for (HeldMessage& h : r.held) {
      if (h.hs_seq <= hs && h.entries_seq <= es) {
        send(n, std::move(h.msg));
      } else {
        keep.push_back(std::move(h));
      }
    }
    r.held.swap(keep);
  }

  void schedule_tick(Node& n, Replica& r, SimTime not_before) {
    // At least 50 us ahead: a core asking for a tick "now" again and again
    // must not stall simulated time.
    // A non-voter asks for no tick at all (TimePoint::max()); it still gets
    // one a second, which is harmless and keeps its timers honest.
    const base::TimePoint next = r.raft->next_tick();
    SimTime at = next == base::TimePoint::max()
                     ? not_before + kSecond
                     : std::max(n.clock.real_at(next, not_before), not_before + 50'000);
    if (r.tick_at >= 0 && r.tick_at <= at) return;
    r.tick_at = at;
    const uint64_t inc = n.incarnation;
    sched_.at(at, [this, &n, &r, inc, at] {
      if (!n.up || n.incarnation != inc || r.tick_at != at) return;
      r.tick_at = -1;
      on_node(n, inc, [this, &n, &r] {
        r.raft->tick(local(n));
        drain(n, r);
      });
    });
  }

  void apply(Node& n, Replica& r, const raft::Entry& e) {
    // A leader applies what it committed before any follower learns of it,
    // so the first apply by a leader names the term that committed an entry.
    checker_.on_apply(r.group, n.id, e, r.raft->is_leader() ? r.raft->term() : 0, now());
    if (e.type == raft::EntryType::kNormal && !e.data.empty()) {
      auto cmd = decode_command(e.data);
      if (!cmd) {
        checker_.violation(fmt::format("group {} node {} applied undecodable entry {}: {}", r.group,
                                       n.id, e.index, cmd.error().to_string()));
      } else {
        r.kv.apply(*cmd);
        if (trace_.enabled()) {
          trace("apply", {{"node", n.id},
                          {"group", r.group},
                          {"index", e.index},
                          {"term", e.term},
                          {"client", cmd->client},
                          {"seq", cmd->seq}});
        }
      }
    }
    r.applied = e.index;
    committed_max_[r.group] = std::max(committed_max_[r.group], e.index);
  }

  // --- network -----------------------------------------------------------------------
  bool link_blocked(NodeId from, NodeId to) const { return blocked_[from][to] > 0; }

  void send(Node& from, raft::Message m) {
    const NodeId to = m.to;
    if (to < 1 || to > static_cast<NodeId>(total_nodes_) || to == from.id) {
      checker_.violation(fmt::format("node {} sent a message to invalid node {}", from.id, to));
      return;
    }
    const bool trace_on = trace_.enabled();
    if (link_blocked(from.id, to) || net_rng_.chance(o_.loss)) {
      if (trace_on) trace("drop", msg_json(m));
      return;
    }
    const int copies = net_rng_.chance(o_.duplicate) ? 2 : 1;
    for (int i = 0; i < copies; ++i) {
      const SimTime d = net_latency();
      if (trace_on) {
        auto j = msg_json(m);
        j["delay_ms"] = ms(d);
        if (i) j["duplicate"] = true;
        trace("send", std::move(j));
      }
      raft::Message copy = (i + 1 == copies) ? std::move(m) : m;
      sched_.after(d, [this, msg = std::move(copy)]() mutable { deliver(std::move(msg)); });
    }
  }

  void deliver(raft::Message m) {
    Node& to = node(m.to);
    if (!to.up || link_blocked(m.from, m.to)) {
      if (trace_.enabled()) trace("drop", msg_json(m));
      return;
    }
    on_node(to, to.incarnation, [this, &to, m = std::move(m)]() mutable {
      if (trace_.enabled()) trace("deliver", msg_json(m));
      to.liveness->heard(m.from, local(to));
      Replica& r = replica(to, m.group);
      r.raft->step(std::move(m), local(to));
      drain(to, r);
    });
  }

  static nlohmann::json msg_json(const raft::Message& m) {
    return {{"type", raft::to_string(m.type())},
            {"group", m.group},
            {"from", m.from},
            {"to", m.to},
            {"term", m.term}};
  }

  // --- faults ----------------------------------------------------------------------
  void schedule_fault(SimTime until) {
    SimTime d = static_cast<SimTime>(rng_.exponential(static_cast<double>(o_.fault_interval_mean)));
    if (now() + d >= until) return;
    sched_.after(d, [this, until] {
      inject_fault();
      schedule_fault(until);
    });
  }

  Node* random_up_node() {
    std::vector<Node*> up;
    for (auto& n : nodes_) {
      if (n->up) up.push_back(n.get());
    }
    if (up.empty()) return nullptr;
    return up[rng_.uniform(0, static_cast<int64_t>(up.size()) - 1)];
  }

  NodeId leader_of(GroupId g) {
    NodeId best = 0;
    Term best_term = 0;
    for (auto& n : nodes_) {
      if (!n->up) continue;
      Replica& r = replica(*n, g);
      if (r.raft && r.raft->is_leader() && r.raft->term() >= best_term) {
        best = n->id;
        best_term = r.raft->term();
      }
    }
    return best;
  }

  void inject_fault() {
    const int kind = o_.lease_hazard ? 10 : static_cast<int>(rng_.uniform(0, 11));
    switch (kind) {
      case 0:
      case 1: {  // crash a node (a leader half of the time)
        Node* n = random_up_node();
        if (kind == 1) {
          NodeId l = leader_of(static_cast<GroupId>(rng_.uniform(1, o_.groups)));
          if (l && node(l).up) n = &node(l);
        }
        if (n) crash(*n, rng_.uniform(50 * kMillisecond, o_.crash_down_max));
        break;
      }
      case 2:
      case 3: {  // pause a node (a leader half of the time)
        Node* n = random_up_node();
        if (kind == 3) {
          NodeId l = leader_of(static_cast<GroupId>(rng_.uniform(1, o_.groups)));
          if (l) n = &node(l);
        }
        if (n) pause(*n, rng_.uniform(10 * kMillisecond, o_.pause_max));
        break;
      }
      case 4:
      case 5: {  // symmetric split into two sides
        std::vector<NodeId> side;
        for (int i = 1; i <= total_nodes_; ++i) {
          if (rng_.chance(0.4)) side.push_back(static_cast<NodeId>(i));
        }
        if (side.empty() || side.size() == static_cast<size_t>(total_nodes_)) break;
        std::vector<std::pair<NodeId, NodeId>> links;
        for (int a = 1; a <= total_nodes_; ++a) {
          for (int b = 1; b <= total_nodes_; ++b) {
            bool ina = std::find(side.begin(), side.end(), a) != side.end();
            bool inb = std::find(side.begin(), side.end(), b) != side.end();
            if (ina != inb) links.emplace_back(a, b);
          }
        }
        partition(std::move(links), "split");
        break;
      }
      case 6: {  // isolate a leader both ways (clients still reach it)
        NodeId l = leader_of(static_cast<GroupId>(rng_.uniform(1, o_.groups)));
        if (!l) break;
        partition(isolate_links(l, true, true), "isolate-leader");
        break;
      }
      case 7: {  // asymmetric: a node can send but not receive, or the reverse
        NodeId x = static_cast<NodeId>(rng_.uniform(1, total_nodes_));
        bool out = rng_.chance(0.5);
        partition(isolate_links(x, out, !out), out ? "mute-outgoing" : "deaf-incoming");
        break;
      }
      case 8: {  // a single one-way link
        NodeId a = static_cast<NodeId>(rng_.uniform(1, total_nodes_));
        NodeId b = static_cast<NodeId>(rng_.uniform(1, total_nodes_));
        if (a != b) partition({{a, b}}, "one-way");
        break;
      }
      case 9: {  // a clock's drift changes
        Node* n = random_up_node();
        if (n) set_drift(*n);
        break;
      }
      case 11: {  // a planned leadership transfer (its TimeoutNow may be
                  // delayed, duplicated or lost like any message)
        const GroupId g = static_cast<GroupId>(rng_.uniform(1, o_.groups));
        const NodeId l = leader_of(g);
        if (!l || node(l).paused_until > now()) break;
        NodeId target = static_cast<NodeId>(rng_.uniform(1, total_nodes_ - 1));
        if (target >= l) ++target;
        Node& ln = node(l);
        Replica& r = replica(ln, g);
        base::Status st = r.raft->transfer_leadership(target, local(ln));
        ++transfers_;
        trace("transfer", {{"group", g}, {"from", l}, {"to", target}, {"ok", st.ok()}});
        drain(ln, r);
        break;
      }
      case 10: {  // the classic lease hazard: a leader stops (GC pause, VM
                  // migration) while cut off from its peers, then resumes with
                  // client reads queued and its lease apparently still valid
        NodeId l = leader_of(static_cast<GroupId>(rng_.uniform(1, o_.groups)));
        if (!l || node(l).paused_until > now()) break;
        // Up to well past the lease (2 s by default): a stop shorter than
        // the lease tests the new leader's wait, a longer one the old
        // leader's clock check.
        const SimTime stop = rng_.uniform(300, 2 * o_.raft.lease_ms) * kMillisecond;
        pause(node(l), stop);
        partition(isolate_links(l, true, true), "isolate-and-pause-leader",
                  stop + rng_.uniform(0, 1000) * kMillisecond);
        break;
      }
    }
  }

  std::vector<std::pair<NodeId, NodeId>> isolate_links(NodeId x, bool outgoing, bool incoming) {
    std::vector<std::pair<NodeId, NodeId>> links;
    for (int i = 1; i <= total_nodes_; ++i) {
      if (static_cast<NodeId>(i) == x) continue;
      if (outgoing) links.emplace_back(x, i);
      if (incoming) links.emplace_back(i, x);
    }
    return links;
  }

  void partition(std::vector<std::pair<NodeId, NodeId>> links, const char* what,
                 SimTime heal_after = -1) {
    ++partitions_;
    if (heal_after < 0) heal_after = rng_.uniform(100 * kMillisecond, o_.partition_max);
    nlohmann::json jl = nlohmann::json::array();
    for (auto [a, b] : links) {
      ++blocked_[a][b];
      jl.push_back({a, b});
    }
    trace("partition", {{"kind", what}, {"links", jl}, {"heal_ms", ms(heal_after)}});
    const uint64_t epoch = heal_epoch_;
    sched_.after(heal_after, [this, links = std::move(links), epoch] {
      if (epoch != heal_epoch_) return;  // already healed wholesale
      for (auto [a, b] : links)
        --blocked_[a][b];
      trace("heal", {{"links", links.size()}});
    });
  }

  void heal_everything() {
    ++heal_epoch_;
    for (auto& row : blocked_)
      std::fill(row.begin(), row.end(), 0);
    trace("heal", {{"all", true}});
  }

  void set_drift(Node& n) {
    n.clock.set_drift(now(), draw_drift());
    trace("drift", {{"node", n.id}, {"drift_ppm", n.clock.drift_ppm()}});
  }

  void schedule_drift_change() {
    if (o_.drift_change_mean <= 0) return;
    SimTime d = static_cast<SimTime>(rng_.exponential(static_cast<double>(o_.drift_change_mean)));
    sched_.after(d, [this] {
      set_drift(*nodes_[rng_.uniform(0, total_nodes_ - 1)]);
      schedule_drift_change();
    });
  }

  void periodic_check() {
    for (int g = 1; g <= o_.groups; ++g)
      check_logs(static_cast<GroupId>(g));
    sched_.after(kSecond, [this] { periodic_check(); });
  }

  void check_logs(GroupId g) {
    std::vector<std::pair<NodeId, const std::vector<raft::Entry>*>> written, durable;
    for (auto& n : nodes_) {
      Replica& r = replica(*n, g);
      written.emplace_back(n->id, &r.storage.written_log());
      durable.emplace_back(n->id, &r.storage.durable_log());
    }
    checker_.check_log_matching(g, written, "written", now());
    checker_.check_log_matching(g, durable, "durable", now());
  }

  // --- clients ---------------------------------------------------------------------
  void next_op(Client& c) {
    if (now() >= clients_until_) return;
    c.busy = true;
    c.attempt = 0;
    c.deadline = now() + o_.op_timeout;
    lincheck::Operation& op = c.op;
    op = lincheck::Operation();
    op.client = c.id;
    op.key = fmt::format("k{}", rng_.uniform(0, o_.keys - 1));
    op.call_ns = now();
    if (rng_.chance(o_.read_fraction)) {
      op.kind = lincheck::OpKind::kGet;
      if (rng_.chance(o_.stale_read_fraction)) {
        c.mode = raft::ReadMode::kStaleNoGuarantee;
      } else {
        c.mode = rng_.chance(o_.lease_read_fraction) ? raft::ReadMode::kLease
                                                     : raft::ReadMode::kReadIndex;
      }
    } else {
      op.kind = rng_.chance(0.5) ? lincheck::OpKind::kPut : lincheck::OpKind::kAppend;
      // Unique, self-delimiting values: a value shows up in a read only if
      // that very write took effect (the checker's pruning relies on it
      // being precise, not for soundness but for speed).
      op.value =
          fmt::format("{}{}.{};", op.kind == lincheck::OpKind::kPut ? 'p' : 'a', c.id, ++c.seq);
    }
    if (trace_.enabled()) {
      trace("call", {{"client", c.id},
                     {"group", c.group},
                     {"op", lincheck::to_string(op.kind)},
                     {"key", op.key},
                     {"value", op.value},
                     {"mode", raft::to_string(c.mode)}});
    }
    const uint64_t seq = ++op_seq_;
    c.op_seq = seq;
    sched_.at(c.deadline, [this, &c, seq] {
      if (!c.busy || c.op_seq != seq) return;
      // The node of the last attempt did not answer in time: it may be
      // stopped, cut off, retired, or the request or reply was lost. If it
      // was the leader, the next operation goes to the next member, which
      // names the leader (ClientRouter).
      if (o_.unsafe_clients_guess_at_random_for_testing) {
        c.guess = 0;
      } else {
        c.router.on_silent(c.last_target);
      }
      finish(c, Outcome::kUnknown, "");
    });
    attempt(c);
  }

  void attempt(Client& c) {
    ++c.attempt;
    NodeId target = 0;
    const char* route = "probe";
    if (o_.unsafe_clients_guess_at_random_for_testing) {
      // The client before seed 2873 (draw for draw): any timeout forgets
      // the leader, then it guesses among every node id.
      target = c.guess;
      if (target == 0 || rng_.chance(kClientProbeChance)) {
        target = static_cast<NodeId>(rng_.uniform(1, total_nodes_));
        route = "guess";
      } else {
        route = "leader";
      }
    } else if (rng_.chance(kClientProbeChance)) {
      // A probe: any node id, member or not. It exercises what a leader-
      // following client never would (not-leader refusals from spares and
      // removed nodes, stale reads there, a deposed leader that still
      // believes it leads) and costs the client only this attempt: the
      // leader it knows is kept unless the probe's answer says otherwise.
      target = static_cast<NodeId>(rng_.uniform(1, total_nodes_));
    } else {
      const ClientRouter::Target t = c.router.next(static_cast<NodeId>(total_nodes_));
      target = t.node;
      route = t.route == ClientRouter::Route::kLeader   ? "leader"
              : t.route == ClientRouter::Route::kMember ? "member"
                                                        : "any-id";
    }
    c.last_target = target;
    ClientRequest req;
    req.client = c.index;
    req.op_seq = c.op_seq;
    req.attempt = c.attempt;
    req.kind = c.op.kind;
    req.mode = c.mode;
    req.key = c.op.key;
    req.value = c.op.value;
    req.client_id = c.id;
    req.command_seq = c.seq;
    req.deadline = c.deadline;
    if (trace_.enabled()) {
      trace("attempt",
            {{"client", c.id}, {"attempt", req.attempt}, {"node", target}, {"route", route}});
    }
    if (net_rng_.chance(o_.loss)) return;  // the request is lost: the client times out
    sched_.after(net_latency(), [this, target, req = std::move(req)] {
      Node& n = node(target);
      on_node(n, n.incarnation, [this, &n, req] { handle_request(n, req); });
    });
  }

  // At the node: start the operation in the core.
  void handle_request(Node& n, const ClientRequest& req) {
    Replica& r = replica(n, clients_[req.client].group);
    const uint64_t id = ++request_ids_;
    if (req.kind == lincheck::OpKind::kGet) {
      base::Status s = r.raft->read(req.mode, id, local(n));
      if (!s.ok()) {
        reply(req, Outcome::kFailCertain, "", answer(n, r, &s.error()));
      } else {
        ClientRequest& stored = r.reads[id] = req;
        stored.arrived = now();
        stored.arrival_term = r.raft->term();
      }
    } else {
      KvCommand cmd{req.kind == lincheck::OpKind::kPut ? KvOp::kPut : KvOp::kAppend, req.client_id,
                    req.command_seq, req.key, req.value};
      // The core's deadline is the client's, carried over on this node's clock.
      const SimTime left = std::max<SimTime>(req.deadline - now(), kMillisecond);
      auto idx = r.raft->propose(encode(cmd), id, local(n), local(n) + base::Duration(left));
      if (!idx.ok()) {
        NORI_ASSERT(!idx.error().may_have_taken_effect(),
                    "propose returned an outcome-unknown error synchronously");
        reply(req, Outcome::kFailCertain, "", answer(n, r, &idx.error()));
      } else {
        r.proposals[id] = req;
        if (trace_.enabled()) {
          trace("propose", {{"client", req.client_id},
                            {"attempt", req.attempt},
                            {"node", n.id},
                            {"index", *idx},
                            {"term", r.raft->term()}});
        }
      }
    }
    drain(n, r);
  }

  void on_read_result(Node& n, Replica& r, const raft::ReadResult& rr) {
    auto it = r.reads.find(rr.request_id);
    if (it == r.reads.end()) return;
    ClientRequest req = it->second;
    r.reads.erase(it);
    if (!rr.granted()) {
      reply(req, Outcome::kFailCertain, "", answer(n, r, &*rr.error));
      return;
    }
    if (rr.via_lease) {
      NORI_ASSERT(rr.mode != raft::ReadMode::kStaleNoGuarantee);
      // The core checks the lease when the read arrives (Raft::read); the
      // grant may come later, once the state machine caught up. Exclusion is
      // about the moment the lease was relied on.
      checker_.on_lease_read(r.group, n.id, req.arrival_term, req.arrived);
      trace("lease_read",
            {{"node", n.id}, {"group", r.group}, {"term", r.raft->term()}, {"index", rr.index}});
    }
    if (rr.mode == raft::ReadMode::kLease) {
      rr.via_lease ? ++lease_reads_ : ++read_index_reads_;
    } else if (rr.mode == raft::ReadMode::kReadIndex) {
      ++read_index_reads_;
    }
    if (r.applied >= rr.index) {
      serve_read(n, r, req);
    } else {
      r.reads_waiting_apply.emplace_back(rr.index, req);
    }
  }

  void serve_waiting_reads(Node& n, Replica& r) {
    if (r.reads_waiting_apply.empty()) return;
    std::vector<std::pair<Index, ClientRequest>> keep;
    for (auto& [index, req] : r.reads_waiting_apply) {
      if (r.applied >= index) {
        serve_read(n, r, req);
      } else {
        keep.emplace_back(index, req);
      }
    }
    r.reads_waiting_apply.swap(keep);
  }

  void serve_read(Node& n, Replica& r, const ClientRequest& req) {
    // A linearizable read is served only by a leader (granted in its term);
    // a stale read by anyone, so it says nothing about who leads.
    Answer a = answer(n, r, nullptr);
    a.served = req.mode != raft::ReadMode::kStaleNoGuarantee;
    reply(req, Outcome::kOk, r.kv.get(req.key), std::move(a));
  }

  void on_proposal_result(Node& n, Replica& r, const raft::ProposalResult& pr) {
    auto it = r.proposals.find(pr.proposal_id);
    if (it == r.proposals.end()) return;
    ClientRequest req = it->second;
    r.proposals.erase(it);
    if (pr.ok()) {
      on_write_committed(r.group, pr.term);
      Answer a = answer(n, r, nullptr);
      a.served = true;
      reply(req, Outcome::kOk, "", std::move(a));
    } else {
      reply(req, pr.error->may_have_taken_effect() ? Outcome::kUnknown : Outcome::kFailCertain, "",
            answer(n, r, &*pr.error));
    }
  }

  // What node `n` tells a client about the group besides the outcome: its
  // configuration, and for a refusal (`error`), whether it does not lead and
  // whom it names. Every reply carries it, as a real server's would (the
  // configuration is a few ids).
  Answer answer(const Node& n, const Replica& r, const base::Error* error) {
    Answer a;
    a.from = n.id;
    const raft::Membership& m = r.raft->membership();
    a.membership_index = r.raft->membership_index();
    a.members = m.voters;
    a.members.insert(a.members.end(), m.voters_outgoing.begin(), m.voters_outgoing.end());
    a.members.insert(a.members.end(), m.learners.begin(), m.learners.end());
    if (error != nullptr) {
      a.hint = error->hint();
      // An outcome-unknown proposal names a leader only when leadership was
      // lost (raft.cc fail_pending); one that merely ran out of time comes
      // from a node that still leads.
      a.not_leader = error->kind() == base::ErrorKind::kNotLeader ||
                     (error->kind() == base::ErrorKind::kOutcomeUnknown && a.hint != 0);
    }
    return a;
  }

  // The node's reply travels back; the client acts on it only if it still
  // waits for this very attempt of this very operation.
  void reply(const ClientRequest& req, Outcome outcome, std::string value, Answer a) {
    if (trace_.enabled()) {
      trace("reply", {{"client", req.client_id},
                      {"attempt", req.attempt},
                      {"outcome", static_cast<int>(outcome)},
                      {"hint", a.hint}});
    }
    if (net_rng_.chance(o_.loss)) return;
    Client& c = clients_[req.client];
    const uint64_t seq = req.op_seq, att = req.attempt;
    auto current = [&c, seq, att] { return c.busy && c.op_seq == seq && c.attempt == att; };
    sched_.after(net_latency(), [this, &c, current, outcome, value = std::move(value),
                                 a = std::move(a)]() mutable {
      if (!current()) return;
      if (o_.unsafe_clients_guess_at_random_for_testing) {
        if (outcome == Outcome::kFailCertain) c.guess = a.hint;
      } else {
        c.router.on_reply(a.from, a.served, a.not_leader, a.hint);
        c.router.on_view(a.membership_index, std::move(a.members), a.served);
      }
      if (outcome == Outcome::kFailCertain) {
        // Certainly no effect: safe to retry, where the router now points
        // (the named leader, the same leader after "busy", or the next
        // member).
        const SimTime backoff = rng_.uniform(5, 40) * kMillisecond;
        if (now() + backoff < c.deadline) {
          sched_.after(backoff, [this, &c, current] {
            if (current()) attempt(c);
          });
        } else {
          finish(c, Outcome::kFailCertain, "");
        }
        return;
      }
      finish(c, outcome, value);
    });
  }

  void finish(Client& c, Outcome outcome, const std::string& value) {
    c.busy = false;
    lincheck::Operation op = c.op;
    op.return_ns = now();
    op.status = outcome == Outcome::kOk        ? lincheck::OpStatus::kOk
                : outcome == Outcome::kUnknown ? lincheck::OpStatus::kInfo
                                               : lincheck::OpStatus::kFail;
    if (op.kind == lincheck::OpKind::kGet && op.status == lincheck::OpStatus::kOk) {
      op.output = value;
    }
    if (trace_.enabled()) {
      trace("return", {{"client", c.id},
                       {"group", c.group},
                       {"status", lincheck::to_string(op.status)},
                       {"output", op.output}});
    }
    ++client_ops_;
    if (op.status == lincheck::OpStatus::kOk) ++ok_ops_;
    if (op.status == lincheck::OpStatus::kFail) ++failed_ops_;
    if (op.status == lincheck::OpStatus::kInfo) ++info_ops_;
    if (op.kind == lincheck::OpKind::kGet && c.mode == raft::ReadMode::kStaleNoGuarantee) {
      ++stale_reads_;  // no guarantee: not part of the checked history
    } else {
      histories_[c.group - 1].push_back(std::move(op));
    }
    const uint64_t seq = c.op_seq;
    sched_.after(rng_.uniform(0, o_.think_max), [this, &c, seq] {
      if (c.op_seq == seq && !c.busy) next_op(c);
    });
  }

  // --- election storm ---------------------------------------------------------------
  struct StormRound {
    Term old_term = 0;
    NodeId old_leader = 0;
    SimTime started = 0;
    bool leader_seen = false;
    bool write_seen = false;
  };

  void storm_poll() {
    if (now() >= o_.duration) return;
    sched_.after(10 * kMillisecond, [this] { storm_poll(); });
    if (storm_round_ && (!storm_round_->leader_seen || !storm_round_->write_seen)) {
      if (now() - storm_round_->started > 8 * kSecond) {
        checker_.violation(fmt::format(
            "storm: no new leader with a committed write within 8 s of disrupting node {} "
            "(term {}) at {:.3f} ms",
            storm_round_->old_leader, storm_round_->old_term, ms(storm_round_->started)));
        storm_round_.reset();
      }
      return;
    }
    if (storm_rounds_done_ >= o_.storm_rounds) return;
    // Disrupt only a settled leader: one that has committed a client write.
    const NodeId l = leader_of(1);
    if (!l || !write_committed_in_term_.count(replica(node(l), 1).raft->term())) return;
    if (storm_settle_until_ == 0) {
      storm_settle_until_ = now() + rng_.uniform(100, 600) * kMillisecond;
      return;
    }
    if (now() < storm_settle_until_) return;
    storm_settle_until_ = 0;
    Node& ln = node(l);
    StormRound round;
    round.old_term = replica(ln, 1).raft->term();
    round.old_leader = l;
    round.started = now();
    storm_round_ = round;
    ++storm_rounds_done_;
    if (storm_rounds_done_ % 2 == 1) {
      crash(ln, rng_.uniform(300, 2000) * kMillisecond);
    } else {
      partition(isolate_links(l, true, true), "storm-isolate",
                rng_.uniform(1500, 3000) * kMillisecond);
    }
  }

  void on_new_leader(GroupId g, Term t) {
    if (!storm_round_ || g != 1 || storm_round_->leader_seen) return;
    if (t > storm_round_->old_term) {
      storm_round_->leader_seen = true;
      time_to_leader_.samples_ms.push_back(ms(now() - storm_round_->started));
    }
  }

  void on_write_committed(GroupId g, Term t) {
    if (now() >= o_.duration) progress_after_faults_.insert(g);
    if (g == 1) write_committed_in_term_.insert(t);
    if (!storm_round_ || g != 1 || storm_round_->write_seen) return;
    if (t > storm_round_->old_term) {
      storm_round_->write_seen = true;
      time_to_write_.samples_ms.push_back(ms(now() - storm_round_->started));
    }
  }

  // --- membership changes ---------------------------------------------------------
  struct ChangeState {
    SimTime started = 0;    // a change of this group seen in progress since (0: none)
    NodeId replace_in = 0;  // replacing replace_out by replace_in: added, not yet promoted
    NodeId replace_out = 0;
    NodeId retry_remove = 0;   // a leader removal that handed leadership over first
    std::set<NodeId> removed;  // removed by the driver, not yet judged for a wipe
  };

  // New random changes arrive while faults run (exponential gaps); a
  // housekeeping pass every 250 ms, until 2 s before the end, abandons stuck
  // changes, retries leader removals that handed over first and finishes
  // replacements.
  void schedule_membership_change(SimTime until) {
    if (!o_.random_changes) return;
    const SimTime d =
        static_cast<SimTime>(rng_.exponential(static_cast<double>(o_.change_interval_mean)));
    if (now() + d >= until) return;
    sched_.after(d, [this, until] {
      membership_step(true);
      schedule_membership_change(until);
    });
  }

  void schedule_membership_housekeeping() {
    const SimTime d = 250 * kMillisecond;
    if (now() + d >= o_.duration + o_.quiet - 2 * kSecond) return;
    sched_.after(d, [this] {
      membership_step(false);
      schedule_membership_housekeeping();
    });
  }

  // Whether `x` is in the configuration of any group (as its leader, or
  // any up replica if there is none, sees it).
  bool member_anywhere(NodeId x) {
    for (int g = 1; g <= o_.groups; ++g) {
      const GroupId gid = static_cast<GroupId>(g);
      const NodeId l = leader_of(gid);
      if (l) {
        if (replica(node(l), gid).raft->membership().contains(x)) return true;
        continue;
      }
      for (auto& n : nodes_) {
        Replica& r = replica(*n, gid);
        if (n->up && r.raft && r.raft->membership().contains(x)) return true;
      }
    }
    return false;
  }

  NodeId pick(const std::vector<NodeId>& v) {
    return v[static_cast<size_t>(rng_.uniform(0, static_cast<int64_t>(v.size()) - 1))];
  }

  void membership_step(bool allow_new) {
    const GroupId g = static_cast<GroupId>(rng_.uniform(1, o_.groups));
    const NodeId l = leader_of(g);
    if (!l || node(l).paused_until > now()) return;
    Node& ln = node(l);
    Replica& r = replica(ln, g);
    raft::Raft& core = *r.raft;
    const raft::Membership m = core.membership();
    ChangeState& st = changes_[g];
    auto note = [&](const char* what, NodeId who, const base::Result<Index>& res) {
      trace("member_change", {{"group", g},
                              {"leader", l},
                              {"op", what},
                              {"node", who},
                              {"ok", res.ok()},
                              {"error", res.ok() ? "" : res.error().to_string()},
                              {"membership", raft::to_string(m)}});
      if (res.ok()) st.started = now();
    };
    if (core.member_change_in_progress()) {
      if (st.started == 0) st.started = now();  // one a previous leader started
      if (now() - st.started >= o_.change_stuck_after) {
        auto res = core.abandon_member_change(local(ln));
        note("abandon", 0, res);
        if (res.ok()) ++abandons_;
        drain(ln, r);
      }
      return;
    }
    if (st.started != 0) {
      ++changes_completed_;
      st.started = 0;
    }
    // Removed nodes keep running; some, once a member of no group, are
    // decommissioned and replaced by a new machine with a new id.
    for (auto it = st.removed.begin(); it != st.removed.end();) {
      const NodeId x = *it;
      if (m.contains(x)) {
        it = st.removed.erase(it);  // the removal was undone
        continue;
      }
      if (core.membership_index() > core.commit_index()) break;
      it = st.removed.erase(it);
      // A reimage takes a node away: a fault, so only while faults run.
      if (!allow_new || !rng_.chance(o_.wipe_removed_fraction)) continue;
      Node& xn = node(x);
      if (xn.retired || member_anywhere(x)) continue;
      reimage(xn);
    }
    // Finish a leader removal or a replacement.
    if (st.retry_remove && m.is_voter(st.retry_remove) && m.voters.size() > 1) {
      const NodeId x = st.retry_remove;
      auto res = core.remove_member(x, local(ln));
      note("remove-leader-retry", x, res);
      if (res.ok()) {
        ++removes_;
        st.removed.insert(x);
        st.retry_remove = 0;
      }
      drain(ln, r);
      return;
    }
    st.retry_remove = 0;
    if (st.replace_in) {
      if (!m.contains(st.replace_in) || !m.is_voter(st.replace_out)) {
        st.replace_in = st.replace_out = 0;  // the add was abandoned, or the old one left
      } else if (m.is_voter(st.replace_in)) {
        const NodeId x = st.replace_out;
        st.replace_in = st.replace_out = 0;
        remove(ln, r, x, "replace-remove");
        return;
      } else {
        return;  // still a learner
      }
    }
    if (!allow_new) return;
    std::vector<NodeId> outside, others;
    for (int i = 1; i <= total_nodes_; ++i) {
      const NodeId id = static_cast<NodeId>(i);
      if (!m.contains(id) && !node(id).retired) outside.push_back(id);
    }
    for (NodeId v : m.voters) {
      if (v != l) others.push_back(v);
    }
    const double x = rng_.unit();
    const size_t members = m.voters.size() + m.learners.size();
    if (x < 0.35) {
      if (outside.empty() || members >= 7) return;
      const NodeId y = pick(outside);
      auto res = core.add_member(y, local(ln));
      note("add", y, res);
      if (res.ok()) ++adds_;
      drain(ln, r);
    } else if (x < 0.7) {
      if (!m.learners.empty() && rng_.chance(0.3)) {
        remove(ln, r, pick(m.learners), "remove-learner");
      } else if (m.voters.size() > 2) {
        const bool leader = others.empty() || rng_.chance(o_.remove_leader_fraction);
        remove(ln, r, leader ? l : pick(others), "remove");
      }
    } else if (x < 0.9) {
      if (outside.empty() || members >= 7) return;
      const NodeId out =
          others.empty() || rng_.chance(o_.remove_leader_fraction) ? l : pick(others);
      const NodeId in = pick(outside);
      auto res = core.add_member(in, local(ln));
      note("replace-add", in, res);
      if (res.ok()) {
        ++replaces_;
        st.replace_in = in;
        st.replace_out = out;
      }
      drain(ln, r);
    }
  }

  void remove(Node& ln, Replica& r, NodeId x, const char* what) {
    ChangeState& st = changes_[r.group];
    const raft::Membership m = r.raft->membership();
    auto res = r.raft->remove_member(x, local(ln));
    trace("member_change", {{"group", r.group},
                            {"leader", ln.id},
                            {"op", what},
                            {"node", x},
                            {"ok", res.ok()},
                            {"error", res.ok() ? "" : res.error().to_string()},
                            {"membership", raft::to_string(m)}});
    if (res.ok()) {
      st.started = now();
      ++removes_;
      if (x == ln.id) ++leader_removes_;
      st.removed.insert(x);
    } else if (x == ln.id && res.error().kind() == base::ErrorKind::kNotLeader) {
      // Leadership is being handed over first: retry at the next leader.
      ++leader_removes_;
      st.retry_remove = x;
    }
    drain(ln, r);
  }

  // --- scripted steps --------------------------------------------------------------
  void run_script_step(size_t i) {
    const ScriptStep& st = o_.script[i];
    NodeId x = st.node;
    const NodeId l = leader_of(1);
    if (st.who == ScriptStep::Who::kLeader) x = l;
    if (st.who == ScriptStep::Who::kPrevious) x = i > 0 ? script_nodes_[i - 1] : 0;
    if (st.who == ScriptStep::Who::kFollower || st.who == ScriptStep::Who::kOtherFollower) {
      const NodeId skip =
          st.who == ScriptStep::Who::kOtherFollower && i > 0 ? script_nodes_[i - 1] : 0;
      x = 0;
      if (l) {
        for (NodeId v : replica(node(l), 1).raft->membership().voters) {
          if (v != l && v != skip && node(v).up) {
            x = v;
            break;
          }
        }
      }
    }
    script_nodes_[i] = x;
    trace("script", {{"step", i}, {"op", static_cast<int>(st.op)}, {"node", x}});
    if (x == 0) return;
    switch (st.op) {
      case ScriptStep::Op::kCrash:
        if (node(x).up) crash(node(x), st.length);
        break;
      case ScriptStep::Op::kIsolate:
        partition(isolate_links(x, true, true), "script-isolate", st.length);
        break;
      case ScriptStep::Op::kReimage:
        // Only a node that is in no group: its id is retired for good.
        if (!node(x).retired && !member_anywhere(x)) reimage(node(x));
        break;
      case ScriptStep::Op::kAdd:
      case ScriptStep::Op::kRemove: {
        if (!l) break;
        Replica& r = replica(node(l), 1);
        if (st.op == ScriptStep::Op::kRemove) {
          remove(node(l), r, x, "script-remove");
        } else {
          auto res = r.raft->add_member(x, local(node(l)));
          trace("member_change",
                {{"group", 1}, {"leader", l}, {"op", "script-add"}, {"node", x}, {"ok", res.ok()}});
          if (res.ok()) {
            ++adds_;
            changes_[1].started = now();
          }
          drain(node(l), r);
        }
        break;
      }
    }
  }

  // --- the end -----------------------------------------------------------------------
  void final_checks() {
    for (int g = 1; g <= o_.groups; ++g)
      check_logs(static_cast<GroupId>(g));
    // Every replica's state machine against the committed log.
    for (auto& n : nodes_) {
      if (!n->up) continue;
      for (auto& rp : n->replicas) {
        if (rp->raft)
          checker_.check_state(rp->group, n->id, rp->applied, rp->kv, "end of run", now());
      }
    }
    if (o_.require_progress) {
      for (int g = 1; g <= o_.groups; ++g) {
        const GroupId gid = static_cast<GroupId>(g);
        if (!progress_after_faults_.count(gid)) {
          checker_.violation(fmt::format(
              "progress: group {} committed no client write after the faults healed", g));
        }
        const NodeId l = leader_of(gid);
        if (l && replica(node(l), gid).raft->membership().joint()) {
          checker_.violation(
              fmt::format("membership: group {} is still joint at the end ({})", g,
                          raft::to_string(replica(node(l), gid).raft->membership())));
        }
      }
    }
    checker_.finish();
    for (int g = 0; g < o_.groups; ++g) {
      lincheck::CheckResult r =
          lincheck::check_kv_history(histories_[g], lincheck::CheckOptions{kLincheckStepsMax});
      lincheck_steps_ += r.steps;
      if (r.verdict != lincheck::Verdict::kLinearizable) {
        checker_.violation(fmt::format("client history of group {} is {}", g + 1, r.summary()));
      }
    }
    if (o_.storm && storm_rounds_done_ < o_.storm_rounds) {
      checker_.violation(
          fmt::format("storm: only {} of {} rounds ran", storm_rounds_done_, o_.storm_rounds));
    }
    if (!trace_.ok()) checker_.violation("could not write the trace file " + o_.trace_path);
    if (trace_.enabled()) {
      for (auto& n : nodes_) {
        for (auto& rp : n->replicas) {
          if (!n->up || !rp->raft) continue;
          const raft::RaftStatus st = rp->raft->status();
          trace("final", {{"node", n->id},
                          {"group", rp->group},
                          {"role", raft::to_string(st.role)},
                          {"term", st.term},
                          {"leader", st.leader},
                          {"last_index", st.last_index},
                          {"commit", st.commit},
                          {"applied", st.applied},
                          {"membership", raft::to_string(rp->raft->membership())},
                          {"membership_index", rp->raft->membership_index()}});
        }
      }
    }
    for (const std::string& v : checker_.violations())
      trace("violation", {{"what", v}});
  }

  SimReport report() {
    SimReport rep;
    rep.seed = o_.seed;
    rep.violations = checker_.violations();
    rep.violation_count = checker_.violation_count();
    rep.ok = rep.violation_count == 0;
    rep.replay = o_.replay_command();
    rep.events = sched_.executed();
    rep.client_ops = client_ops_;
    rep.ok_ops = ok_ops_;
    rep.failed_ops = failed_ops_;
    rep.info_ops = info_ops_;
    rep.stale_reads = stale_reads_;
    rep.lease_reads = lease_reads_;
    rep.read_index_reads = read_index_reads_;
    for (auto& [g, idx] : committed_max_)
      rep.committed_entries += idx;
    rep.leaders = checker_.terms_with_leader();
    rep.crashes = crashes_;
    rep.pauses = pauses_;
    rep.partitions = partitions_;
    rep.quiesces = quiesces_;
    rep.wakes = wakes_;
    rep.liveness_lost = liveness_lost_;
    rep.lost_writes = lost_writes_;
    rep.transfers = transfers_;
    rep.lincheck_steps = lincheck_steps_;
    rep.snapshots_taken = snapshots_taken_;
    rep.snapshot_chunks = snapshot_chunks_;
    rep.snapshot_resends = snapshot_resends_;
    rep.installs = installs_;
    for (int i = 0; i < 5; ++i)
      rep.install_crashes[i] = install_crashes_[i];
    rep.recovered_old = recovered_old_;
    rep.recovered_new = recovered_new_;
    rep.recovered_own_newer = recovered_own_newer_;
    rep.adds = adds_;
    rep.removes = removes_;
    rep.leader_removes = leader_removes_;
    rep.replaces = replaces_;
    rep.abandons = abandons_;
    rep.wipes = wipes_;
    rep.changes_completed = changes_completed_;
    rep.script_nodes = script_nodes_;
    for (int g = 1; g <= o_.groups; ++g) {
      const GroupId gid = static_cast<GroupId>(g);
      const NodeId l = leader_of(gid);
      rep.final_membership.push_back(l ? raft::to_string(replica(node(l), gid).raft->membership())
                                       : std::string());
      rep.final_commit.push_back(committed_max_[gid]);
      std::map<NodeId, Index> applied;
      for (auto& n : nodes_) {
        applied[n->id] = replica(*n, gid).applied;
      }
      rep.final_applied.push_back(std::move(applied));
    }
    rep.time_to_leader = time_to_leader_;
    rep.time_to_write = time_to_write_;
    rep.histories = std::move(histories_);
    return rep;
  }

  SimOptions o_;
  Rng rng_;
  Rng net_rng_;
  TraceWriter trace_;
  Scheduler sched_;
  SafetyChecker checker_;
  double drift_ppm_ = 0;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::vector<int>> blocked_;  // [from][to] -> partitions blocking the link
  uint64_t heal_epoch_ = 0;
  std::deque<Client> clients_;  // stable addresses
  uint64_t op_seq_ = 0;
  uint64_t request_ids_ = 0;
  SimTime clients_until_ = 0;
  std::vector<lincheck::History> histories_;
  std::map<GroupId, Index> committed_max_;

  // Storm state.
  std::optional<StormRound> storm_round_;
  int storm_rounds_done_ = 0;
  SimTime storm_settle_until_ = 0;
  std::set<Term> write_committed_in_term_;
  Distribution time_to_leader_, time_to_write_;

  size_t client_ops_ = 0, ok_ops_ = 0, failed_ops_ = 0, info_ops_ = 0, stale_reads_ = 0;
  size_t lease_reads_ = 0, read_index_reads_ = 0;
  size_t crashes_ = 0, pauses_ = 0, partitions_ = 0, lost_writes_ = 0, transfers_ = 0;
  size_t quiesces_ = 0, wakes_ = 0, liveness_lost_ = 0;
  uint64_t lincheck_steps_ = 0;

  int total_nodes_ = 0;  // initial voters and spares
  // Snapshots.
  size_t snapshots_taken_ = 0, snapshot_chunks_ = 0, snapshot_resends_ = 0, installs_ = 0;
  size_t install_crashes_[5] = {0, 0, 0, 0, 0};
  size_t recovered_old_ = 0, recovered_new_ = 0, recovered_own_newer_ = 0;
  // Membership.
  std::map<GroupId, ChangeState> changes_;
  size_t adds_ = 0, removes_ = 0, leader_removes_ = 0, replaces_ = 0, abandons_ = 0, wipes_ = 0;
  size_t changes_completed_ = 0;
  std::set<GroupId> progress_after_faults_;
  std::vector<NodeId> script_nodes_;
};

}  // namespace

SimReport run_simulation(const SimOptions& options) {
  set_abort_context(options.replay_command());
  Simulation sim(options);
  return sim.run();
}

}  // namespace nori::sim
