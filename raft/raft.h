// Raft: the pure state machine of one replica of one Raft group.
//
// What it is for: deciding, for one group on one node, what to send, what to
// persist, what to apply and which reads may be served. It does no I/O, owns
// no thread and reads no clock: the driver (raft::Node later; the simulator
// and tests now) feeds it messages, the current time of this node's clock
// (CLOCK_BOOTTIME in production, read fresh for every call: never a cached
// loop time, because lease decisions depend on it), proposals, reads, and
// durability/apply acknowledgements, then drains the outputs with
// take_ready(). Given the same Config (random_seed included) and the same
// inputs, it produces the same outputs.
//
//   Raft r(config, storage, BootClock::now());
//   r.step(std::move(msg), BootClock::now());
//   r.tick(BootClock::now());                     // by r.next_tick() at the latest
//   auto idx = r.propose(bytes, id, now, deadline);
//   r.read(ReadMode::kLease, read_id, BootClock::now());  // now read AFTER the read arrived
//   if (r.has_ready()) { r.take_ready(ready); ...persist, send, apply...; }
//   r.entries_persisted(i, t, now); r.hard_state_persisted(hs, now); r.applied(i, now);
//
// Ownership and threading: one Raft object per group per node, used by one
// thread (the reactor that owns the group). It keeps a reference to the
// LogStorage, which must outlive it. Nothing is durable when a call returns:
// durability is the driver's job, acknowledged back (raft/storage.h); the
// core never counts, grants or acknowledges anything that depends on
// durability before that acknowledgement (or before the marked messages
// leave after it, Ready::OutMessage::after).
//
// Crash: the core holds no state that must survive; a restarted replica is
// constructed from LogStorage (hard state + durable log) and starts with a
// full lease promise outstanding, unless its durable term is 0 (it never
// answered anyone; docs/lease.md).
//
// Replication: proposals made between two take_ready() calls leave as one
// append per follower (batching); the leader's own write runs in parallel
// and it counts itself once durable. Followers learn a new commit index with
// the next append or heartbeat (no extra message per commit), so a follower
// applies up to one heartbeat interval after the leader when idle.
//
// Reads (docs/lease.md for the lease argument):
//   kLease: granted with no round trip while the leader holds its lease, its
//     term has a committed entry, its post-election wait is over and the state
//     machine has applied the commit index seen when the read arrived;
//     otherwise it waits for a read-index round.
//   kReadIndex: one heartbeat round sent after the read arrived, shared by all
//     reads waiting for it; granted once a current-term entry is committed and
//     applied up to the read index.
//   kStaleNoGuarantee: any role, granted at once at the applied index.
//
// Membership (raft/membership.h; Raft thesis ch. 4, joint consensus):
//   - A configuration entry takes effect on every replica as soon as it is
//     APPENDED to its log (not when committed); truncating it reverts to the
//     previous configuration. Configurations move simple -> joint
//     (C_new voters, C_old outgoing) -> simple, the leave appended
//     automatically by the leader once the joint entry commits (a new leader
//     does it too, after its no-op commits, so a joint configuration never
//     outlives the leader that started it).
//   - In a joint configuration every quorum question (votes, commit,
//     check-quorum, lease, read-index) needs a majority of BOTH halves
//     (QuorumConfig).
//   - Learners receive the log and answer the leader (so they promise it
//     their lease like voters) but never vote, campaign or count in a quorum.
//     add_member() adds a learner marked for promotion; the leader promotes it
//     through a joint configuration once its match index reaches the commit
//     index (Config::promote_lag_entries_max).
//   - One change at a time: a change is refused with kBusy while a
//     configuration entry is uncommitted, the configuration is joint or a
//     promotion is pending, and by a leader that has not yet committed an
//     entry of its own term (an earlier leader's uncommitted change could
//     otherwise still commit next to a new one).
//   - lease: appending a configuration entry ends the leader's lease until a
//     heartbeat round sent AFTER the append is acknowledged by a quorum under
//     the new configuration's rule; reads waiting for an older round are
//     moved to that round.
//   - Removing the leader: remove_member(self) hands leadership to a caught-up
//     voter first (and returns kNotLeader with that voter as hint: retry
//     there). With no such voter the leader runs the change without counting
//     itself in C_new, and once C_new commits it hands over with TimeoutNow
//     (lease ended first) if a voter is caught up, then steps down.
//   - A stuck change (the new member never catches up, or C_new has no
//     reachable majority) is abandoned with abandon_member_change(): a
//     pending promotion is dropped with its learner; a joint configuration
//     goes back to C_old (safe at any time: every joint quorum contains a
//     majority of C_old).
//
// Snapshots (raft/storage.h for the driver's side of the contract):
//   - Requested in Ready::snapshot->request (the applied index, its term and
//     the configuration there, both halves if joint) when the log has grown
//     by Config::snapshot_log_bytes_max since the last snapshot, or the
//     applied index is Config::snapshot_entries_max past it, or on
//     trigger_snapshot(). The driver reports the durable file with
//     snapshot_taken(); the core then allows compaction below
//     (index - snapshot_keep_entries) in Ready::snapshot->compact_before.
//   - A follower whose next entry the leader no longer has gets the latest
//     snapshot: Ready::snapshot->sends asks the driver for one chunk at a time
//     (stop-and-wait; the driver's sender applies global concurrency and
//     byte-rate limits and pins the file until `finished`); each
//     SnapshotReply moves the offset. No progress for snapshot_timeout_ms
//     re-drives the transfer from the last acknowledged offset.
//   - The follower ignores (answers "done") a snapshot at or below its commit
//     index; accepts a chunk only at the offset it has written so far for
//     the same transfer (leader term, index, term at index), restarting from
//     0 for any other; hands accepted chunks to the driver
//     (Ready::snapshot->chunks), acknowledges them once written
//     (snapshot_chunk_written), and after the install steps of
//     raft/storage.h (snapshot_installed) resets its log and configuration to
//     the snapshot and answers done. A partial transfer is forgotten after
//     snapshot_timeout_ms without a chunk, and on restart.
//
// Quiescence (docs/node.md, "Quiescence"; only with Config::liveness set):
//   - A leader whose group has been idle for kQuiesceIdleRounds heartbeat
//     ticks (nothing uncommitted, unapplied or unsent; no proposal, read,
//     transfer or configuration change pending; every peer has acknowledged
//     the last round and matches the last index; every peer's node is live)
//     sends one last heartbeat round marked `quiesce` and stops ticking:
//     next_tick() returns TimePoint::max(), so the driver drops the group
//     from its tick wheel. A follower that receives it, and whose log ends
//     at the commit index it carries, stops its election timer likewise.
//   - Anything that needs the group wakes it: a proposal, a linearizable
//     read, a transfer or membership call on the leader, any message except
//     a heartbeat reply (and a quiesce heartbeat), a role change. The driver
//     calls liveness_lost(node) on quiesced groups when node-level liveness
//     of `node` is lost: a follower whose leader's node went silent wakes
//     and campaigns after its normal timeout; a leader wakes when a peer's
//     node went silent, and check-quorum steps it down if a quorum is gone.
//   - Waking a leader gives every peer whose node is live a fresh
//     check-quorum time (liveness stood in for its replies), and never
//     gives a lease: lease reads need a round sent after the wake
//     (lease_min_round_), so the first linearizable read after quiescence
//     costs one round trip and no lease earned before quiescence is used.
//   - Leader stickiness (pre-vote and vote requests ignored while the
//     leader is heard from) treats a quiesced follower whose leader's node
//     is live as having heard from it, so a rejoining node cannot depose a
//     quiesced leader.
//   - Safety never depends on quiescence or liveness: promises, leases and
//     votes are unchanged; liveness decides only when a group wakes.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "raft/config.h"
#include "raft/lazy_deque.h"
#include "raft/membership.h"
#include "raft/message.h"
#include "raft/quorum.h"
#include "raft/ready.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

