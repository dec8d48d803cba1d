// See node_process.h. Commands (stdin) and replies (stdout), one JSON per line:
//   {"cmd":"status"}                       -> {"type":"status","groups":{...}}
//   {"cmd":"propose","group":g,"data":s}   ->
//   {"type":"propose","ok":..,"index"|"kind","hint","may"}
//   {"cmd":"read","group":g,"mode":m}      -> {"type":"read","ok":..}
//   {"cmd":"applied","group":g}            -> {"type":"applied","entries":[[i,s],...]}
//   {"cmd":"transfer","group":g,"to":n}    -> {"type":"transfer","ok":..}
//   {"cmd":"mark"}                         -> {"type":"mark","boot_ns":t} (failover timing)
//   {"cmd":"load",...}                     -> progress lines, then {"type":"phase_done",...}
//   {"cmd":"metrics"}                      -> {"type":"metrics","text":...}
//   {"cmd":"snapshot","group":g}           -> {"type":"snapshot","ok":..} (trigger_snapshot)
//   {"cmd":"add_member","group":g,"id":n,"addr":"host:port"} -> {"type":"add_member","ok":..}
//   {"cmd":"remove_member","group":g,"id":n}                 -> {"type":"remove_member","ok":..}
//     (either with "wait":"complete": answers once the change is complete,
//      Node::MemberWait::kComplete; default: once the entry is appended)
//   {"cmd":"membership","group":g}  ->
//   {"type":"membership","voters":[..],"outgoing":[..],"learners":[..]}
//   {"cmd":"quit"}                         -> closes the node, exits 0
#include "raft/node/tools/node_process.h"

#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "raft/node/node.h"
#include "raft/node/tools/hist_util.h"
#include "runtime/base/bytes.h"
#include "runtime/runtime.h"

namespace nori::raft::tools {
namespace {

using base::BootClock;
using json = nlohmann::json;
using raft::GroupId;
using raft::Index;
using raft::Node;
using runtime::Task;
using namespace std::chrono_literals;

std::mutex out_mu;
void emit(const json& j) {
  std::lock_guard lk(out_mu);
  std::cout << j.dump() << "\n" << std::flush;
}

// Per-core counters of one load phase; each core's workers are the only
// writers of their core's slot, the main thread reads.
struct CoreLoad {
  runtime::metrics::Histogram write_ns;
  runtime::metrics::Histogram read_ns;
  runtime::metrics::Counter commits;
  runtime::metrics::Counter reads;
  runtime::metrics::Counter errors;
};

struct Load {
  std::string phase;
  std::string mode = "closed";  // closed | open
  uint32_t inflight = 1;        // closed loop: proposals in flight per group
  double rate = 0;              // open loop: proposals per second per group
  uint32_t payload = 16;
  uint32_t duration_ms = 5000;
  std::string reads = "none";  // none | lease | read_index | stale
  uint32_t read_inflight = 0;
  bool everywhere = false;  // clients on every node (failover), else leaders only
};

struct Process {
  std::unique_ptr<Node> node;
  std::vector<std::unique_ptr<CoreLoad>> cores;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> active{0};
  std::atomic<int64_t> mark_ns{0};
  std::atomic<int64_t> first_commit_after_mark_ns{0};
  std::atomic<int64_t> leader_elected_ns{0};  // last LeaderElected naming this node
  std::mutex applied_mu;
  std::map<GroupId, std::vector<std::pair<Index, std::string>>> applied;
  bool record_applied = false;
};

Process* P = nullptr;
std::thread load_thread;

// With --record-applied the recorded list of (index, data) is the group's
// state machine, and it snapshots: a view is a copy of the list (streamed
// as varint index + length-prefixed data), a restore replaces it.
class AppliedView final : public raft::SnapshotView {
 public:
  explicit AppliedView(std::vector<std::pair<Index, std::string>> entries)
      : entries_(std::move(entries)) {}
  base::Status write(raft::snapshot::SnapshotSink& sink) override {
    std::string buf;
    for (const auto& [i, d] : entries_) {
      base::ByteWriter w(buf);
      w.varint(i);
      w.length_prefixed(d);
      if (buf.size() >= (64 << 10)) {
        NORI_TRY(sink.write(buf));
        buf.clear();
      }
    }
    return buf.empty() ? base::Status{} : sink.write(buf);
  }

