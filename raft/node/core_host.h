// CoreHost: the per-core host of Raft groups (internal to raft::Node).
//
// One per reactor. It owns that core's WAL, its Transport, its groups (one
// Raft object each) and its metrics registry, and drives them in rounds:
//
//   inputs (peer messages, proposals, reads, ticks, durability acks)
//     -> mark the group dirty and raise the round signal
//   the round (driver_loop, once the reactor has run every ready coroutine):
//     for every dirty group: take_ready, then
//       1. append its hard state / truncation / entries to the WAL (in memory;
//          the WAL cuts ONE durable write for everything appended this round:
//          group commit across groups);
//       2. send its kNow messages at once (a leader's appends leave BEFORE its
//          own disk write completes; heartbeat replies never wait for a sync);
//       3. queue its kHardState / kEntries messages and the durability acks
//          behind the WAL position they need (durability_loop releases them;
//          a vote waits only for its own hard-state record, not for entries
//          appended after it);
//       4. apply committed entries in order, resolve proposals and reads,
//          publish events;
//       5. re-arm the group's deadline.
//   The transport's writer then sends everything queued this round to each
//   peer as one batch (one coalesced heartbeat message per peer).
//
// Ticks: one runtime Timer per core, armed at the earliest per-group
// deadline (an intrusive ordered set of per-group timer nodes, rounded up to
// tick_granularity_ms so groups due together tick together); a tick touches
// only the groups that are due.
//
// Snapshots (docs/node.md, "Snapshots"), for groups whose hooks set
// capture_snapshot / restore_snapshot; each such group has a SnapshotStore in
// <data_dir>/snapshots/<group>/:
//   taking: Ready::snapshot->request -> capture the view on this core (before
//     this Ready's committed entries are applied: the view is exactly at the
//     requested index) -> the SnapshotWorker thread writes it (.tmp, sync,
//     rename, sync dir) -> back on the core: Raft::snapshot_taken, older
//     files removed -> compact_before -> Wal::mark_compacted.
//   sending: one chunk per SnapshotSend, read from the pinned file (a
//     blocking read of snapshot_chunk_bytes, counted), admitted by the core's
//     TransferLimiter (transfers_max, bytes/s), sent on the bulk lane.
//   receiving: each accepted chunk written (a blocking write, counted) and
//     acknowledged; after the last one the worker finishes the file (sync,
//     digest and identity, rename, sync dir), then the install: reset record
//     durable -> restore_snapshot -> Raft::snapshot_installed. The group's
//     rounds wait during the install (its Ready accumulates), so nothing is
//     appended to its log between the reset record and the core's reset.
//
// Peers and membership (docs/node.md, "Membership"): the transport admits
// and dials the members of every configuration a group here may still act
// under (refresh_peers, after configuration changes); the `peers` list only
// while some group has no configuration (joining). change_member appends
// the configuration entry on the leader and, with MemberWait::kComplete,
// waits until the change has settled (check_member_waiters after rounds).
// Address books (address_gossip.h): when a priority link comes up, and
// whenever the members of this core's configurations or their addresses
// change, the core sends each connected peer its book; a book from a member
// introduces the nodes this core's log has never named (a member added while
// this node was down), so it admits and dials them.
//
// Quiescence and liveness (docs/node.md, "Quiescence"; RaftConfig::quiesce):
// this core is every group's NodeLiveness. It records when it last heard
// anything from each peer (any group message, heartbeat batch or reply) and
// every heartbeat_ms stages one liveness ping per admitted peer (an entry of
// the reserved group kNodeControlGroup in the coalesced heartbeat batch,
// which the receiver skips after noting the sender live). A peer silent for
// election_timeout_max_ms is not live: each quiesced group is told
// (Raft::liveness_lost), wakes if that peer leads it or follows it, and goes
// back on the tick wheel. A quiesced group is off the wheel (next_tick() is
// max), so 10,000 idle groups cost one timer per core and one ping per peer.
// Quiesce heartbeats (one per follower when a group quiesces) travel as
// full group messages: the coalesced batch has no flag for them.
//
// Threading: every method runs on this core's reactor except the constructor
// (alien, before start) and the stats reads that are atomics.
#pragma once