// A snapshot of a replica's state, for tests, checkers and metrics.
struct RaftStatus {
  NodeId id = kNoNode;
  GroupId group = 0;
  Role role = Role::kFollower;
  Term term = 0;
  NodeId vote = kNoNode;
  NodeId leader = kNoNode;
  Index last_index = 0;
  Term last_term = 0;
  Index durable_index = 0;
  Index commit = 0;
  Index applied = 0;
  // Leader only: the end of the current lease (TimePoint{} if none), and the
  // end of the post-election wait (no commit, no lease read before it).
  TimePoint lease_until{};
  TimePoint leader_wait_until{};
  Index term_start_index = 0;  // leader only: index of its no-op
  bool lease_ended = false;    // leader only: a transfer ended its lease for this term
  // This node's promise to the leader it last answered (docs/lease.md).
  TimePoint promise_until{};
  NodeId promise_leader = kNoNode;
  Term promise_term = 0;
  uint64_t uncommitted_bytes = 0;
  // Elections this object started (real votes, not pre-votes), for
  // raft_elections_total.
  uint64_t elections_started = 0;
};

class Raft {
 public:
  // Reads the durable state from `storage`. `now` is this node's clock at
  // start: the replica promises nothing to anyone it could have answered
  // before the restart only after now + promise window (docs/lease.md).
  // Asserts config.validate().
  Raft(Config config, LogStorage& storage, TimePoint now);
  ~Raft();
  Raft(const Raft&) = delete;
  Raft& operator=(const Raft&) = delete;

