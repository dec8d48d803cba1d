// Snapshots end to end in real raft::Node objects (real WALs, snapshot files
// and loopback TCP, in one process): taking, compacting, sending in chunks,
// installing, recovering, and the application's install_snapshot.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <sstream>

#include "raft/node/node.h"
#include "runtime/base/bytes.h"
#include "tests/node/list_snapshot.h"
#include "tests/node/node_test_util.h"
#include "wal/wal.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using nori::testing::free_port_block;
using testing::fresh_dir;
using testing::node_config;

constexpr GroupId kGroup = 1;

// A state machine whose state is the list of (index, data) it applied; a
// snapshot is that list. Each node's is shared with the test thread (mutex).
struct Machine {
  std::mutex mu;
  std::vector<std::pair<Index, std::string>> state;
  std::vector<Index> apply_calls;  // every apply() since the node opened
  size_t restores = 0;
  Index restored_at = 0;
};

base::Status restore_into(Machine& m, snapshot::SnapshotSource& src) {
  NORI_ASSIGN_OR_RETURN(testing::AppliedList s, testing::read_list_snapshot(src));
  std::lock_guard lk(m.mu);
  m.apply_calls.clear();  // what follows must all be past the snapshot
  m.restored_at = s.empty() ? 0 : s.back().first;
  m.state = std::move(s);
  ++m.restores;
  return {};
}

struct Events {
  std::atomic<int> snapshot_start{0};
  std::atomic<int> snapshot_done{0};
};