#include <deque>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/signal.h"
#include "net/transport.h"
#include "raft/codec.h"
#include "raft/node/address_gossip.h"
#include "raft/node/config.h"
#include "raft/node/events.h"
#include "raft/node/node.h"
#include "raft/node/peer_pins.h"
#include "raft/node/removed_groups.h"
#include "raft/node/snapshot_worker.h"
#include "raft/node/wal_storage.h"
#include "raft/raft.h"
#include "raft/snapshot/limiter.h"
#include "raft/snapshot/store.h"
#include "runtime/metrics.h"
#include "runtime/oneshot.h"
#include "runtime/reactor.h"
#include "runtime/timer_set.h"
#include "wal/wal.h"

namespace nori::raft {

using runtime::OneShot;

class CoreHost final : public net::TransportHandler, public NodeLiveness {
 public:
  CoreHost(Node& node, const RaftConfig& cfg, unsigned core, uint64_t incarnation);
  ~CoreHost() override;

  // On the core: opens the WAL, the transport, recovers the groups.
  runtime::Task<base::Status> start(std::vector<GroupId> initial_groups);
  runtime::Task<void> close();

  runtime::Task<base::Result<Index>> propose(GroupId g, std::string data, TimePoint called);
  runtime::Task<base::Status> read(GroupId g, ReadMode mode, TimePoint called);
  base::Status transfer_leader(GroupId g, NodeId target);
  // A coroutine only to read the group's configuration entries through the
  // WAL's io_uring path before Raft is constructed (raft/node/wal_storage.h);
  // it does not suspend for a group whose log is empty or all in memory.
  runtime::Task<base::Status> add_group(GroupId g);
  base::Status subscribe_applied(GroupId g, ApplyFn fn, bool manual_ack);
  base::Status ack_applied(GroupId g, Index index);
  base::Status trigger_snapshot(GroupId g);
  // Membership (raft/raft.h): proposed on the leader; the change then runs
  // by itself (learner, caught up, joint, new configuration) and the caller
  // waits until it has settled: the latest configuration committed, neither
  // joint nor with a promotion pending (or member_change_timeout_ms).
  runtime::Task<base::Status> change_member(GroupId g, bool adding, NodeId id, std::string addr,
                                            Node::MemberWait wait);
  base::Status abandon_member_change(GroupId g);
  base::Result<Membership> membership(GroupId g);
  runtime::Task<base::Status> install_snapshot(GroupId g, std::istream& in);

  // ---- Group lifecycle and node-wide membership (core_host_lifecycle.cc) ----
  // create_group: add_group, refused (kBusy) while a removal of the same id
  // is still cleaning up. remove_group: docs in node.h; the group leaves in
  // the next round (its Ready dropped, its waiters failed, a remove record
  // appended), then this call waits for the record to be durable and for
  // the snapshot files to be deleted (on the snapshot worker).
  // create_group also takes g off the removed list (removed_groups.h) first.
  runtime::Task<base::Status> create_group(GroupId g);
  runtime::Task<base::Status> remove_group(GroupId g, bool force);
  // The ids this core removed, loaded by Node before start() (alien thread).
  void set_removed_groups(std::unique_ptr<RemovedGroups> removed) { removed_ = std::move(removed); }
  // One group's part of Node::add_node / remove_node: the change on this
  // node if it leads g, else forwarded to g's leader over this core's link
  // (a node-control message, node_control.h), retried on kNotLeader / kBusy
  // until `deadline`.
  runtime::Task<base::Status> change_member_anywhere(GroupId g, bool adding, NodeId id,
                                                     std::string addr, Node::MemberWait wait,
                                                     TimePoint deadline);
  // Node::add_node / remove_node on this core: change_member_anywhere for
  // every group hosted here (kNodeChangeParallelMax at once).
  runtime::Task<std::vector<std::pair<GroupId, base::Status>>> change_member_all(
      bool adding, NodeId id, std::string addr, Node::MemberWait wait, TimePoint deadline);
  std::vector<GroupId> local_groups() const;