  // Validates the config first; the error a caller can act on.
  static base::Result<std::unique_ptr<Raft>> create(Config config, LogStorage& storage,
                                                    TimePoint now);

  // --- inputs ------------------------------------------------------------------

  // Advances timers: election timeout, heartbeat rounds, check-quorum,
  // proposal deadlines, transfer timeout, end of the post-election wait. Call
  // it no later than next_tick(); calling it more often is harmless.
  void tick(TimePoint now);

  // A message from a peer of this group (m.group == group(), m.to == id()).
  // Messages from unknown nodes, of reserved types or stale terms are dropped
  // or answered as Raft prescribes; a malformed message cannot corrupt state.
  // `now` must be read from the clock AFTER the message was received: the
  // follower's promise and the new leader's wait are measured from it, and an
  // earlier (cached) time would shorten them (docs/lease.md). A later time is
  // always safe. The same holds for tick(): round send times may only be
  // earlier than the real send, so read the clock before sending.
  void step(Message m, TimePoint now);

  // Proposes a command. On success returns the index it was appended at (not
  // yet durable or committed); its outcome comes later as a ProposalResult
  // with `proposal_id`. Errors (the command was certainly NOT appended):
  //   kNotLeader (hint() = leader id or 0), kNoQuorum (leader lost contact
  //   with its quorum), kBusy (uncommitted bytes or pending proposals at their
  //   bound, or a leadership transfer is in progress), kTimedOut (deadline <=
  //   now), kInvalidArgument (payload larger than append_bytes_max).
  // After acceptance: kOutcomeUnknown when leadership or the deadline is lost
  // before commit.
  base::Result<Index> propose(std::string data, uint64_t proposal_id, TimePoint now,
                              TimePoint deadline);

  // Asks to serve a read. `now` must be read from the clock after the read
  // arrived. Immediate errors (certainly not served): kNotLeader for
  // linearizable reads on a non-leader, kBusy at reads_pending_max. Otherwise
  // exactly one ReadResult with `request_id` follows in a Ready (possibly the
  // very next one).
  base::Status read(ReadMode mode, uint64_t request_id, TimePoint now);

  // Planned handover to `target` (a voter): stop accepting proposals, catch
  // the target up, end this node's lease for the rest of the term, then send
  // TimeoutNow. Gives up after an election timeout (leases stay ended).
  // kNotLeader, kInvalidArgument (unknown target or self), kBusy (a transfer
  // is already running).
  base::Status transfer_leadership(NodeId target, TimePoint now);

  // Starts an election now (pre-vote first if configured). For tests and
  // operators; normal elections start from tick().
  void campaign(TimePoint now);

  // Membership changes (leader only; see the header comment). Each returns
  // the index of the configuration entry it appended (not yet committed).
  // Errors (nothing appended): kNotLeader (hint = leader), kBusy (a change is
  // in progress, this leader has not committed an entry of its term yet, or
  // a leadership transfer runs), kInvalidArgument (already / not a member,
  // removing the last voter).
  //   add_member: joins as a learner, promoted automatically once caught up.
  //   add_learner: joins as a learner and stays one.
  //   remove_member: a learner leaves at once; a voter through a joint
  //     configuration; this node: see "Removing the leader" (kNotLeader with
  //     the new leader as hint when leadership is handed over first).
  //   abandon_member_change: drops a pending promotion (and its learner) or
  //     leaves a joint configuration back to C_old. kInvalidArgument when no
  //     change is in progress.
  // `addresses` (raft/membership.h, "Addresses") are recorded in the new
  // configuration over those of the current one (the driver passes the new
  // member's address and those it knows of the others); addresses of nodes
  // that are not members of the new configuration are dropped.
  base::Result<Index> add_member(NodeId id, TimePoint now,
                                 std::span<const MemberAddress> addresses = {});
  base::Result<Index> add_learner(NodeId id, TimePoint now,
                                  std::span<const MemberAddress> addresses = {});
  base::Result<Index> remove_member(NodeId id, TimePoint now,
                                    std::span<const MemberAddress> addresses = {});
  base::Result<Index> abandon_member_change(TimePoint now);