// Three (or n) nodes whose group 1 has snapshot hooks.
class SnapCluster {
 public:
  SnapCluster(const std::string& name, size_t n) : root_(fresh_dir(name)) {
    const uint16_t base = free_port_block(static_cast<unsigned>(n));
    for (size_t i = 0; i < n; ++i)
      peers_.push_back({static_cast<NodeId>(i + 1), "127.0.0.1", static_cast<uint16_t>(base + i)});
    nodes_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      machines_.push_back(std::make_unique<Machine>());
      events_.push_back(std::make_unique<Events>());
      cfgs_.push_back(config_for(i));
    }
  }
  ~SnapCluster() {
    for (auto& n : nodes_)
      n.reset();
    std::filesystem::remove_all(root_);
  }

  RaftConfig config_for(size_t i) const {
    RaftConfig c = node_config(i + 1, peers_, dir(i), {kGroup});
    c.snapshot_entries = 1'000'000;  // tests trigger, or lower it
    c.snapshot_keep_entries = 5;
    c.snapshot_chunk_bytes = 4096;
    c.snapshot_timeout_ms = 400;
    // Small send queues: the transport keeps what is sent to a peer that is
    // down and delivers it on reconnect; a follower the test wants far
    // behind must not catch up from that queue (entries are ~1 KiB).
    c.inflight_msgs_max = 4;
    c.append_bytes_max = 8 << 10;
    c.send_queue_bytes_max = 16 << 10;
    return c;
  }
  RaftConfig& cfg(size_t i) { return cfgs_[i]; }
  std::string addr(size_t i) const { return peers_[i].host + ":" + std::to_string(peers_[i].port); }
  // Calls fn(node i) on the group's core until it is not kBusy (a change in
  // progress); that result.
  template <typename F>
  base::Status until_not_busy(size_t i, F fn) {
    auto end = std::chrono::steady_clock::now() + 15s;
    base::Status st;
    while (std::chrono::steady_clock::now() < end) {
      Node& n = node(i);
      st = n.run(kGroup, [&n, &fn]() { return fn(n); });
      if (st.ok() || st.error().kind() != base::ErrorKind::kBusy) return st;
      std::this_thread::sleep_for(20ms);
    }
    return st;
  }
  std::string dir(size_t i) const { return root_ + "/n" + std::to_string(i + 1); }

  void start(size_t i) {
    Machine* m = machines_[i].get();
    Events* ev = events_[i].get();
    {
      // An in-memory state machine starts empty (applied = 0).
      std::lock_guard lk(m->mu);
      m->state.clear();
      m->apply_calls.clear();
    }
    NodeCallbacks cb;
    cb.group_hooks = [m](GroupId) {
      GroupHooks h;
      h.apply = [m](Index idx, std::string_view data) {
        std::lock_guard lk(m->mu);
        m->state.emplace_back(idx, std::string(data));
        m->apply_calls.push_back(idx);
      };
      h.capture_snapshot = [m]() -> base::Result<std::unique_ptr<SnapshotView>> {
        std::lock_guard lk(m->mu);
        return std::unique_ptr<SnapshotView>(std::make_unique<testing::ListView>(m->state));
      };
      h.restore_snapshot = [m](snapshot::SnapshotSource& src) { return restore_into(*m, src); };
      return h;
    };
    cb.on_event = [ev](const NodeEvent& e) {
      if (e.kind == NodeEventKind::kSnapshotStart) ev->snapshot_start++;
      if (e.kind == NodeEventKind::kSnapshotDone) ev->snapshot_done++;
    };
    auto n = Node::open(cfgs_[i], std::move(cb));
    NORI_ASSERT(n.ok(), "{}", n.error().to_string());
    nodes_[i] = std::move(n).value();
  }
  void start_all() {
    for (size_t i = 0; i < nodes_.size(); ++i)
      start(i);
  }
  void stop(size_t i) { nodes_[i].reset(); }
  bool up(size_t i) const { return nodes_[i] != nullptr; }
  Node& node(size_t i) { return *nodes_[i]; }
  Machine& machine(size_t i) { return *machines_[i]; }
  Events& events(size_t i) { return *events_[i]; }

  int wait_leader(std::chrono::milliseconds within = 10s) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (up(i) && nodes_[i]->is_leader(kGroup)) return static_cast<int>(i);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  // Proposes `count` entries of ~1 KiB through the current leader.
  void propose_many(int count, const std::string& tag) {
    for (int k = 0; k < count; ++k) {
      int l = wait_leader();
      ASSERT_GE(l, 0);
      Node& n = node(static_cast<size_t>(l));
      std::string data = tag + "-" + std::to_string(k) + "-" + std::string(1000, 'x');
      auto r = n.run(kGroup, [&n, data]() { return n.propose(kGroup, data); });
      if (!r.ok()) {
        --k;  // leader changed: retry (a kOutcomeUnknown may duplicate: fine here)
        std::this_thread::sleep_for(20ms);
      }
    }
  }
  std::vector<std::pair<Index, std::string>> state(size_t i) {
    std::lock_guard lk(machines_[i]->mu);
    return machines_[i]->state;
  }
  // Node i's state equals node j's (same entries at the same indexes).
  bool wait_same_state(size_t i, size_t j, std::chrono::milliseconds within = 15s) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      auto a = state(i), b = state(j);
      if (!a.empty() && a == b) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  template <typename P>
  bool wait_for(P pred, std::chrono::milliseconds within = 15s) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // Every running node takes a snapshot (whoever leads next has one to send).
  void trigger_all() {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!up(i)) continue;
      const int before = events_[i]->snapshot_done.load();
      ASSERT_TRUE(trigger(i).ok());
      ASSERT_TRUE(wait_for([&] { return events_[i]->snapshot_done.load() > before; }));
    }
  }
  base::Status trigger(size_t i) {
    Node& n = node(i);
    return n.run(kGroup, [&n]() { return n.trigger_snapshot(kGroup); });
  }
  // Sum of a metric's series in node i's Prometheus text.
  uint64_t metric(size_t i, const std::string& name) {
    std::istringstream in(node(i).metrics_text());
    std::string line;
    uint64_t sum = 0;
    while (std::getline(in, line)) {
      if (line.rfind(name, 0) != 0) continue;
      if (line.size() > name.size() && line[name.size()] != ' ' && line[name.size()] != '{')
        continue;
      sum += std::stoull(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }
  std::vector<std::string> snapshot_files(size_t i) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(dir(i) + "/snapshots/" + std::to_string(kGroup), ec))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  size_t follower_of(int leader) const { return leader == 0 ? 1 : 0; }
  // On a failure: what every node did (for the test log).
  std::string describe() {
    std::string out;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!up(i)) {
        out += fmt::format("node {}: down\n", i + 1);
        continue;
      }
      out += fmt::format(
          "node {}: leader {} state {} taken {} sent {} received {} installed {} failures {} "
          "deferred {}\n",
          i + 1, node(i).is_leader(kGroup), state(i).size(),
          metric(i, "raft_snapshots_taken_total"), metric(i, "raft_snapshot_chunks_sent_total"),
          metric(i, "raft_snapshot_chunks_received_total"),
          metric(i, "raft_snapshots_installed_total"), metric(i, "raft_snapshot_failures_total"),
          metric(i, "raft_snapshot_transfers_deferred_total"));
    }
    return out;
  }

 private:
  std::string root_;
  std::vector<PeerAddress> peers_;
  std::vector<RaftConfig> cfgs_;
  std::vector<std::unique_ptr<Machine>> machines_;
  std::vector<std::unique_ptr<Events>> events_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// The WAL's start point for the group, read from a closed node's WAL.