  const runtime::metrics::Registry& registry() const { return registry_; }
  void collect(NodeMetricsSnapshot& out) const;  // on the core
  uint16_t port() const { return port_; }

  // net::TransportHandler
  void on_message(net::NodeId from, net::GroupId group, net::MessageType type,
                  std::string_view payload) override;
  void on_heartbeats(net::NodeId from, std::span<const net::HeartbeatEntry> entries) override;
  void on_heartbeat_replies(net::NodeId from,
                            std::span<const net::HeartbeatReply> replies) override;
  void on_dropped(net::NodeId to, std::span<const net::GroupId> groups) override;
  void on_peer_identified(net::NodeId peer, uint64_t incarnation) override;
  void on_link_up(net::NodeId peer, net::Lane lane) override;

  // NodeLiveness: `node` was heard from within election_timeout_max_ms of
  // `now` (false for a node never heard from).
  bool node_live(NodeId node, TimePoint now) const override;

 private:
  struct Group;
  struct GroupTimer final : runtime::TimerNode {
    GroupTimer(Group* g, CoreHost* h) : TimerNode(&GroupTimer::fire_node), group(g), host(h) {}
    static void fire_node(runtime::TimerNode* n);
    Group* group;
    CoreHost* host;
  };
  struct PendingProposal {
    OneShot<ProposalResult>* waiter = nullptr;
  };
  struct Stage {
    Index index = 0;
    TimePoint called{};
  };
  // A change_member caller waiting for its change to settle (its frame owns
  // it; the group holds the pointer until it resolves it).
  struct MemberWaiter {
    bool adding = false;
    NodeId id = kNoNode;
    OneShot<base::Status> done;
  };
  // A group's snapshot state (only for groups with snapshot hooks).
  struct Outgoing {
    snapshot::TransferKey key;
    snapshot::SnapshotFile file;  // pinned while the transfer runs
  };
  struct SnapState {
    std::function<base::Result<std::unique_ptr<SnapshotView>>()> capture;
    std::function<base::Status(snapshot::SnapshotSource&)> restore;
    std::unique_ptr<snapshot::SnapshotStore> store;
    std::map<Index, snapshot::SnapshotFile> files;  // durable files by index
    bool taking = false;                            // a view is being written
    // Receiving (follower).
    std::unique_ptr<snapshot::SnapshotReceiver> receiver;
    SnapshotMeta recv_meta;
    Term recv_term = 0;
    bool finishing = false;   // the last chunk's file is being finished
    bool installing = false;  // reset record .. snapshot_installed: rounds wait
    // Sending (leader), by follower.
    std::map<NodeId, Outgoing> sending;
  };
  // A remove_group caller (its frame owns it; Group::removal points to it
  // until the round takes the group out).
  struct RemoveRequest {
    OneShot<base::Result<wal::Position>> appended;   // the remove record's position
    std::unique_ptr<snapshot::SnapshotStore> store;  // kept until the worker's jobs ran
  };
  struct Group {
    Group(GroupId id, CoreHost* host) : id(id), timer(this, host) {}
    // A group removed while quiesced leaves the count (remove_group).
    ~Group() {
      if (quiesced) {
        --timer.host->quiesced_count_;
        timer.host->quiesced_gauge_.set(static_cast<int64_t>(timer.host->quiesced_count_));
      }
    }
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;
    GroupId id;
    std::unique_ptr<WalStorage> storage;
    std::unique_ptr<Raft> raft;
    Ready ready;
    bool dirty = false;
    bool quiesced = false;  // as of the last publish_status (raft_quiesced_groups)
    GroupTimer timer;
    std::unordered_map<uint64_t, OneShot<ProposalResult>*> proposals;
    std::unordered_map<uint64_t, OneShot<ReadResult>*> reads;
    LazyDeque<Stage> stages;     // accepted proposals of this node, by index
    size_t stages_wal_done = 0;  // prefix of `stages` already durable locally
    // Applied stream.
    ApplyFn apply_fn;
    bool manual_ack = false;
    Index delivered = 0;     // highest index handed to the application (or skipped)
    Index last_normal = 0;   // highest kNormal index handed to the application
    Index acked = 0;         // ack_applied
    Index raft_applied = 0;  // reported to Raft::applied
    wal::Position last_hs_pos = 0;
    Role last_role = Role::kFollower;
    std::shared_ptr<GroupStatusCell> cell;
    runtime::metrics::Gauge* role_gauge = nullptr;
    std::unique_ptr<SnapState> snap;  // null: no snapshot hooks
    uint64_t configs_seen = 0;        // Raft::configurations_version() last acted on
    // At most two: one change at a time, plus the removal of a pending
    // learner (which abandons that change).
    std::vector<MemberWaiter*> member_waiters;
    RemoveRequest* removal = nullptr;  // remove_group asked: the next round takes it out
  };
  // Work released once the WAL is durable at `pos`.
  struct Deferred {
    wal::Position pos = 0;
    GroupId group = 0;
    std::optional<HardState> hs;
    std::optional<std::pair<Index, Term>> entries;
    std::vector<Message> messages;
  };