 private:
  std::vector<std::pair<Index, std::string>> entries_;
};

base::Status restore_applied(GroupId g, raft::snapshot::SnapshotSource& src) {
  std::string all;
  std::string buf(64 << 10, '\0');
  while (true) {
    NORI_ASSIGN_OR_RETURN(size_t n, src.read(buf.data(), buf.size()));
    if (n == 0) break;
    all.append(buf.data(), n);
  }
  std::vector<std::pair<Index, std::string>> entries;
  base::ByteReader r(all);
  while (!r.empty()) {
    uint64_t i;
    std::string_view d;
    if (!r.varint(i) || !r.length_prefixed(d, 64 << 20)) {
      return base::err(base::ErrorKind::kCorruption, "group {}: bad snapshot payload", g);
    }
    entries.emplace_back(i, std::string(d));
  }
  std::lock_guard lk(P->applied_mu);
  P->applied[g] = std::move(entries);
  return {};
}

std::string kind_name(base::ErrorKind k) {
  return std::string(base::to_string(k));
}

void note_commit(int64_t done_ns) {
  const int64_t mark = P->mark_ns.load(std::memory_order_relaxed);
  if (mark != 0 && done_ns > mark && P->first_commit_after_mark_ns.load() == 0) {
    int64_t expected = 0;
    P->first_commit_after_mark_ns.compare_exchange_strong(expected, done_ns);
  }
}

Task<void> closed_worker(GroupId g, std::string payload, CoreLoad* cl) {
  Node& n = *P->node;
  while (!P->stop.load(std::memory_order_relaxed)) {
    if (!n.is_leader(g)) {
      (void)co_await runtime::sleep_for(10ms);
      continue;
    }
    const auto t0 = BootClock::now();
    auto r = co_await n.propose(g, payload);
    const auto t1 = BootClock::now();
    if (r.ok()) {
      cl->write_ns.record(t1 - t0);
      cl->commits.inc();
      note_commit(base::to_ns(t1));
    } else {
      cl->errors.inc();
      if (r.error().kind() == base::ErrorKind::kBusy) (void)co_await runtime::sleep_for(1ms);
    }
  }
  P->active.fetch_sub(1);
}

Task<void> open_one(GroupId g, std::string payload, CoreLoad* cl, base::TimePoint intended) {
  auto r = co_await P->node->propose(g, std::move(payload));
  const auto t1 = BootClock::now();
  if (r.ok()) {
    // From the intended send time, so a stall is charged to every request it
    // delayed (no coordinated omission).
    cl->write_ns.record(t1 - intended);
    cl->commits.inc();
    note_commit(base::to_ns(t1));
  } else {
    cl->errors.inc();
  }
  P->active.fetch_sub(1);
}

Task<void> open_pacer(GroupId g, std::string payload, CoreLoad* cl, double rate) {
  const auto interval = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / rate));
  auto next = BootClock::now();
  constexpr int64_t kOutstandingMax = 200'000;
  while (!P->stop.load(std::memory_order_relaxed)) {
    next += interval;
    if (next > BootClock::now()) (void)co_await runtime::sleep_until(next);
    if (!P->node->is_leader(g) || P->active.load() > kOutstandingMax) {
      cl->errors.inc();
      continue;
    }
    P->active.fetch_add(1);
    runtime::spawn(open_one(g, payload, cl, next));
  }
  P->active.fetch_sub(1);
}

Task<void> read_worker(GroupId g, raft::ReadMode mode, CoreLoad* cl) {
  Node& n = *P->node;
  while (!P->stop.load(std::memory_order_relaxed)) {
    if (!n.is_leader(g)) {
      (void)co_await runtime::sleep_for(10ms);
      continue;
    }
    const auto t0 = BootClock::now();
    auto st = co_await n.read(g, mode);
    if (st.ok()) {
      cl->read_ns.record(BootClock::now() - t0);
      cl->reads.inc();
    } else {
      cl->errors.inc();
    }
  }
  P->active.fetch_sub(1);
}

json hist_json(const runtime::metrics::HistogramSnapshot& h) {
  json b = json::array();
  const auto& buckets = h.buckets();
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (buckets[i] != 0) b.push_back({i, buckets[i]});
  }
  return b;
}

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}
long peak_rss_kb() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

json leads(Node& n) {
  json l = json::array();
  for (GroupId g : n.config().groups) {
    if (n.is_leader(g)) l.push_back(g);
  }
  return l;
}