uint64_t wal_compact_index(const std::string& data_dir, const RaftConfig& cfg) {
  runtime::Runtime rt({.cores = 1});
  uint64_t out = rt.block_on(0, [&]() -> runtime::Task<uint64_t> {
    auto w = co_await wal::Wal::open(data_dir + "/core-0", cfg.wal_options());
    NORI_ASSERT(w.ok(), "{}", w.error().to_string());
    const wal::GroupLog* g = (*w)->group(kGroup);
    uint64_t c = g == nullptr ? 0 : g->compact_index();
    co_await (*w)->close();
    co_return c;
  });
  rt.stop();
  return out;
}

TEST(NodeSnapshot, TriggeredSnapshotCompactsTheWal) {
  SnapCluster c("snap-trigger", 3);
  c.start_all();
  c.propose_many(60, "a");
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  ASSERT_TRUE(c.trigger(static_cast<size_t>(l)).ok());
  ASSERT_TRUE(c.wait_for([&] { return c.events(static_cast<size_t>(l)).snapshot_done > 0; }));
  EXPECT_GE(c.events(static_cast<size_t>(l)).snapshot_start.load(), 1);
  EXPECT_EQ(c.metric(static_cast<size_t>(l), "raft_snapshots_taken_total"), 1u);
  auto files = c.snapshot_files(static_cast<size_t>(l));
  ASSERT_EQ(files.size(), 1u) << "one durable snapshot file, no temporaries";
  // The compaction mark follows the snapshot; it is durable with the next
  // WAL write: one more entry.
  c.propose_many(1, "b");
  const std::string d = c.dir(static_cast<size_t>(l));
  const RaftConfig cfg = c.cfg(static_cast<size_t>(l));
  c.stop(static_cast<size_t>(l));
  const uint64_t compacted = wal_compact_index(d, cfg);
  // 60 entries (+1 no-op) at least; 5 kept behind the snapshot.
  EXPECT_GE(compacted, 55u);
}

TEST(NodeSnapshot, GroupWithoutSnapshotHooksRefusesTrigger) {
  const uint16_t port = free_port_block(1);
  RaftConfig cfg = node_config(1, {{1, "127.0.0.1", port}}, fresh_dir("snap-nohooks"), {kGroup});
  auto n = Node::open(cfg);
  ASSERT_TRUE(n.ok()) << n.error().to_string();
  Node& node = **n;
  auto st = node.run(kGroup, [&node]() { return node.trigger_snapshot(kGroup); });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kInvalidArgument);
  node.close();
  std::filesystem::remove_all(cfg.data_dir);
}

TEST(NodeSnapshot, FollowerBehindCompactedLogCatchesUpBySnapshot) {
  SnapCluster c("snap-behind", 3);
  for (size_t i = 0; i < 3; ++i)
    c.cfg(i).snapshot_entries = 40;  // automatic snapshots
  c.start_all();
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const size_t f = c.follower_of(l);
  c.stop(f);
  c.propose_many(150, "a");
  l = c.wait_leader();
  ASSERT_GE(l, 0);
  ASSERT_TRUE(c.wait_for(
      [&] { return c.metric(static_cast<size_t>(l), "raft_snapshots_taken_total") >= 2; }));
  c.start(f);
  ASSERT_TRUE(c.wait_same_state(f, static_cast<size_t>(l)));
  EXPECT_GE(c.metric(f, "raft_snapshots_installed_total"), 1u);
  EXPECT_GE(c.events(f).snapshot_done.load(), 1);
  {
    std::lock_guard lk(c.machine(f).mu);
    EXPECT_GE(c.machine(f).restores, 1u);
    // Entries the snapshot covered were never applied one by one here.
    for (Index i : c.machine(f).apply_calls)
      EXPECT_GT(i, c.machine(f).restored_at);
  }
  // It keeps replicating from the log afterwards.
  c.propose_many(5, "b");
  l = c.wait_leader();
  ASSERT_TRUE(c.wait_same_state(f, static_cast<size_t>(l)));
}