  Group* find(GroupId g);
  void mark_dirty(Group* g);
  runtime::Task<void> driver_loop();
  runtime::Task<void> durability_loop();
  runtime::Task<void> run_round();
  runtime::Task<void> handle_ready(Group* g);
  template <typename F>
  runtime::Task<std::optional<wal::Position>> wal_append(F append);
  void run_deferred(Deferred& d, TimePoint now);
  void defer(Deferred d);
  void send(Message&& m);
  void apply_committed(Group* g, std::vector<Entry>& committed, TimePoint now);
  void arm_tick_timer();
  std::pair<size_t, size_t> connected_voters(const Group* g) const;
  void report_applied(Group* g, TimePoint now);
  void on_entries_durable(Group* g, Index index, TimePoint now);
  void publish_status(Group* g);
  void rearm(Group* g);
  void on_tick();
  void publish_gauges(TimePoint now);
  TimePoint quantize(TimePoint t) const;
  void fail_all_waiters(Group* g, base::ErrorKind kind, const char* why);
  // Snapshots.
  base::Result<snapshot::SnapshotFile> recover_snapshot(GroupId id, snapshot::SnapshotStore& store);
  runtime::Task<void> handle_snapshot_work(Group* g, SnapshotWork& sw);
  void take_snapshot(Group* g, const SnapshotMeta& meta);
  void on_snapshot_written(GroupId id, SnapshotMeta meta,
                           base::Result<snapshot::SnapshotFile> file);
  void send_snapshot_chunk(Group* g, const SnapshotSend& ss);
  void end_transfer(Group* g, NodeId to);
  runtime::Task<void> send_bulk_later(TimePoint at, NodeId to, GroupId group, std::string buf);
  void receive_chunk(Group* g, SnapshotChunkIn& in);
  void on_received_file(GroupId id, SnapshotMeta meta, Term leader_term,
                        base::Result<snapshot::SnapshotFile> file);
  runtime::Task<base::Status> install(Group* g, SnapshotMeta meta, snapshot::SnapshotFile file);
  runtime::Task<void> install_received(GroupId id, SnapshotMeta meta, snapshot::SnapshotFile file);
  void remove_superseded(Group* g, Index newest);
  void spawn_gated(runtime::Task<void> t);
  // Asynchronous reads of old entries (raft/storage.h, "Asynchronous reads"):
  // WalStorage's FetchStarter. Spawns fetch_task and returns its ticket (0
  // if shutting down).
  uint64_t start_fetch(GroupId g, Index lo, Index hi, uint64_t bytes_max);
  // Reads [lo, hi) with Wal::read_entries, hands the result to the group's
  // storage and, if it was the fetch the storage waits for, re-drives the
  // group (Raft::entries_fetched, then the next round).
  runtime::Task<void> fetch_task(GroupId g, uint64_t ticket, Index lo, Index hi,
                                 uint64_t bytes_max);
  runtime::Task<void> gated(runtime::Task<void> t);
  void publish(Group* g, NodeEventKind kind);
  // Membership: the transport accepts every member of every configuration a
  // group on this core may act under (plus the bootstrap peers) and dials
  // the addresses those configurations record.
  void refresh_peers();
  // Whether r's configurations name a node the transport does not admit
  // yet, or an address it does not dial yet (refresh_peers at once).
  bool names_unknown_peer(const Raft& r) const;
  std::vector<MemberAddress> known_addresses() const;
  // Address books (address_gossip.h): sends book_out_ to `peer` (best
  // effort: a lost book is sent again at the next link-up or change).
  void send_address_book(NodeId peer);
  // The incarnation the transport requires of `peer`: its pin here, else
  // (introduced) the one its book gave, else 0 (any).
  uint64_t required_incarnation(NodeId peer) const;
  void on_address_book(NodeId from, std::string_view payload);
  // Rebuilds book_out_ from named_ (end of refresh_peers, and when a pin is
  // taken); sends it to every connected peer if it changed.
  void update_address_book();
  // Resolves the group's member waiters once its change has settled.
  void check_member_waiters(Group* g);
  // Liveness (see the header comment).
  void note_heard(NodeId peer, TimePoint now);
  void on_liveness_tick();
  // Lifecycle (core_host_lifecycle.cc).
  base::Status check_removable(Group* g, bool force) const;
  // In run_round only (no other round step holds the group): takes g out
  // of every structure of this core, appends its remove record, destroys it.
  runtime::Task<void> retire_group(Group* g);
  void on_node_control(NodeId from, std::string_view payload);
  // close(): forwarded changes still waiting for a reply get kShuttingDown.
  void fail_forwards();
  // Adds / takes g to / off the removed list, durable on return (written on
  // the snapshot worker). On error the list is as before.
  runtime::Task<base::Status> persist_removed(GroupId g, bool removed);
  runtime::Task<void> serve_member_request(NodeId from, uint64_t request_id, GroupId g, bool adding,
                                           NodeId id, std::string addr, Node::MemberWait wait);