  // Snapshots (see the header comment).
  // Asks for a snapshot at the next take_ready even below the thresholds.
  void trigger_snapshot();
  // The driver holds a durable snapshot file for `meta` (meta.index <= the
  // applied index). Older ones are superseded. The compaction point follows
  // in Ready::snapshot->compact_before.
  void snapshot_taken(const SnapshotMeta& meta, TimePoint now);
  // Follower: the chunk at `offset` of the current transfer is written, up
  // to `end_offset` (ignored unless it matches the transfer in progress).
  void snapshot_chunk_written(const SnapshotMeta& meta, Term leader_term, uint64_t end_offset,
                              TimePoint now);
  // Follower: the received file failed verification (digest or identity):
  // the transfer restarts from offset 0.
  void snapshot_receive_failed(TimePoint now);
  // Follower: steps 1-3 of the install order are done for `meta`: the log
  // and configuration are reset to it and the leader is told.
  void snapshot_installed(const SnapshotMeta& meta, TimePoint now);
  // The latest snapshot the core knows (taken here or installed).
  const SnapshotMeta& snapshot() const { return snapshot_; }

  // Durability acknowledgements (raft/storage.h). Out-of-date ones are ignored.
  void hard_state_persisted(const HardState& hs, TimePoint now);
  void entries_persisted(Index index, Term term, TimePoint now);

  // The state machine has applied every entry up to `index` (monotonic).
  void applied(Index index, TimePoint now);

  // The storage completed a read it started when entries() answered
  // kUnavailable (raft/storage.h, "Asynchronous reads"). Re-drives what
  // waited on it: a leader retries the appends of the followers whose
  // entries were missing (now, so the fetched entries are used before
  // another fetch can replace them), and committed entries that could not be
  // read are emitted at the next take_ready(). Late or spurious calls are
  // harmless: a node that is no longer leader sends nothing, and a retried
  // append obeys the same flow control as any other (no duplicate sends).
  void entries_fetched(TimePoint now);

  // Quiescence (see the header comment). The driver's node-level liveness
  // lost `node`: a quiesced follower led by `node`, or a quiesced leader
  // with `node` among its peers, wakes. No-op otherwise.
  void liveness_lost(NodeId node, TimePoint now);
  // Wakes the group if quiesced (operators, tests, drivers). A leader's
  // live peers count as heard from at `now`.
  void unquiesce(TimePoint now);
  bool quiesced() const { return quiesced_; }
  // Idle heartbeat ticks before a leader quiesces: at least this many
  // heartbeat intervals without activity, so a group that is busy now and
  // then does not pay a wake-up round trip for every request.
  static constexpr uint8_t kQuiesceIdleRounds = 2;

  // --- outputs -----------------------------------------------------------------

  bool has_ready() const {
    return out_mask_ != 0 || need_hard_state_ || appends_dirty_ || membership_check_ ||
           (!apply_blocked_ && apply_sent_ < std::min(commit_, durable_index_));
  }
  // Moves the accumulated outputs into `out` (cleared first; its buffers are
  // recycled, so a driver that keeps one Ready per group allocates nothing in
  // steady state).
  void take_ready(Ready& out);

  // The latest time by which tick() must be called again.
  TimePoint next_tick() const;

  // --- queries -------------------------------------------------------------------

  NodeId id() const { return id_; }
  GroupId group() const { return group_; }
  Role role() const { return role_; }
  bool is_leader() const { return role_ == Role::kLeader; }
  NodeId leader() const { return leader_; }
  Term term() const { return term_; }
  Index commit_index() const { return commit_; }
  Index last_index() const { return last_index_; }
  Index applied_index() const { return applied_; }
  Index durable_index() const { return durable_index_; }
  const QuorumConfig& quorum() const { return quorum_; }
  // The configuration in effect (that of the latest configuration entry in
  // this replica's log, committed or not) and the index of that entry (the
  // snapshot's or 0 for bootstrap).
  const Membership& membership() const { return configs_.back().membership; }
  Index membership_index() const { return configs_.back().index; }
  // Whether a new membership change would be refused as "in progress".
  bool member_change_in_progress() const;
  // Every configuration this replica may still act under, oldest first: the
  // latest at or below the commit index (or the snapshot's / bootstrap one),
  // then each configuration entry after it (the last is membership()). The
  // driver admits and dials the members of all of them (a removed node
  // stays reachable until the configuration without it commits).
  size_t configuration_count() const { return configs_.size(); }
  const Membership& configuration(size_t i) const { return configs_.at(i).membership; }
  // Changes whenever that list changes (append, truncation, commit, snapshot
  // install), so a driver can recompute what it derives from it only then.
  uint64_t configurations_version() const { return configs_version_; }
  bool is_voter() const { return is_voter_; }
  RaftStatus status() const;
  // Whether a lease read arriving at `now` would be served from the lease
  // (leader, lease valid at now, wait over, not ended by a transfer).
  bool lease_valid(TimePoint now) const;
  const Config& config() const { return config_; }

