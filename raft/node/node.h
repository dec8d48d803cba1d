// raft::Node: a node of a nori-raft cluster, the library's embedding API.
//
// What it is for: running many Raft groups (shards) on one machine, one
// reactor per core, each core hosting the groups placed on it over its own
// write-ahead log (wal/) and its own peer links (net/). The application
// proposes commands, waits for reads to be safe, and consumes the committed
// entries of each group in order.
//
//   RaftConfig cfg = ...;                       // raft/node/config.h
//   auto node = Node::open(cfg);                // recovers every group from the WAL
//   if (!node) { fmt::print("{}\n", node.error().to_string()); return 1; }
//   Node& n = **node;
//   // On a reactor of n.runtime() (or from any thread through n.run(g, ...)):
//   base::Result<Index> idx = co_await n.propose(g, "SET key value");
//   base::Status ok = co_await n.read(g, ReadMode::kLease);  // then read local state
//
// Threading: propose / read / read_index / transfer_leader / create_group /
// subscribe_applied / ack_applied are coroutines callable on ANY reactor of
// this node's runtime: they are forwarded to the group's core (submit_to) and
// the result comes back. From a thread that is not a reactor (main, tests)
// use run(g, fn), which blocks. is_leader / leader / metrics_text may be
// called from any thread (they read published atomics; they are hints: the
// role can change the next instant).
//
// Errors are values (runtime/base/result.h) whose kind says what a caller can
// do: kNotLeader (hint() = leader id, 0 unknown), kNoQuorum, kBusy, kTimedOut,
// kOutcomeUnknown (the proposal MAY have committed), kShuttingDown, kNotFound
// (no such group here), kInvalidArgument, kIo, kCorruption. Every kind but
// kOutcomeUnknown means the proposal certainly did not take effect.
//
// Durability: propose resolves once the entry is committed, i.e. durable on a
// majority (the leader's own disk included). Nothing is acknowledged earlier.
//
// Applied stream: every group gets its GroupHooks from NodeCallbacks::
// group_hooks when it is created (at open, when recovered from the WAL, or by
// create_group), on the group's core, before any entry is applied. hooks.apply
// receives the committed kNormal entries (index, bytes) in index order on the
// group's core, starting at hooks.applied + 1. Where it starts after a
// restart: at hooks.applied + 1 again, i.e. the application returns the index
// its state machine has durably applied (0 replays every committed entry the
// WAL still holds, the right choice for an in-memory state machine). Without
// an apply function entries count as applied at once. subscribe_applied(g,
// fn) replaces the function later (entries already applied are not
// redelivered). With manual_ack = false an entry counts as applied when fn
// returns; with manual_ack = true only once the application calls
// ack_applied(g, index) (linearizable reads wait for that).
//
// Snapshots (docs/node.md, "Snapshots"): a group whose hooks set both
// capture_snapshot and restore_snapshot takes snapshots (automatically past
// RaftConfig::snapshot_log_bytes / snapshot_entries, or on trigger_snapshot),
// compacts its log behind them, sends them in chunks to followers the log no
// longer reaches and installs the ones it receives. capture_snapshot runs on
// the group's core and returns a point-in-time view; the view's write() runs
// later on a background thread (it must not touch the live state machine).
// restore_snapshot runs on the group's core and replaces the whole state
// machine; apply then continues at the snapshot index + 1. A group without
// those hooks never takes or installs a snapshot and never compacts its log.
//
// Membership (docs/node.md, "Membership"): add_member(g, id, "host:port")
// on the leader admits a node started with RaftConfig::join; it joins as a
// learner and the core promotes it through a joint configuration once it
// caught up; remove_member(g, id) takes a member out the same way. The
// configurations carry the members' addresses, so every replica learns
// where a new member listens. add_node(id, addr) / remove_node(id) do that
// for every group this node hosts in one call, from any node: each group's
// change is forwarded to its leader (node_control.h) and retried until
// member_change_timeout_ms; the result is a per-group report.
//
// Group lifecycle (docs/node.md, "Group lifecycle"): create_group(g) adds
// an empty group at run time; remove_group(g) stops and forgets this node's
// replica (waiters failed, a remove record durable in the core's WAL, then
// its snapshot files deleted): a restart does not recover it and creating
// g again starts empty. It acts on this node only: unless forced it is
// refused while the group still counts on this replica (take the node out
// with remove_member / remove_node first); force is for retiring the group
// on every node. Never create g again on a node the other replicas still
// list (a forgotten vote, like a wiped disk).
#pragma once