  Node& node_;
  const RaftConfig& cfg_;
  const unsigned core_;
  const uint64_t incarnation_;
  std::unique_ptr<wal::Wal> wal_;
  uint64_t fetch_tickets_ = 0;  // last ticket handed out by start_fetch
  std::unique_ptr<net::Transport> transport_;
  std::unique_ptr<SnapshotWorker> worker_;
  std::unique_ptr<snapshot::TransferLimiter> limiter_;
  std::map<NodeId, std::string> peer_addr_;  // "host:port" (core 0) dialled, by node
  std::set<NodeId> admitted_;                // the transport's accepted nodes (refresh_peers)
  std::unique_ptr<PeerPins> pins_;           // incarnations peers proved (peer_pins.h)
  bool peers_dirty_ = false;                 // a group's configurations changed this round
  // Address books (address_gossip.h). vouchers_: the nodes admitted from
  // configurations (and contacts), whose books are taken; log_named_: every
  // node a configuration here has named since start (never introduced);
  // book_out_: what this core tells its peers (encoded, sent as is).
  AddressGossip gossip_;
  std::set<NodeId> vouchers_;
  std::set<NodeId> named_;  // the members the configurations name now (book_out_'s)
  std::set<NodeId> log_named_;
  std::map<NodeId, uint64_t> introduced_;  // admitted on a book's word, with its incarnation
  std::string book_out_;
  bool starting_ = true;  // start(): peers refreshed once, after every group
  uint16_t port_ = 0;
  std::unordered_map<GroupId, std::unique_ptr<Group>> groups_;
  std::vector<Group*> dirty_;
  std::deque<Deferred> deferred_;
  net::Signal round_signal_;
  net::Signal deferred_signal_;
  runtime::TimerSet deadlines_;
  std::unique_ptr<runtime::Timer> tick_timer_;
  TimePoint tick_at_ = TimePoint::max();
  TimePoint last_gauges_{};  // publish_gauges
  std::vector<Group*> round_batch_;
  // Lifecycle: ids removed whose snapshot files are still being deleted
  // (create_group refuses them until then), and node-control requests this
  // core forwarded and waits for, by request id (bounded:
  // kForwardsInFlightMax).
  std::set<GroupId> retiring_;
  std::unordered_map<uint64_t, OneShot<base::Status>*> forwards_;
  uint64_t next_forward_id_ = 1;
  uint32_t served_in_flight_ = 0;           // serve_member_request running
  std::unique_ptr<RemovedGroups> removed_;  // removed_groups.h
  runtime::CancelScope loops_scope_;
  runtime::Gate loops_gate_;
  bool closing_ = false;
  uint64_t next_request_id_ = 1;
  // The test-only knobs' counts (RaftConfig::unsafe_snapshot_*_for_testing).
  uint32_t corrupted_chunks_ = 0;
  uint32_t dropped_chunks_ = 0;
  std::string payload_arena_;  // reused per append
  std::vector<uint64_t> terms_scratch_;
  std::vector<std::string_view> views_scratch_;
  std::vector<size_t> offsets_scratch_;