 private:
  struct Inflight {
    Index last = 0;
    uint64_t bytes = 0;
  };
  // FIFO of appends in flight to one follower; its buffer is allocated on
  // first use with room for exactly inflight_msgs_max (idle groups pay
  // nothing).
  class InflightRing {
   public:
    bool empty() const { return size_ == 0; }
    size_t size() const { return size_; }
    const Inflight& front() const { return buf_[head_]; }
    void push_back(Inflight f, size_t capacity);
    void pop_front() {
      head_ = (head_ + 1) % static_cast<uint32_t>(buf_.size());
      --size_;
    }
    void clear() { head_ = size_ = 0; }
    // Gives the buffer back when empty (an idle group: quiesce).
    void release() {
      if (size_ == 0) {
        buf_ = {};
        head_ = 0;
      }
    }

   private:
    std::vector<Inflight> buf_;
    uint32_t head_ = 0;
    uint32_t size_ = 0;
  };
  struct SnapshotTransfer {
    SnapshotMeta snap;     // pinned for this transfer, even if a newer one is taken
    uint64_t offset = 0;   // acknowledged by the follower
    TimePoint deadline{};  // re-driven if no progress by then (set at the next round)
  };
  // Fields touched by every heartbeat round come first (one cache line);
  // the in-flight window, touched only under load, comes last.
  struct Progress {
    NodeId id = kNoNode;
    Index match = 0;
    Index match_at_round = 0;     // match when the last heartbeat round was sent
    uint64_t acked_round = 0;     // highest heartbeat round acknowledged this term
    TimePoint last_heard{};       // last message of this term from this peer
    uint32_t stalled_rounds = 0;  // rounds with appends in flight and no progress
    bool replicating = false;     // false: probing (one append until a reply)
    bool probe_sent = false;
    bool snapshotting = false;  // a snapshot transfer runs; replication is paused
    // The storage answered kUnavailable for this peer's next entries and is
    // fetching them: entries_fetched() retries the send (raft/storage.h).
    bool fetch_waiting = false;
    int8_t vote = -1;  // -1 none, 0 rejected, 1 granted (election)
    Index next = 1;
    InflightRing inflight;  // bounded by inflight_msgs_max
    uint64_t inflight_bytes = 0;
    // Append coalescing (append_held): when the newest append went out, and
    // appended_bytes_ then if it carried every entry (kNoHoldMark if it left
    // some behind: a backlog that large pipelines).
    TimePoint append_sent_at{};
    uint64_t hold_mark = 0;
    // The transfer while `snapshotting` (allocated then: keeps Progress small
    // for the heartbeat round over thousands of groups).
    std::unique_ptr<SnapshotTransfer> tx;
  };

  struct PendingProposal {
    uint64_t id = 0;
    Index index = 0;
    Term term = 0;
    TimePoint deadline{};
    uint64_t bytes = 0;
  };
  struct PendingRead {
    uint64_t id = 0;
    ReadMode mode = ReadMode::kLease;
    Index index = 0;         // read index (commit seen on arrival, >= term start)
    uint64_t round = 0;      // heartbeat round that must be acked (0: none yet)
    bool confirmed = false;  // leadership confirmed (round acked or lease)
    bool via_lease = false;
  };
  struct RoundSent {
    uint64_t round = 0;
    TimePoint sent{};
  };
  // Send times of the recent heartbeat rounds that can still give a lease:
  // the newest quorum-acknowledged one and later ones (older ones are dropped
  // as acknowledgements arrive). The buffer is allocated by the first round
  // (only leaders send rounds: a follower, two replicas in three, carries a
  // pointer instead of 512 bytes) and given back by release() when the
  // group quiesces. If more than kRoundsKept rounds are unacknowledged the
  // oldest is forgotten, which can only cost a lease (reads fall back to
  // read-index), never safety; forgetting all of them (release) likewise.
  class RoundRing {
   public:
    static constexpr uint32_t kRoundsKept = 32;
    void clear() { head_ = size_ = 0; }
    void release() {
      clear();
      buf_.reset();
    }
    void push(RoundSent r) {
      if (buf_ == nullptr) buf_ = std::make_unique<std::array<RoundSent, kRoundsKept>>();
      if (size_ == kRoundsKept) pop();
      (*buf_)[(head_ + size_) % kRoundsKept] = r;
      ++size_;
    }
    void drop_older_than(uint64_t round) {
      while (size_ > 0 && (*buf_)[head_].round < round)
        pop();
    }
    const RoundSent* find(uint64_t round) const {
      for (uint32_t i = size_; i-- > 0;) {
        const RoundSent& r = (*buf_)[(head_ + i) % kRoundsKept];
        if (r.round == round) return &r;
        if (r.round < round) return nullptr;
      }
      return nullptr;
    }