void run_load(const Load& L) {
  Node& n = *P->node;
  const unsigned cores = n.config().cores;
  P->cores.clear();
  for (unsigned c = 0; c < cores; ++c)
    P->cores.push_back(std::make_unique<CoreLoad>());
  P->stop = false;
  P->active = 0;
  const raft::NodeMetricsSnapshot m0 = n.metrics_snapshot();
  const double cpu0 = cpu_seconds();
  const std::string payload(L.payload, 'x');
  raft::ReadMode rmode = raft::ReadMode::kLease;
  if (L.reads == "read_index") rmode = raft::ReadMode::kReadIndex;
  if (L.reads == "stale") rmode = raft::ReadMode::kStaleNoGuarantee;
  for (GroupId g : n.config().groups) {
    const unsigned c = n.core_of(g);
    CoreLoad* cl = P->cores[c].get();
    if (L.mode == "open" && L.rate > 0) {
      P->active.fetch_add(1);
      n.runtime().spawn_on(
          c, [g, payload, cl, rate = L.rate] { return open_pacer(g, payload, cl, rate); });
    } else {
      for (uint32_t k = 0; k < L.inflight; ++k) {
        P->active.fetch_add(1);
        n.runtime().spawn_on(c, [g, payload, cl] { return closed_worker(g, payload, cl); });
      }
    }
    if (L.reads != "none") {
      for (uint32_t k = 0; k < L.read_inflight; ++k) {
        P->active.fetch_add(1);
        n.runtime().spawn_on(c, [g, rmode, cl] { return read_worker(g, rmode, cl); });
      }
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::milliseconds(L.duration_ms);
  Interval writes, reads;
  uint64_t last_commits = 0, last_reads = 0;
  auto last = start;
  while (std::chrono::steady_clock::now() < end) {
    auto wake = std::min(end, last + 1s);
    std::this_thread::sleep_until(wake);
    const auto now = std::chrono::steady_clock::now();
    runtime::metrics::HistogramSnapshot w, r;
    uint64_t commits = 0, rd = 0;
    for (auto& cl : P->cores) {
      cl->write_ns.snapshot_into(w);
      cl->read_ns.snapshot_into(r);
      commits += cl->commits.value();
      rd += cl->reads.value();
    }
    const double dt = std::chrono::duration<double>(now - last).count();
    auto wi = writes.next(w);
    auto ri = reads.next(r);
    emit({{"type", "progress"},
          {"phase", L.phase},
          {"node", n.id()},
          {"t_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now - start).count()},
          {"dt", dt},
          {"commits", commits - last_commits},
          {"reads", rd - last_reads},
          {"lat", hist_json(wi)},
          {"read_lat", hist_json(ri)},
          {"leads", leads(n)}});
    last_commits = commits;
    last_reads = rd;
    last = now;
  }
  P->stop = true;
  while (P->active.load() > 0)
    std::this_thread::sleep_for(2ms);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const raft::NodeMetricsSnapshot m1 = n.metrics_snapshot();
  runtime::metrics::HistogramSnapshot w, r;
  uint64_t commits = 0, rd = 0, errors = 0;
  for (auto& cl : P->cores) {
    cl->write_ns.snapshot_into(w);
    cl->read_ns.snapshot_into(r);
    commits += cl->commits.value();
    rd += cl->reads.value();
    errors += cl->errors.value();
  }
  emit({{"type", "phase_done"},
        {"phase", L.phase},
        {"node", n.id()},
        {"elapsed_s", elapsed},
        {"commits", commits},
        {"reads", rd},
        {"errors", errors},
        {"lat", hist_json(w)},
        {"read_lat", hist_json(r)},
        {"stage_queued", hist_json(diff(m1.stage_queued, m0.stage_queued))},
        {"stage_leader_wal", hist_json(diff(m1.stage_leader_wal, m0.stage_leader_wal))},
        {"stage_quorum", hist_json(diff(m1.stage_quorum, m0.stage_quorum))},
        {"stage_applied", hist_json(diff(m1.stage_applied, m0.stage_applied))},
        {"wal_writes", m1.wal_writes - m0.wal_writes},
        {"wal_entries", m1.wal_entries - m0.wal_entries},
        {"wal_bytes", m1.wal_bytes - m0.wal_bytes},
        {"net_bytes", m1.net_bytes_sent - m0.net_bytes_sent},
        {"elections", m1.elections - m0.elections},
        {"disk_reads", m1.storage_disk_reads - m0.storage_disk_reads},
        {"cpu_s", cpu_seconds() - cpu0},
        {"rss_kb", peak_rss_kb()}});
}

json group_status(Node& n) {
  json gs = json::object();
  for (GroupId g : n.groups()) {
    raft::GroupStatusCell* c = n.status_cell(g);
    if (c == nullptr) continue;
    gs[std::to_string(g)] = {{"leader", c->leader.load()},
                             {"term", c->term.load()},
                             {"role", c->role.load()},
                             {"commit", c->commit.load()},
                             {"applied", c->applied.load()}};
  }
  return gs;
}

raft::ReadMode parse_mode(const std::string& m) {
  if (m == "read_index") return raft::ReadMode::kReadIndex;
  if (m == "stale") return raft::ReadMode::kStaleNoGuarantee;
  return raft::ReadMode::kLease;
}

json error_json(const char* type, const base::Error& e) {
  return {{"type", type},
          {"ok", false},
          {"kind", kind_name(e.kind())},
          {"hint", e.hint()},
          {"may", e.may_have_taken_effect()},
          {"message", e.message()}};
}

void handle(const json& cmd) {
  Node& n = *P->node;
  const std::string c = cmd.value("cmd", "");
  if (c == "status") {
    emit({{"type", "status"},
          {"node", n.id()},
          {"incarnation", n.incarnation()},
          {"leader_elected_ns", P->leader_elected_ns.load()},
          {"first_commit_after_mark_ns", P->first_commit_after_mark_ns.load()},
          {"groups", group_status(n)}});
  } else if (c == "propose") {
    const GroupId g = cmd.value("group", GroupId{1});
    const std::string data = cmd.value("data", "");
    auto r = n.run(g, [&n, g, data] { return n.propose(g, data); });
    if (r.ok()) {
      note_commit(base::to_ns(BootClock::now()));
      emit({{"type", "propose"}, {"ok", true}, {"index", *r}});
    } else {
      emit(error_json("propose", r.error()));
    }
  } else if (c == "read") {
    const GroupId g = cmd.value("group", GroupId{1});
    const raft::ReadMode mode = parse_mode(cmd.value("mode", "lease"));
    auto st = n.run(g, [&n, g, mode] { return n.read(g, mode); });
    if (st.ok()) {
      // Serve "from the local state machine": what this node applied.
      std::lock_guard lk(P->applied_mu);
      emit({{"type", "read"}, {"ok", true}, {"applied", P->applied[g].size()}});
    } else {
      emit(error_json("read", st.error()));
    }
  } else if (c == "applied") {
    const GroupId g = cmd.value("group", GroupId{1});
    std::lock_guard lk(P->applied_mu);
    json e = json::array();
    for (auto& [i, d] : P->applied[g])
      e.push_back({i, d});
    emit({{"type", "applied"}, {"entries", e}});
  } else if (c == "transfer") {
    const GroupId g = cmd.value("group", GroupId{1});
    const raft::NodeId to = cmd.value("to", raft::NodeId{0});
    auto st = n.run(g, [&n, g, to] { return n.transfer_leader(g, to); });
    emit(st.ok() ? json{{"type", "transfer"}, {"ok", true}} : error_json("transfer", st.error()));
  } else if (c == "mark") {
    P->first_commit_after_mark_ns = 0;
    const int64_t t = cmd.value("boot_ns", int64_t{0});
    P->mark_ns = t != 0 ? t : base::to_ns(BootClock::now());
    emit({{"type", "mark"}, {"boot_ns", P->mark_ns.load()}});
  } else if (c == "load") {
    if (load_thread.joinable()) load_thread.join();
    Load L;
    L.phase = cmd.value("phase", "load");
    L.mode = cmd.value("mode", "closed");
    L.inflight = cmd.value("inflight", 1u);
    L.rate = cmd.value("rate", 0.0);
    L.payload = cmd.value("payload", 16u);
    L.duration_ms = cmd.value("duration_ms", 5000u);
    L.reads = cmd.value("reads", "none");
    L.read_inflight = cmd.value("read_inflight", 0u);
    // The load reports from its own thread, so status / mark / transfer
    // commands are answered while it runs (failover timing).
    load_thread = std::thread([L] { run_load(L); });
  } else if (c == "metrics") {
    emit({{"type", "metrics"}, {"text", n.metrics_text()}});
  } else if (c == "snapshot") {
    const GroupId g = cmd.value("group", GroupId{1});
    auto st = n.run(g, [&n, g] { return n.trigger_snapshot(g); });
    emit(st.ok() ? json{{"type", "snapshot"}, {"ok", true}} : error_json("snapshot", st.error()));
  } else if (c == "add_member") {
    const GroupId g = cmd.value("group", GroupId{1});
    const raft::NodeId id = cmd.value("id", raft::NodeId{0});
    const std::string addr = cmd.value("addr", "");
    const auto wait = cmd.value("wait", "") == "complete" ? raft::Node::MemberWait::kComplete
                                                          : raft::Node::MemberWait::kAppended;
    auto st = n.run(g, [&n, g, id, addr, wait] { return n.add_member(g, id, addr, wait); });
    emit(st.ok() ? json{{"type", "add_member"}, {"ok", true}}
                 : error_json("add_member", st.error()));
  } else if (c == "remove_member") {
    const GroupId g = cmd.value("group", GroupId{1});
    const raft::NodeId id = cmd.value("id", raft::NodeId{0});
    const auto wait = cmd.value("wait", "") == "complete" ? raft::Node::MemberWait::kComplete
                                                          : raft::Node::MemberWait::kAppended;
    auto st = n.run(g, [&n, g, id, wait] { return n.remove_member(g, id, wait); });
    emit(st.ok() ? json{{"type", "remove_member"}, {"ok", true}}
                 : error_json("remove_member", st.error()));
  } else if (c == "membership") {
    const GroupId g = cmd.value("group", GroupId{1});
    auto m = n.run(g, [&n, g] { return n.membership(g); });
    if (m.ok()) {
      emit({{"type", "membership"},
            {"voters", m->voters},
            {"outgoing", m->voters_outgoing},
            {"learners", m->learners}});
    } else {
      emit(error_json("membership", m.error()));
    }
  } else {
    emit({{"type", "error"}, {"message", "unknown command " + c}});
  }
}

}  // namespace

int node_process_main(int argc, char** argv) {
  CLI::App app{"nori-node: one raft::Node driven over stdin/stdout (JSON lines)"};
  raft::RaftConfig cfg;
  std::string peers;
  std::string groups = "1";
  bool record_applied = false;
  app.add_option("--id", cfg.node_id, "node id")->required();
  app.add_option("--peers", peers, "id@host:port,... (every voter, this node included)")
      ->required();
  app.add_option("--data", cfg.data_dir, "data directory")->required();
  app.add_option("--cores", cfg.cores, "reactors");
  app.add_option("--groups", groups, "group ids: 'a-b' or 'a,b,c'");
  app.add_option("--secret", cfg.cluster_secret, "cluster secret")
      ->default_val("nori-bench secret");
  app.add_option("--heartbeat-ms", cfg.heartbeat_ms);
  app.add_option("--election-min-ms", cfg.election_timeout_min_ms);
  app.add_option("--election-max-ms", cfg.election_timeout_max_ms);
  app.add_option("--lease-ms", cfg.lease_ms);
  app.add_option("--inflight-msgs-max", cfg.inflight_msgs_max, "appends in flight per follower");
  app.add_option("--append-hold-us", cfg.append_hold_us, "append coalescing (0: off)");
  app.add_option("--wal-write-hold-bytes", cfg.wal_write_hold_bytes,
                 "WAL write coalescing (0: off)");
  app.add_option("--wal-writes-in-flight", cfg.wal_writes_in_flight_max,
                 "durable WAL writes in flight per core")
      ->check(CLI::Range(1, 64));
  app.add_option("--segment-mb", cfg.wal_segment_bytes)->transform([](std::string s) {
    return std::to_string(std::stoull(s) << 20);
  });
  app.add_option("--metrics", cfg.metrics_listen, "host:port for /metrics");
  app.add_option("--events", cfg.events_jsonl_path, "events as JSON lines to this file");
  app.add_option("--wal-dsync", cfg.wal_use_rwf_dsync,
                 "RWF_DSYNC writes instead of write + fdatasync");
  app.add_option("--wal-batch-delay-us", cfg.wal_batch_delay_us);
  app.add_option("--pin", cfg.reactor_pin, "reactor pinning: none (default) | auto | wrap")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, runtime::PinMode>{{"none", runtime::PinMode::kNone},
                                                  {"auto", runtime::PinMode::kAuto},
                                                  {"wrap", runtime::PinMode::kWrap}},
          CLI::ignore_case));
  app.add_flag(
      "--record-applied", record_applied,
      "keep applied entries for 'applied' (they are also the state machine that snapshots)");
  app.add_option("--snapshot-entries", cfg.snapshot_entries, "snapshot every this many entries");
  app.add_option("--snapshot-keep", cfg.snapshot_keep_entries, "entries kept behind a snapshot");
  app.add_option("--snapshot-chunk-bytes", cfg.snapshot_chunk_bytes);
  app.add_option("--snapshot-bytes-per-s", cfg.snapshot_send_bytes_per_s);
  app.add_option("--snapshot-timeout-ms", cfg.snapshot_timeout_ms);
  app.add_option("--send-queue-bytes", cfg.send_queue_bytes_max, "per peer and lane");
  app.add_option("--append-bytes", cfg.append_bytes_max, "one Append message");
  app.add_option("--inflight-msgs", cfg.inflight_msgs_max, "appends in flight per follower");
  app.add_flag("--join", cfg.join,
               "join an existing cluster (groups start without voters; run add_member on the "
               "leader); --peers lists this node and the members it can reach");
  app.add_flag("--unsafe-exit-after-snapshot-reset",
               cfg.unsafe_snapshot_exit_after_reset_for_testing,
               "TESTS ONLY: exit(86) once a snapshot install's reset record is durable");
  CLI11_PARSE(app, argc, argv);

  for (size_t pos = 0; pos < peers.size();) {
    size_t comma = peers.find(',', pos);
    if (comma == std::string::npos) comma = peers.size();
    const std::string p = peers.substr(pos, comma - pos);
    const size_t at = p.find('@');
    const size_t colon = p.rfind(':');
    if (at == std::string::npos || colon == std::string::npos || colon < at) {
      std::cerr << "bad peer '" << p << "' (want id@host:port)\n";
      return 2;
    }
    cfg.peers.push_back({std::stoull(p.substr(0, at)), p.substr(at + 1, colon - at - 1),
                         static_cast<uint16_t>(std::stoul(p.substr(colon + 1)))});
    pos = comma + 1;
  }
  if (auto dash = groups.find('-'); dash != std::string::npos) {
    for (GroupId g = std::stoull(groups.substr(0, dash)); g <= std::stoull(groups.substr(dash + 1));
         ++g)
      cfg.groups.push_back(g);
  } else {
    for (size_t pos = 0; pos < groups.size();) {
      size_t comma = groups.find(',', pos);
      if (comma == std::string::npos) comma = groups.size();
      cfg.groups.push_back(std::stoull(groups.substr(pos, comma - pos)));
      pos = comma + 1;
    }
  }

  Process proc;
  P = &proc;
  proc.record_applied = record_applied;
  raft::NodeCallbacks cb;
  const raft::NodeId self = cfg.node_id;
  cb.on_event = [self](const raft::NodeEvent& e) {
    if (e.kind == raft::NodeEventKind::kLeaderElected && e.node == self)
      P->leader_elected_ns = base::to_ns(e.time);
  };
  cb.group_hooks = [](GroupId g) {
    raft::GroupHooks h;
    if (P->record_applied) {
      h.apply = [g](Index i, std::string_view d) {
        std::lock_guard lk(P->applied_mu);
        P->applied[g].emplace_back(i, std::string(d));
      };
      h.capture_snapshot = [g]() -> base::Result<std::unique_ptr<raft::SnapshotView>> {
        std::lock_guard lk(P->applied_mu);
        return std::unique_ptr<raft::SnapshotView>(std::make_unique<AppliedView>(P->applied[g]));
      };
      h.restore_snapshot = [g](raft::snapshot::SnapshotSource& src) {
        return restore_applied(g, src);
      };
    }
    return h;
  };
  auto node = Node::open(cfg, std::move(cb));
  if (!node.ok()) {
    emit({{"type", "fatal"}, {"message", node.error().to_string()}});
    return 1;
  }
  proc.node = std::move(node).value();
  emit({{"type", "ready"}, {"node", cfg.node_id}, {"incarnation", proc.node->incarnation()}});
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    json cmd = json::parse(line, nullptr, false);
    if (cmd.is_discarded()) {
      emit({{"type", "error"}, {"message", "bad json"}});
      continue;
    }
    if (cmd.value("cmd", "") == "quit") break;
    handle(cmd);
  }
  if (load_thread.joinable()) load_thread.join();
  proc.node->close();
  emit({{"type", "bye"}});
  P = nullptr;
  return 0;
}

}  // namespace nori::raft::tools