#include <atomic>
#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "raft/membership.h"
#include "raft/node/config.h"
#include "raft/node/event_log.h"
#include "raft/node/events.h"
#include "raft/snapshot/store.h"
#include "raft/types.h"
#include "runtime/base/result.h"
#include "runtime/metrics.h"
#include "runtime/runtime.h"
#include "runtime/task.h"

namespace nori::raft {

class CoreHost;

// Called on the group's core with each committed entry, in index order.
using ApplyFn = std::function<void(Index index, std::string_view data)>;

// A point-in-time view of one group's state machine, captured on the group's
// core when the core asks for a snapshot (it reflects exactly the entries
// applied so far, i.e. up to the snapshot index) and written out later on a
// background thread. It must not touch the live state machine after capture.
class SnapshotView {
 public:
  virtual ~SnapshotView() = default;
  // Streams the state machine's bytes; called once, on a non-reactor thread.
  // An error from sink.write() (the node is closing, the disk failed) must be
  // returned as is.
  virtual base::Status write(snapshot::SnapshotSink& sink) = 0;
};

struct GroupHooks {
  ApplyFn apply;            // empty: entries count as applied at once
  Index applied = 0;        // the state machine has applied up to here (durably)
  bool manual_ack = false;  // applied only once ack_applied says so
  // Snapshots (both set, or neither: then the group never takes snapshots and
  // its log is never compacted). Called on the group's core.
  // capture: a view of the state as of the last applied entry.
  std::function<base::Result<std::unique_ptr<SnapshotView>>()> capture_snapshot;
  // restore: replace the whole state machine with the snapshot's (called on
  // the group's core; after it returns ok, apply continues at snapshot index + 1).
  std::function<base::Status(snapshot::SnapshotSource&)> restore_snapshot;
};

struct NodeCallbacks {
  // Called on the group's core when a group is created or recovered.
  std::function<GroupHooks(GroupId)> group_hooks;
  // Called on the group's core for every event (events.h).
  EventFn on_event;
};

// Published role of a group on this node, readable from any thread.
struct GroupStatusCell {
  std::atomic<uint64_t> leader{0};
  std::atomic<uint64_t> term{0};
  std::atomic<uint8_t> role{0};
  std::atomic<uint64_t> commit{0};
  std::atomic<uint64_t> applied{0};
};

// A merged view of one node's latency histograms and counters (nanoseconds).
struct NodeMetricsSnapshot {
  runtime::metrics::HistogramSnapshot commit;      // propose call -> committed
  runtime::metrics::HistogramSnapshot apply;       // committed -> applied (per batch)
  runtime::metrics::HistogramSnapshot read_index;  // read call -> granted
  // Per-request stage breakdown (from the propose call):
  runtime::metrics::HistogramSnapshot stage_queued;      // -> appended on the group's core
  runtime::metrics::HistogramSnapshot stage_leader_wal;  // -> durable in the leader's WAL
  runtime::metrics::HistogramSnapshot stage_quorum;      // -> committed (quorum durable)
  runtime::metrics::HistogramSnapshot stage_applied;     // -> applied on the leader
  uint64_t elections = 0;
  uint64_t wal_writes = 0;   // durable writes (syncs)
  uint64_t wal_entries = 0;  // entries appended
  uint64_t wal_bytes = 0;    // bytes written
  uint64_t net_bytes_sent = 0;
  uint64_t net_messages_sent = 0;
  uint64_t send_refused = 0;
  uint64_t storage_disk_reads = 0;
};

class Node {
 public:
  // Validates the config, creates or recovers the data directory (node.meta
  // with the node's incarnation; one WAL per core), starts the runtime, the
  // transports and every group (RaftConfig::groups plus every group found in
  // the WAL). Alien thread only.
  static base::Result<std::unique_ptr<Node>> open(RaftConfig cfg, NodeCallbacks callbacks = {});
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Fails every waiting call with kShuttingDown, makes the WAL durable,
  // closes the links and stops the runtime. Alien thread; idempotent.
  void close();