   private:
    void pop() {
      head_ = (head_ + 1) % kRoundsKept;
      --size_;
    }
    std::unique_ptr<std::array<RoundSent, kRoundsKept>> buf_;  // size_ > 0: allocated
    uint32_t head_ = 0;
    uint32_t size_ = 0;
  };

  // Roles.
  void become_follower(Term term, NodeId leader, TimePoint now);
  void become_pre_candidate(TimePoint now);
  void become_candidate(TimePoint now, NodeId transfer_leader, Term transfer_term,
                        Duration handed_over_wait);
  void become_leader(TimePoint now);
  void set_term(Term term, TimePoint now);
  void reset_election_deadline(TimePoint now);
  void step_down_as_leader(TimePoint now, const char* why);
  void maybe_count_votes(TimePoint now);

  // Message handlers.
  void handle_vote_request(const Message& m, const VoteRequest& req, TimePoint now);
  void handle_vote_reply(const Message& m, const VoteReply& rep, TimePoint now);
  void handle_append(Message& m, Append& app, TimePoint now);
  void handle_append_reply(const Message& m, const AppendReply& rep, TimePoint now);
  void handle_heartbeat(const Message& m, const Heartbeat& hb, TimePoint now);
  void handle_heartbeat_reply(const Message& m, const HeartbeatReply& rep, TimePoint now);
  void handle_timeout_now(const Message& m, const TimeoutNow& tn, TimePoint now);
  void handle_snapshot_chunk(const Message& m, SnapshotChunk& c, TimePoint now);
  void handle_snapshot_reply(const Message& m, const SnapshotReply& rep, TimePoint now);
  // Leader: starts (or re-drives from p.snap_offset) the transfer of the
  // latest snapshot to p.
  void send_snapshot(Progress& p);
  void end_snapshot_transfer(Progress& p);
  void maybe_request_snapshot();
  SnapshotMeta applied_meta() const;
  SnapshotWork& snapshot_work();  // ready_.snapshot, allocated on first use
  void reply_stale_term(const Message& m);

  // Leader machinery.
  Progress* progress(NodeId id);
  const Progress* progress(NodeId id) const;
  bool is_peer(NodeId id) const {
    for (size_t i = 0; i < std::min(peer_count_, kPeersInline); ++i) {
      if (peer_ids_[i] == id) return true;
    }
    return peer_count_ > kPeersInline && progress(id) != nullptr;
  }
  void send(NodeId to, MessageBody body, SendAfter after);
  void send_with_term(NodeId to, Term term, MessageBody body, SendAfter after);
  void flush_appends();
  bool quorum_active(TimePoint now) const;
  // The largest value a quorum has reached, given this node's own value and
  // each peer's (value(progress)); a direct pass over peers_ for a single
  // majority containing this node, the general QuorumConfig answer otherwise.
  template <typename F>
  uint64_t quorum_of(uint64_t self_value, F&& value) const;
  Index commit_hint() const;
  void heard_from(Progress& p, TimePoint now);
  uint64_t quorum_round() const;
  void send_append(Progress& p, bool allow_empty);
  bool append_held(const Progress& p) const;
  static constexpr uint64_t kNoHoldMark = ~uint64_t{0};
  void broadcast_append(bool allow_empty);
  void send_heartbeat_round(TimePoint now, bool quiesce = false);
  // Quiescence.
  bool quiesce_ready(TimePoint now) const;
  void quiesce(TimePoint now);
  // Activity: resets the idle count and wakes the group if quiesced.
  void wake(TimePoint now);
  bool leader_node_live(TimePoint now) const;
  // A quiesced group keeps no more memory than it needs to wake: cached
  // entries that are durable and applied (LogStorage serves them), empty
  // queues and idle output buffers are given back.
  void release_idle_memory();
  void maybe_commit(TimePoint now);
  void on_commit_advanced(TimePoint now);
  void maybe_send_timeout_now(TimePoint now);
  void extend_promise(NodeId leader, TimePoint now);
  Duration promise_remaining(TimePoint now, NodeId excluded_leader, Term excluded_term) const;
  TimePoint lease_until() const;
  bool lease_confirms_read(TimePoint now) const;
  void advance_reads(TimePoint now);
  void fail_pending(TimePoint now, NodeId leader_hint);
  void expire_proposals(TimePoint now);

