// Per-group configuration of the Raft core (raft/raft.h), with the project
// defaults (DESIGN.md: heartbeat 150 ms, election 300-600 ms, lease 2000 ms).
//
// All durations are integers with their unit last. `validate()` rejects
// combinations the safety argument (docs/lease.md) does not cover.
//
// The two `unsafe_*_for_testing` knobs exist ONLY so that the simulator can
// prove its checkers catch a broken core. They break linearizability of lease
// reads on purpose. Never set them outside a test: validate() accepts them,
// but Raft logs nothing and checks nothing else about them.
#pragma once

#include <cstdint>
#include <vector>

#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

// Node-level liveness, the driver's answer to "have I heard from node X
// recently?" (any message of any group, or the per-core liveness ping, within
// the election timeout). It stands in for per-group heartbeats while a group
// is quiesced (raft/raft.h, "Quiescence"). Called by the Raft core on the
// group's thread with that thread's `now`; must be deterministic for a given
// history (the simulator and tests supply fakes). It decides liveness only:
// no safety property depends on its answer (docs/node.md, "Quiescence").
class NodeLiveness {
 public:
  virtual bool node_live(NodeId node, TimePoint now) const = 0;

 protected:
  ~NodeLiveness() = default;
};

struct Config {
  // --- identity --------------------------------------------------------------
  NodeId id = kNoNode;  // this replica; non-zero
  GroupId group = 0;
  // The voters and learners of the initial configuration (bootstrap), this
  // node included if it is a member. Used only when the durable log has no
  // snapshot: later configurations come from configuration entries in the
  // log (raft/membership.h) or from the snapshot's metadata. A node joining
  // an existing group starts with both empty and learns its configuration
  // from the leader.
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  // --- membership change -------------------------------------------------------
  // A learner added by add_member() is promoted (joint configuration) once
  // its match index is within this many entries of the leader's commit.
  uint64_t promote_lag_entries_max = 0;

  // --- snapshots ---------------------------------------------------------------
  // A snapshot is requested (Ready::snapshot->request) once the log has grown
  // by this many bytes (entry_bytes) since the last snapshot, or the applied
  // index is this many entries past it, or trigger_snapshot() was called.
  uint64_t snapshot_log_bytes_max = 256ull << 20;
  uint64_t snapshot_entries_max = 1'000'000;
  // Entries kept in the log behind a snapshot, so that a slightly lagging
  // follower catches up from the log rather than by snapshot.
  uint64_t snapshot_keep_entries = 10'000;
  // A snapshot transfer with no progress for this long is re-driven from the
  // last acknowledged offset (leader) or forgotten (follower). Independent of
  // message timeouts: a chunk may take long on a slow link.
  uint32_t snapshot_timeout_ms = 30'000;

  // --- timing ----------------------------------------------------------------
  uint32_t heartbeat_ms = 150;
  uint32_t election_timeout_min_ms = 300;  // randomized in [min, max)
  uint32_t election_timeout_max_ms = 600;
  // A leader that has not heard from a quorum within this window steps down.
  // 0 = election_timeout_max_ms.
  uint32_t check_quorum_ms = 0;
  bool pre_vote = true;
  bool check_quorum = true;
  // Quiescence (raft/raft.h): null keeps every group ticking (the default,
  // and what the simulator runs). Non-null lets an idle leader stop its
  // heartbeats; the driver then owes the group liveness_lost() calls. Not
  // owned; must outlive the Raft object.
  const NodeLiveness* liveness = nullptr;

  // --- leases (docs/lease.md) ------------------------------------------------
  uint32_t lease_ms = 2000;
  // Bound on the rate difference of any node's clock from real time, in parts
  // per million. 1000 ppm covers quartz error (~100 ppm) plus the largest NTP
  // slew Linux applies to CLOCK_MONOTONIC/BOOTTIME (500 ppm), with room.
  uint32_t max_clock_drift_ppm = 1000;
  // Added to the follower promise window W on top of the drift widening.
  uint32_t lease_margin_ms = 100;

  // --- replication and flow control -------------------------------------------
  uint32_t inflight_msgs_max = 64;           // appends in flight per follower
  uint64_t inflight_bytes_max = 8ull << 20;  // bytes in flight per follower
  uint64_t append_bytes_max = 1ull << 20;    // one Append message (at least one entry)
  uint32_t append_entries_max = 4096;        // entries in one Append message
  // Append coalescing: while an append to a follower is unacknowledged, new
  // entries for it wait (and join one later append) instead of each leader
  // round sending an append of its own, until the waiting entries reach
  // append_hold_bytes or the unacknowledged append is append_hold_us old
  // (at most heartbeat_ms); its acknowledgement sends them at once. A
  // follower then wakes, writes and syncs once per batch rather than once
  // per leader round: on a CPU-bound host this is most of a follower's cost
  // (docs/node.md, "Append coalescing"). A large backlog still pipelines, up to
  // inflight_msgs_max. append_hold_us = 0: every round's entries go out at
  // once (pure pipelining, as over a long-haul link where an entry should
  // not wait for a round trip).
  uint32_t append_hold_us = 5000;
  uint64_t append_hold_bytes = 64 << 10;
  // Backpressure: proposals beyond this many bytes of appended-but-uncommitted
  // entries fail with kBusy (certainly not appended).
  uint64_t uncommitted_bytes_max = 64ull << 20;
  uint32_t proposals_pending_max = 1 << 16;     // proposals awaiting commit
  uint32_t reads_pending_max = 1 << 14;         // linearizable reads awaiting a grant
  uint64_t apply_batch_bytes_max = 4ull << 20;  // committed entries per Ready
  // Entries kept in memory after they are durable and applied (beyond that the
  // core reads them back through LogStorage).
  uint64_t log_cache_bytes_max = 16ull << 20;

  // Seed of the per-group pseudo-random generator (election timeouts). The
  // core is deterministic given its seed and inputs.
  uint64_t random_seed = 1;

  // The state machine has applied everything up to this index at start
  // (0 for an in-memory state machine that replays the log).
  Index applied = 0;

  // --- test-only, UNSAFE -------------------------------------------------------
  // !!! Breaks lease-read linearizability. For the simulator's "checkers can
  // fail" tests only. A new leader commits and serves lease reads without
  // waiting out its voters' remaining promises to the previous leader.
  bool unsafe_skip_new_leader_lease_wait_for_testing = false;
  // !!! Breaks lease-read linearizability. A lease read is granted without
  // checking the lease against the clock (a deposed leader keeps serving).
  bool unsafe_lease_read_skips_clock_check_for_testing = false;

  base::Status validate() const;

  // Derived values (docs/lease.md).
  // Follower promise window W = lease x (1+rho)/(1-rho) + margin.
  Duration promise_window() const;
  // A remaining promise r measured on another node's clock, widened so that
  // waiting it on this node's clock waits at least as long in real time.
  Duration widen_for_drift(Duration remote) const;
  Duration check_quorum_window() const;
};

}  // namespace nori::raft