// A wiped follower comes back empty (a new incarnation, bootstrap = true).
// Known limit of the core, not of the node: the leader that saw the follower
// acknowledge entries keeps its match index (Progress::match never moves
// back), ignores the empty follower's rejections at or below it and never
// falls back to a snapshot. A leader elected after the wipe starts from
// scratch for every follower: this test moves leadership once the wiped
// node is back, to a node that snapshotted too (every node is triggered).
// A follower whose disk was wiped and that restarts under its old id (a new
// incarnation, bootstrapping) must not pass for its former self: it forgot
// its votes and its log. Its peers pinned the incarnation it proved in its
// first handshake (raft/node/peer_pins.h) and refuse the new one, so it
// never takes part in the group; the others go on committing. The way back
// is membership change (next test).
TEST(NodeSnapshot, WipedFollowerRestartedUnderItsOldIdIsRefusedByItsPeers) {
  SnapCluster c("snap-wiped", 3);
  c.start_all();
  c.propose_many(50, "a");
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const size_t f = c.follower_of(l);
  const size_t t = 3 - f - static_cast<size_t>(l);  // the third node
  auto refused = [&] {
    return c.metric(static_cast<size_t>(l), "net_refused_connections") +
           c.metric(t, "net_refused_connections");
  };
  const uint64_t before = refused();
  c.stop(f);
  std::filesystem::remove_all(c.dir(f));
  c.start(f);
  ASSERT_TRUE(c.wait_for([&] { return refused() > before; })) << c.describe();
  c.propose_many(10, "b");  // the other two still commit
  EXPECT_EQ(c.metric(f, "raft_snapshots_installed_total"), 0u) << c.describe();
  EXPECT_FALSE(c.node(f).is_leader(kGroup));
}