  // Membership.
  struct ConfigAt {
    Index index = 0;  // of the configuration entry (snapshot index / 0 for the base)
    Membership membership;
  };
  // Rebuilds quorum_, peers_ and the voter flags from configs_.back().
  void apply_membership(TimePoint now);
  base::Status check_can_change(bool abandoning) const;
  base::Result<Index> propose_membership(Membership next, TimePoint now,
                                         std::span<const MemberAddress> addresses = {});
  // Leader: automatic leave of a committed joint configuration, promotion of
  // caught-up learners, step-down once a configuration without this node
  // commits.
  void maybe_advance_membership(TimePoint now);
  void trim_configs();

  // Log.
  Term term_at(Index index) const;  // asserts availability
  std::optional<Term> try_term_at(Index index) const;
  void append_local(Entry e, TimePoint now);
  // Drops entries >= index; term_before is the term of entry index - 1.
  void truncate_from(Index index, Term term_before, TimePoint now);
  // Entries [lo, hi) from the in-memory cache and, below it, LogStorage.
  // Storage errors pass through (kUnavailable: a fetch is under way).
  base::Status fetch_entries(Index lo, Index hi, uint64_t bytes_max, uint32_t count_max,
                             std::vector<Entry>& out) const;
  void emit_committed();
  void trim_log_cache();
  bool log_up_to_date(Index last_index, Term last_term) const;

  void event(EventKind kind, NodeId node, TimePoint now);
  uint64_t random_next();

  // --- Hot: touched by has_ready() and by every heartbeat round of an idle
  // group, kept together (and before the cold part) so that a round costs
  // few cache misses when a core hosts thousands of groups (raft_bench).
  NodeId id_;
  GroupId group_;
  Term term_ = 0;
  NodeId leader_ = kNoNode;
  Role role_ = Role::kFollower;
  bool need_hard_state_ = false;  // term/vote changed since last take_ready
  bool appends_dirty_ = false;    // new entries to send at the next take_ready
  bool leader_waiting_ = false;   // commit held back until leader_wait_until_
  bool is_voter_ = false;
  bool simple_majority_ = false;  // one majority containing this node, no joint config, no learners
  bool self_quorum_ = false;      // this node alone is a quorum (single voter, not joint)
  // Reading committed entries failed (kIo/kCorruption: retried at tick()) or
  // is being fetched (kUnavailable: retried at entries_fetched() or tick()).
  bool apply_blocked_ = false;
  bool check_quorum_;  // config_.check_quorum
  bool read_round_wanted_ = false;
  bool membership_check_ = false;  // leader: maybe_advance_membership at take_ready
  bool quiesced_ = false;          // no ticks until woken (header comment)
  uint8_t idle_rounds_ = 0;        // leader: consecutive idle heartbeat ticks
  // Which vectors of ready_ hold output (kOut* bits): has_ready() and
  // take_ready() look at this byte instead of every vector.
  uint8_t out_mask_ = 0;
  static constexpr uint8_t kOutMessages = 1;
  static constexpr uint8_t kOutEntries = 2;  // entries and/or truncate_from
  static constexpr uint8_t kOutCommitted = 4;
  static constexpr uint8_t kOutReads = 8;
  static constexpr uint8_t kOutProposals = 16;
  static constexpr uint8_t kOutEvents = 32;
  static constexpr uint8_t kOutSnapshot = 64;  // ready_.snapshot holds work
  Index commit_ = 0;
  Index durable_index_ = 0;
  Index apply_sent_ = 0;  // highest index handed out in Ready::committed
  Index last_index_ = 0;
  Term durable_term_ = 0;
  uint64_t round_ = 0;  // last heartbeat round sent this term
  NodeId transfer_target_ = kNoNode;
  TimePoint election_deadline_{};
  TimePoint next_heartbeat_{};
  TimePoint last_leader_contact_{};
  TimePoint earliest_deadline_ = TimePoint::max();  // of proposals_
  // The latest `now` any input brought: the time used for work deferred to
  // take_ready (never later than the real time, which is the safe side for
  // round send times).
  TimePoint last_now_{};
  TimePoint quorum_heard_{};  // leader: a quorum was heard from at or after this
  uint64_t rng_state_;
  // Lease promise this node made (docs/lease.md).
  TimePoint promise_until_{};
  NodeId promise_leader_ = kNoNode;
  Term promise_term_ = 0;
  Duration promise_window_;
  Duration election_min_;   // config durations, converted once
  Duration election_span_;  // max - min
  Duration heartbeat_;
  Duration check_quorum_window_;
  // Peer ids, inline, for the membership check on every message.
  static constexpr size_t kPeersInline = 8;
  std::array<NodeId, kPeersInline> peer_ids_{};
  size_t peer_count_ = 0;
  // Peers (every member but this node: voters of both halves and learners)
  // and, as leader, their progress.
  std::vector<Progress> peers_;
  std::vector<PendingRead> reads_;
  // ready_ accumulates output between take_ready() calls; its hard_state and
  // commit fields are unused (take_ready fills them in the caller's Ready).
  Ready ready_;
  RoundRing rounds_;