  // --- per group (coroutines; on any reactor of runtime()) --------------------------
  runtime::Task<base::Result<Index>> propose(GroupId g, std::string data);
  runtime::Task<base::Status> read(GroupId g, ReadMode mode);
  runtime::Task<base::Status> read_index(GroupId g) { return read(g, ReadMode::kReadIndex); }
  runtime::Task<base::Status> transfer_leader(GroupId g, NodeId target);
  // Group lifecycle (docs/node.md, "Group lifecycle").
  // create_group: a new, empty group on this node (kInvalidArgument if it
  //   exists or the id is reserved: kNodeControlGroup; kBusy while a removal
  //   of the same id is still deleting its files).
  // remove_group: stops the group on this node and forgets it: its waiting
  //   calls fail (accepted proposals kOutcomeUnknown: the other replicas may
  //   still commit them; reads, member changes kShuttingDown / kOutcomeUnknown),
  //   its timers, transfers and partial snapshot receive stop, its Ready is
  //   dropped, a remove record is appended to the core's WAL and, once it is
  //   durable, the group's snapshot directory is deleted. When it returns
  //   ok the removal is durable: a restart does not recover the group, and
  //   create_group(g) later starts it empty (term 0, no vote, no entries).
  //   The id is kept on a per-core removed list (removed_groups.h): open()
  //   does not create it again from RaftConfig::groups; only create_group
  //   takes it off.
  //   It acts on THIS node only. Unless `force`, it is refused
  //   (kInvalidArgument, nothing changed) while this node is still a member
  //   of the group's configuration together with another node (a leader
  //   always is): take it out first with remove_member on the leader (or
  //   remove_node for every group), then remove_group here. `force` is for
  //   retiring the group on EVERY node (the application removes it
  //   everywhere; the replicas still running it meanwhile just lose a peer)
  //   or for a replica already given up. A forced removal of a member of a
  //   group that lives on elsewhere is a wiped disk for that group: never
  //   create the id again here while the others still list this node.
  //   Errors: kNotFound, kBusy (being removed already), kInvalidArgument,
  //   kShuttingDown (closing: not removed), kOutcomeUnknown (closing while
  //   the record was being written: a restart may find the group again).
  runtime::Task<base::Status> create_group(GroupId g);
  runtime::Task<base::Status> remove_group(GroupId g, bool force = false);
  runtime::Task<base::Status> subscribe_applied(GroupId g, ApplyFn fn, bool manual_ack = false);
  runtime::Task<base::Status> ack_applied(GroupId g, Index index);
  // Snapshots. trigger_snapshot: asks the group for a snapshot now (below
  // the thresholds); resolves once the request is handed to the core (the
  // snapshot is taken in the background; kSnapshotDone tells when).
  // kInvalidArgument if the group has no snapshot hooks.
  // install_snapshot: replaces this replica's state with a snapshot file the
  // application got elsewhere (the bytes of a snapshot file, header and
  // digest included, as written by a node: raft/snapshot/store.h), through
  // the same install order as a received one. Refused (kInvalidArgument) if
  // the snapshot is at or below the group's commit index; the stream is read
  // on the calling thread's reactor in chunks (blocking reads).
  runtime::Task<base::Status> install_snapshot(GroupId g, std::istream& snapshot);
  runtime::Task<base::Status> trigger_snapshot(GroupId g);
  // Membership, called on the group's leader.
  // add_member: `id` (started with RaftConfig::join) joins as a learner at
  //   `addr` ("host:port" of its core 0, numeric host, "[v6]:port"), catches
  //   up and is promoted to voter through a joint configuration with no
  //   further call.
  // remove_member: `id` leaves (a voter through a joint configuration).
  //   Removing the leader itself hands leadership to a caught-up voter first
  //   and fails with kNotLeader, hint = that voter: call again there.
  // `wait`: kAppended resolves once the first configuration entry is
  //   appended on the leader (the change then runs by itself; watch it with
  //   membership()); kComplete once the change has settled: the
  //   configuration with `id` a voter (add) / without `id` (remove)
  //   committed.
  // Errors: kNotLeader (hint), kBusy (a change or a leadership transfer in
  //   progress, or this leader has not committed an entry of its term yet:
  //   retry), kInvalidArgument (already / not a member, the last voter, a bad
  //   address): nothing changed. With kComplete, after acceptance:
  //   kCancelled (the change was abandoned before it completed),
  //   kOutcomeUnknown (not complete within member_change_timeout_ms, or the
  //   node is closing: it may still complete).
  enum class MemberWait : uint8_t { kAppended, kComplete };
  runtime::Task<base::Status> add_member(GroupId g, NodeId id, std::string addr,
                                         MemberWait wait = MemberWait::kAppended);
  runtime::Task<base::Status> remove_member(GroupId g, NodeId id,
                                            MemberWait wait = MemberWait::kAppended);
  // Gives up the change in progress (a learner that never catches up, a
  // joint configuration whose new half has no reachable majority): a
  // pending promotion is dropped with its learner; a joint configuration
  // goes back to the old one. Leader only; kInvalidArgument when no change
  // is in progress. The waiting add_member / remove_member gets kCancelled.
  runtime::Task<base::Status> abandon_member_change(GroupId g);
  // The configuration in effect on this replica (its latest configuration
  // entry, committed or not; the snapshot's or the bootstrap one before
  // any), with the member addresses it records.
  runtime::Task<base::Result<Membership>> membership(GroupId g);