// The way a wiped node should come back: removed, restarted empty with
// join = true, added again. The leader tracks it from scratch (no stale
// match index) and, its log being compacted, sends the snapshot.
TEST(NodeSnapshot, WipedNodeRejoinsThroughMembershipChangeBySnapshot) {
  SnapCluster c("snap-rejoin", 3);
  c.start_all();
  c.propose_many(50, "a");
  c.trigger_all();
  c.propose_many(10, "b");
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const size_t L = static_cast<size_t>(l);
  const size_t f = c.follower_of(l);
  c.stop(f);
  std::filesystem::remove_all(c.dir(f));
  const NodeId fid = f + 1;
  auto st = c.until_not_busy(L, [fid](Node& n) { return n.remove_member(kGroup, fid); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  st = c.until_not_busy(L, [fid](Node& n) { return n.remove_member(kGroup, fid); });
  ASSERT_EQ(st.error().kind(), base::ErrorKind::kInvalidArgument) << st.error().to_string();
  c.cfg(f).join = true;
  c.cfg(f).bootstrap = false;
  c.start(f);
  const std::string a = c.addr(f);
  st = c.until_not_busy(L, [fid, a](Node& n) { return n.add_member(kGroup, fid, a); });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  ASSERT_TRUE(c.wait_same_state(f, L)) << c.describe();
  EXPECT_EQ(c.metric(f, "raft_snapshots_installed_total"), 1u) << c.describe();
  c.propose_many(5, "c");
  ASSERT_TRUE(c.wait_same_state(f, static_cast<size_t>(c.wait_leader()))) << c.describe();
}

TEST(NodeSnapshot, RestartAfterSnapshotDoesNotReapplyCompactedEntries) {
  SnapCluster c("snap-restart", 1);
  c.start(0);
  c.propose_many(30, "a");
  ASSERT_TRUE(c.trigger(0).ok());
  ASSERT_TRUE(c.wait_for([&] { return c.events(0).snapshot_done > 0; }));
  c.propose_many(7, "b");
  auto before = c.state(0);
  c.stop(0);
  c.start(0);  // in-memory machine: starts empty, applied = 0
  ASSERT_TRUE(c.wait_for([&] { return c.state(0) == before; }));
  std::lock_guard lk(c.machine(0).mu);
  EXPECT_EQ(c.machine(0).restores, 1u);
  EXPECT_GE(c.machine(0).restored_at, 30u);
  ASSERT_FALSE(c.machine(0).apply_calls.empty());
  EXPECT_GT(c.machine(0).apply_calls.front(), c.machine(0).restored_at)
      << "an entry the snapshot covers was applied again";
}

// A crash between install steps 1 and 2 leaves a complete, valid snapshot
// file whose reset record never became durable: the WAL does not confirm it,
// so recovery keeps the old state (the older snapshot and the log) and
// removes the file.
TEST(NodeSnapshot, InstallCrashedBeforeItsResetRecordKeepsTheOldState) {
  SnapCluster c("snap-unconfirmed", 1);
  c.start(0);
  c.propose_many(20, "a");
  ASSERT_TRUE(c.trigger(0).ok());
  ASSERT_TRUE(c.wait_for([&] { return c.events(0).snapshot_done > 0; }));
  c.propose_many(5, "b");
  auto before = c.state(0);
  c.stop(0);
  // What a receive would have left: a durable file for (index 500, term 9).
  const std::string dir = c.dir(0) + "/snapshots/1";
  {
    auto store = snapshot::SnapshotStore::open(dir);
    ASSERT_TRUE(store.ok());
    Membership m;
    m.voters = {1};
    auto w = (*store)->begin(SnapshotMeta{500, 9, m});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write("not this node's state").ok());
    ASSERT_TRUE((*w)->commit().ok());
  }
  ASSERT_EQ(c.snapshot_files(0).size(), 2u);
  c.start(0);
  ASSERT_TRUE(c.wait_for([&] { return c.state(0) == before; }));
  auto files = c.snapshot_files(0);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].find("snap-00000000000000000500"), std::string::npos);
  std::lock_guard lk(c.machine(0).mu);
  EXPECT_LT(c.machine(0).restored_at, 500u);
}

TEST(NodeSnapshot, InterruptedTransferResumesOrRestarts) {
  SnapCluster c("snap-interrupt", 3);
  for (size_t i = 0; i < 3; ++i) {
    // ~60 KiB of snapshot at 32 KiB/s: the transfer takes about 2 s.
    c.cfg(i).snapshot_send_bytes_per_s = 32 << 10;
  }
  c.start_all();
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const size_t f = c.follower_of(l);
  c.stop(f);
  c.propose_many(60, "a");
  c.trigger_all();
  c.propose_many(10, "b");
  l = c.wait_leader();
  c.start(f);
  ASSERT_TRUE(c.wait_for([&] { return c.metric(f, "raft_snapshot_chunks_received_total") >= 2; }))
      << c.describe();
  EXPECT_EQ(c.metric(f, "raft_snapshots_installed_total"), 0u) << "interrupted too late";
  c.stop(f);  // mid-transfer
  c.start(f);
  ASSERT_TRUE(c.wait_same_state(f, static_cast<size_t>(l), 30s));
  EXPECT_EQ(c.metric(f, "raft_snapshots_installed_total"), 1u);
  // The partial file of the interrupted transfer is gone.
  EXPECT_EQ(c.snapshot_files(f).size(), 1u);
}