  // --- Cold.
  Config config_;
  LogStorage& storage_;
  QuorumConfig quorum_;
  // configs_[0]: the configuration at the start of the log (snapshot or
  // bootstrap) or the latest committed one; then every configuration entry
  // in the log after it, in index order (one change at a time keeps this
  // short). The configuration in effect is back().
  std::vector<ConfigAt> configs_;
  uint64_t configs_version_ = 0;  // configurations_version()

  // Persistent state (in memory) and what of it is durable (term_ and
  // durable_term_ above).
  NodeId vote_ = kNoNode;
  NodeId durable_vote_ = kNoNode;

  Index applied_ = 0;

  // Log: entries [mem_first_, last_index_] in memory; older ones in storage_.
  LazyDeque<Entry> mem_;
  uint64_t mem_bytes_ = 0;
  // entry_bytes of every entry ever appended here (monotonic; append_held
  // measures a follower's waiting entries as a difference of two values).
  uint64_t appended_bytes_ = 0;
  Index mem_first_ = 1;
  Term last_term_ = 0;

  // Elections.
  bool self_vote_durable_ = false;
  TimePoint candidate_wait_until_{};  // max over counted votes of widened promises
  uint64_t elections_started_ = 0;
  NodeId campaign_transfer_leader_ = kNoNode;
  Term campaign_transfer_term_ = 0;

  // Leader state.
  Index term_start_index_ = 0;  // index of this leader's no-op
  TimePoint leader_wait_until_{};
  bool lease_ended_ = false;  // a transfer ended the lease for this term
  // lease: the lease needs a quorum ack of a round >= this one (set past the
  // last round when a configuration entry is appended).
  uint64_t lease_min_round_ = 0;
  uint64_t read_round_ = 0;  // last round sent on behalf of waiting reads
  LazyDeque<PendingProposal> proposals_;
  uint64_t uncommitted_bytes_ = 0;
  TimePoint transfer_deadline_{};
  bool timeout_now_sent_ = false;

  // Snapshots.
  SnapshotMeta snapshot_;                  // latest durable snapshot (taken or installed)
  uint64_t log_bytes_since_snapshot_ = 0;  // entry_bytes appended since (approximate log growth)
  bool snapshot_triggered_ = false;        // trigger_snapshot() called
  bool snapshot_requested_ = false;        // a request is out, no snapshot_taken yet
  // The configuration at the applied index (for the snapshot's metadata),
  // and configuration entries handed out to apply but not yet applied.
  Membership applied_membership_;
  LazyDeque<ConfigAt> apply_configs_;
  // Follower: the transfer being received (index 0: none).
  struct Receiving {
    Term leader_term = 0;
    NodeId from = kNoNode;
    SnapshotMeta meta;
    uint64_t written = 0;        // bytes the driver has written
    uint64_t total_bytes = 0;    // of the whole file
    bool chunk_pending = false;  // handed out, not yet written
    bool complete = false;       // last chunk written: installing
    TimePoint deadline{};
  };
  Receiving recv_;
};

}  // namespace nori::raft