  runtime::metrics::Registry registry_;
  runtime::metrics::Histogram& commit_ms_;
  runtime::metrics::Histogram& apply_ms_;
  runtime::metrics::Histogram& read_index_ms_;
  runtime::metrics::Histogram& stage_queued_;
  runtime::metrics::Histogram& stage_leader_wal_;
  runtime::metrics::Histogram& stage_quorum_;
  runtime::metrics::Histogram& stage_applied_;
  runtime::metrics::Histogram& round_groups_;
  runtime::metrics::Counter& elections_;
  runtime::metrics::Counter& send_refused_;
  runtime::metrics::Counter& messages_lost_;
  runtime::metrics::Gauge& apply_queue_;
  runtime::metrics::Gauge& groups_gauge_;
  runtime::metrics::Gauge& wal_writes_;
  runtime::metrics::Gauge& wal_entries_;
  runtime::metrics::Gauge& wal_bytes_;
  runtime::metrics::Gauge& net_bytes_sent_;
  runtime::metrics::Gauge& net_frames_sent_;
  runtime::metrics::Gauge& net_refused_conns_;
  runtime::metrics::Gauge& net_queue_bytes_;
  runtime::metrics::Gauge& storage_disk_reads_;
  runtime::metrics::Counter& snapshots_taken_;
  runtime::metrics::Counter& snapshots_installed_;
  runtime::metrics::Counter& snapshot_failures_;
  runtime::metrics::Counter& snapshot_chunks_sent_;
  runtime::metrics::Counter& snapshot_chunks_received_;
  runtime::metrics::Counter& snapshot_transfers_deferred_;
  runtime::metrics::Counter& snapshot_reactor_io_;        // blocking chunk reads/writes
  runtime::metrics::Counter& snapshot_reactor_io_bytes_;  // their bytes

  // Liveness: one entry per peer heard from (a handful: linear search).
  struct PeerLiveness {
    NodeId id = kNoNode;
    TimePoint heard{};  // last message of any kind from it
    bool lost = false;  // reported lost to the quiesced groups, not heard since
  };
  std::vector<PeerLiveness> liveness_;
  std::unique_ptr<runtime::Timer> liveness_timer_;
  uint64_t liveness_seq_ = 0;  // round field of the pings (diagnostics only)
  size_t quiesced_count_ = 0;  // groups with Group::quiesced
  std::vector<NodeId> lost_scratch_;
  runtime::metrics::Gauge& quiesced_gauge_;
  runtime::metrics::Counter& liveness_lost_;
  runtime::metrics::Counter& liveness_pings_;
  // Asynchronous reads of old entries completed (fetch_task), any outcome.
  runtime::metrics::Counter& storage_fetches_;
  // Address books: received and taken, refused (malformed or from a node
  // that may not vouch), and the members admitted on their word right now.
  runtime::metrics::Counter& address_books_received_;
  runtime::metrics::Counter& address_books_refused_;
  runtime::metrics::Gauge& members_introduced_;
};

}  // namespace nori::raft