// A chunk lost on the way (the leader's test knob drops one mid-transfer):
// after snapshot_timeout_ms the leader re-sends from the offset the follower
// acknowledged, and the follower continues the same file (same leader term,
// index and term): every chunk is written exactly once.
TEST(NodeSnapshot, LostChunkIsResentFromTheAcknowledgedOffset) {
  SnapCluster c("snap-resume", 3);
  for (size_t i = 0; i < 3; ++i)
    c.cfg(i).unsafe_snapshot_drop_sent_chunks_for_testing = 1;
  c.start_all();
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const size_t f = c.follower_of(l);
  c.stop(f);
  c.propose_many(60, "a");
  c.trigger_all();
  c.propose_many(10, "b");
  l = c.wait_leader();
  ASSERT_GE(l, 0);
  auto files = c.snapshot_files(static_cast<size_t>(l));
  ASSERT_EQ(files.size(), 1u);
  const uint64_t size =
      std::filesystem::file_size(c.dir(static_cast<size_t>(l)) + "/snapshots/1/" + files[0]);
  const uint64_t chunks = (size + 4095) / 4096;
  ASSERT_GE(chunks, 3u);
  c.start(f);
  ASSERT_TRUE(c.wait_same_state(f, static_cast<size_t>(l))) << c.describe();
  EXPECT_EQ(c.metric(f, "raft_snapshots_installed_total"), 1u);
  EXPECT_EQ(c.metric(f, "raft_snapshot_chunks_received_total"), chunks)
      << "the transfer restarted instead of resuming\n"
      << c.describe();
  EXPECT_EQ(c.metric(static_cast<size_t>(l), "raft_snapshot_chunks_sent_total"), chunks + 1)
      << c.describe();
}

TEST(NodeSnapshot, CorruptChunkIsRejectedAndTransferRetried) {
  SnapCluster c("snap-corrupt", 3);
  c.start_all();
  int l = c.wait_leader();
  ASSERT_GE(l, 0);
  const size_t f = c.follower_of(l);
  c.stop(f);
  c.cfg(f).unsafe_snapshot_corrupt_received_chunks_for_testing = 1;
  c.propose_many(60, "a");
  c.trigger_all();
  c.propose_many(10, "b");
  l = c.wait_leader();
  c.start(f);
  ASSERT_TRUE(c.wait_same_state(f, static_cast<size_t>(l), 30s));
  EXPECT_GE(c.metric(f, "raft_snapshot_failures_total"), 1u) << "the corrupt file was accepted\n"
                                                             << c.describe();
  EXPECT_EQ(c.metric(f, "raft_snapshots_installed_total"), 1u);
}

TEST(NodeSnapshot, ApplicationInstallsASnapshotFromElsewhere) {
  // Source: a one-node cluster that takes a snapshot.
  SnapCluster src("snap-app-src", 1);
  src.start(0);
  src.propose_many(20, "a");
  ASSERT_TRUE(src.trigger(0).ok());
  ASSERT_TRUE(src.wait_for([&] { return src.events(0).snapshot_done > 0; }));
  auto files = src.snapshot_files(0);
  ASSERT_EQ(files.size(), 1u);
  const std::string path = src.dir(0) + "/snapshots/1/" + files[0];
  auto expected = src.state(0);
  src.stop(0);

  // Target: node 1 of a two-node cluster whose peer never starts (no leader:
  // a follower may install).
  SnapCluster dst("snap-app-dst", 2);
  dst.start(0);
  Node& n = dst.node(0);
  {
    std::ifstream in(path, std::ios::binary);
    auto st = n.run(kGroup, [&n, &in]() { return n.install_snapshot(kGroup, in); });
    ASSERT_TRUE(st.ok()) << st.error().to_string();
  }
  EXPECT_EQ(dst.state(0), expected);
  EXPECT_EQ(dst.events(0).snapshot_done.load(), 1);
  {
    // The same one again is at or below the commit index now: refused.
    std::ifstream in(path, std::ios::binary);
    auto st = n.run(kGroup, [&n, &in]() { return n.install_snapshot(kGroup, in); });
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().kind(), base::ErrorKind::kInvalidArgument);
  }
  {
    // A damaged file is refused before anything changes.
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes[bytes.size() / 2] ^= 1;
    std::istringstream bad(bytes);
    auto st = n.run(kGroup, [&n, &bad]() { return n.install_snapshot(kGroup, bad); });
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().kind(), base::ErrorKind::kCorruption);
  }
  // Survives a restart: restored from the installed file.
  dst.stop(0);
  dst.start(0);
  ASSERT_TRUE(dst.wait_for([&] { return dst.state(0) == expected; }));
}

}  // namespace
}  // namespace nori::raft