  // --- node-wide membership (docs/node.md, "Node-wide membership") ----------
  // add_node / remove_node: add_member(g, id, addr) / remove_member(g, id)
  // for every group this node hosts, in one call, from any node: each
  // group's change runs on this node if it leads the group, else it is
  // forwarded to the group's leader over the peer link of the group's core
  // (a node-control message: node_control.h, authenticated like the rest of
  // the link) and run there as a local call would. kNotLeader (the hint is
  // followed), kBusy, kNoQuorum and unanswered requests are retried until
  // member_change_timeout_ms after the call; a group already in the wanted
  // state (as this replica's committed configuration says) is ok at once,
  // so calling again after a partial failure is safe. Coroutine, on any
  // reactor of runtime(); groups of one core run concurrently (at most
  // kNodeChangeParallelMax), cores one after the other.
  // Result: per group, ok or the error of its change (kTimedOut: never
  // accepted in time; kOutcomeUnknown: an unanswered attempt may have run;
  // kInvalidArgument: refused by the leader; kCancelled / kOutcomeUnknown
  // with kComplete as for add_member).
  using NodeChangeReport = std::map<GroupId, base::Status>;
  runtime::Task<NodeChangeReport> add_node(NodeId id, std::string addr,
                                           MemberWait wait = MemberWait::kAppended);
  runtime::Task<NodeChangeReport> remove_node(NodeId id, MemberWait wait = MemberWait::kAppended);

  // --- any thread --------------------------------------------------------------
  bool is_leader(GroupId g) const;
  NodeId leader(GroupId g) const;  // kNoNode if unknown
  bool has_group(GroupId g) const;
  std::vector<GroupId> groups() const;
  std::string metrics_text() const;        // Prometheus text, every core merged
  NodeMetricsSnapshot metrics_snapshot();  // alien thread (visits every core)

  NodeId id() const { return cfg_.node_id; }
  uint64_t incarnation() const { return incarnation_; }
  const RaftConfig& config() const { return cfg_; }
  unsigned core_of(GroupId g) const { return placement(g, cfg_.cores); }
  runtime::Runtime& runtime() { return *rt_; }

  // Runs fn() (-> R or Task<R>) on the group's core from an alien thread and
  // waits for it: node.run(g, [&] { return node.propose(g, "x"); }).
  template <typename F>
  auto run(GroupId g, F fn) {
    return rt_->block_on(core_of(g), std::move(fn));
  }

  // Internal (CoreHost).
  void publish_event(const NodeEvent& e);
  GroupHooks group_hooks(GroupId g) const {
    return callbacks_.group_hooks ? callbacks_.group_hooks(g) : GroupHooks{};
  }
  GroupStatusCell* status_cell(GroupId g) const;
  void register_group(GroupId g, std::shared_ptr<GroupStatusCell> cell);
  void unregister_group(GroupId g);

 private:
  Node(RaftConfig cfg, NodeCallbacks callbacks);
  base::Status prepare_data_dir();
  base::Status start();
  runtime::Task<NodeChangeReport> change_node(bool adding, NodeId id, std::string addr,
                                              MemberWait wait);
  void start_metrics_http();
  void stop_metrics_http();

  RaftConfig cfg_;
  NodeCallbacks callbacks_;
  uint64_t incarnation_ = 0;
  std::unique_ptr<runtime::Runtime> rt_;
  std::vector<std::unique_ptr<CoreHost>> hosts_;
  mutable std::shared_mutex groups_mu_;  // group registration only (rare)
  std::map<GroupId, std::shared_ptr<GroupStatusCell>> cells_;
  // JSON lines (events_jsonl_path), written by its own thread: event_log.h.
  std::unique_ptr<EventLog> events_log_;
  int metrics_fd_ = -1;
  std::thread metrics_thread_;
  std::atomic<bool> metrics_stop_{false};
  bool closed_ = false;
};

}  // namespace nori::raft
