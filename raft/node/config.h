// RaftConfig: everything a raft::Node is configured with, and its validation.
//
// What it is for: the one struct an embedding application fills to run a
// node (the seed's RaftConfig, in C++). Defaults are the project's (DESIGN.md:
// heartbeat 150 ms, election timeout 300..600 ms, lease 2000 ms). Durations are
// integers with their unit last.
//
//   RaftConfig c;
//   c.node_id = 1;
//   c.peers = {{1, "127.0.0.1", 7101}, {2, "127.0.0.1", 7201}, {3, "127.0.0.1", 7301}};
//   c.data_dir = "/var/lib/nori/n1";
//   c.cluster_secret = "...";
//   c.groups = {1};
//   if (auto st = c.validate(); !st.ok()) { ... st.error().message() ... }
//
// Addresses: each peer's `port` is where its core 0 listens; core i listens on
// port + i (group g lives on core placement(g) of every node, and core i of
// one node talks only to core i of the others).
//
// Bootstrap: `peers` names the voters of every group this node creates. They
// only bootstrap a new cluster; afterwards the configuration in the log or
// snapshot wins (Node::add_member / remove_member), and the addresses the
// configurations record (raft/membership.h, "Addresses") are dialled too.
// A node joining an existing cluster sets `join`: its groups start with no
// configuration and learn it (and the other members' addresses) from the
// leader once a member ran add_member for it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "raft/config.h"
#include "raft/types.h"
#include "runtime/base/result.h"
#include "runtime/reactor.h"
#include "wal/engine.h"

namespace nori::raft {

// Bounds of RaftConfig::snapshot_chunk_bytes (the codec accepts up to 64 MiB).
inline constexpr uint32_t kSnapshotChunkBytesMin = 4 << 10;
inline constexpr uint32_t kSnapshotChunkBytesMax = 16 << 20;

struct PeerAddress {
  NodeId id = kNoNode;
  std::string host;   // numeric IPv4 or IPv6
  uint16_t port = 0;  // core 0's port; core i listens on port + i
};

struct RaftConfig {
  // --- identity -----------------------------------------------------------------
  NodeId node_id = kNoNode;    // non-zero, listed in peers
  uint64_t cluster_id = 1;     // every node of a cluster has the same one
  std::string cluster_secret;  // MAC key of the peer handshake; at least 8 bytes
  std::vector<PeerAddress>
      peers;             // bootstrap voters (with join: known members), this node included
  std::string data_dir;  // one WAL per core below it, plus node.meta
  unsigned cores = 1;    // reactors; the same on every node
  // A data directory without node.meta is a new node. With bootstrap = false
  // (and join = false) such a directory is refused: a node whose disk was
  // wiped may rejoin only through membership change, never silently.
  bool bootstrap = true;
  // This node joins an existing cluster (it is added with add_member on the
  // leader): its groups start with no voters and wait for the leader; a new
  // data directory is accepted even with bootstrap = false. `peers` lists
  // this node and the members it can reach (their addresses): until a
  // group's log names its members, the node accepts connections from these.
  // Recorded in node.meta when the data directory is created; every later
  // open must say the same (a joined node that took `peers` as bootstrap
  // voters would count itself a voter of a configuration that never had it).
  bool join = false;
  // Groups created at open (every group found in the WAL is recovered too).
  std::vector<GroupId> groups;

  // --- timing (the seed's parameters) ---------------------------------------------
  uint32_t heartbeat_ms = 150;
  uint32_t election_timeout_min_ms = 300;  // randomized in [min, max)
  uint32_t election_timeout_max_ms = 600;
  uint32_t lease_ms = 2000;
  uint32_t max_clock_drift_ppm = 1000;
  uint32_t lease_margin_ms = 100;
  // Group deadlines are rounded up to this grid so that the groups due in the
  // same window tick together (one coalesced heartbeat message per peer).
  uint32_t tick_granularity_ms = 5;
  // Quiescence (docs/node.md, "Quiescence"): an idle group's leader stops
  // heartbeating and its followers stop their election timers; per core, one
  // liveness ping per peer every heartbeat_ms stands in for them. A peer not
  // heard from (any message) for election_timeout_max_ms is not live: the
  // quiesced groups it leads (or follows) wake. false: every group ticks.
  bool quiesce = true;

  // --- membership change (docs/node.md, "Membership") -------------------------------
  // A learner added by add_member is promoted (through a joint configuration)
  // once its log is within this many entries of the leader's commit index
  // (and holds the configuration entry naming it). 0 waits until it is fully
  // caught up, which a steady stream of writes can postpone for long.
  uint64_t promote_lag_entries = 256;
  // add_member / remove_member resolve once the change is complete; past
  // this they stop waiting with kOutcomeUnknown (the change goes on, or is
  // abandoned with abandon_member_change).
  uint32_t member_change_timeout_ms = 60'000;

  // --- snapshots (docs/node.md, "Snapshots"; only groups with snapshot hooks) -----
  // A group takes a snapshot once its log grew by snapshot_log_bytes since the
  // last one, or its applied index is snapshot_entries past it.
  uint64_t snapshot_log_bytes = uint64_t{256} << 20;
  uint64_t snapshot_entries = 1'000'000;
  // Entries kept in the log behind a snapshot: a follower lagging by fewer
  // catches up from the log, not by snapshot.
  uint64_t snapshot_keep_entries = 10'000;
  // One snapshot chunk message (bulk lane); also the unit of the blocking
  // file read/write a chunk costs the reactor.
  uint32_t snapshot_chunk_bytes = 64 << 10;
  // Outgoing transfers running at once on one core, and their shared rate.
  uint32_t snapshot_transfers_max = 4;
  uint64_t snapshot_send_bytes_per_s = uint64_t{64} << 20;
  // A transfer without progress for this long is re-driven from the last
  // acknowledged offset (leader) or forgotten (follower after twice this).
  uint32_t snapshot_timeout_ms = 30'000;

  // --- batching and backpressure ------------------------------------------------
  uint32_t inflight_msgs_max = 64;                  // appends in flight per follower
  uint64_t inflight_bytes_max = uint64_t{8} << 20;  // bytes in flight per follower
  // Append coalescing (raft/config.h, Config::append_hold_us): 0 turns it off.
  uint32_t append_hold_us = 5000;
  uint64_t append_hold_bytes = uint64_t{64} << 10;
  uint64_t append_bytes_max = uint64_t{1} << 20;        // one Append message
  uint64_t uncommitted_bytes_max = uint64_t{64} << 20;  // per group; beyond: kBusy
  uint32_t proposals_pending_max = 1 << 16;             // per group; beyond: kBusy
  uint32_t reads_pending_max = 1 << 14;                 // per group; beyond: kBusy
  // In-memory entry cache per group (the core's log cache); per core the bound
  // is groups on that core x this. Older entries are read back from the WAL.
  uint64_t log_cache_bytes_max = uint64_t{4} << 20;
  uint32_t propose_timeout_ms = 5000;  // accepted proposal not committed: kOutcomeUnknown
  uint32_t read_timeout_ms = 5000;     // read not granted by then: kTimedOut

  // --- reactors ---------------------------------------------------------------------
  // Thread placement of the node's reactors. Default kNone: kAuto pins reactor
  // i to CPU i in EVERY process, so several nodes (or a node and its clients)
  // on one host all land on CPU 0 and queue behind each other (on the 2-core
  // test machine, 3 node processes shared one CPU). Dedicated hosts can ask
  // for kAuto.
  runtime::PinMode reactor_pin = runtime::PinMode::kNone;

  // --- WAL (per core) ----------------------------------------------------------------
  uint64_t wal_segment_bytes = uint64_t{64} << 20;
  uint64_t wal_log_bytes_max = uint64_t{1} << 30;
  uint32_t wal_batch_delay_us = 0;
  // Durable writes (write + fdatasync) in flight at once per core's WAL.
  uint32_t wal_writes_in_flight_max = wal::WalOptions{}.writes_in_flight_max;
  // Write coalescing (wal/engine.h, WalOptions::write_hold_bytes); 0: off.
  uint32_t wal_write_hold_bytes = wal::WalOptions{}.write_hold_bytes;
  bool wal_use_rwf_dsync = wal::WalOptions{}.use_rwf_dsync;  // docs/wal.md

  // --- transport ---------------------------------------------------------------------
  size_t send_queue_bytes_max = size_t{8} << 20;  // per peer and lane

  // --- observability ----------------------------------------------------------------
  // "host:port": serve Prometheus text on http://host:port/metrics (core 0).
  std::string metrics_listen;
  // Append every event as one JSON line to this file (empty: none).
  std::string events_jsonl_path;

  // --- test-only, UNSAFE ---------------------------------------------------------------
  // !!! Flips one byte in each of the first N snapshot chunks this node
  // receives, before writing them: the whole-file digest check must reject
  // the file and the transfer start over. For tests of that path only.
  uint32_t unsafe_snapshot_corrupt_received_chunks_for_testing = 0;
  // !!! Loses (counts as sent, never hands to the transport) the first N
  // snapshot chunks this node sends at a non-zero offset, as a network that
  // drops them would: the transfer must resume from the acknowledged offset.
  uint32_t unsafe_snapshot_drop_sent_chunks_for_testing = 0;
  // !!! The process exits (std::_Exit(86)) as soon as the first snapshot
  // install's reset record is durable, before the state machine is
  // restored, as a power cut there would: recovery must finish the install
  // from the file. For multi-process crash tests only.
  bool unsafe_snapshot_exit_after_reset_for_testing = false;

  // Clear errors (kInvalidArgument) naming the field and the rule it breaks.
  base::Status validate() const;

  // The Raft core's per-group config derived from this one.
  Config group_config(GroupId group, Index applied) const;
  wal::WalOptions wal_options() const;
  const PeerAddress* self_address() const;
};

// The seed of group g's election timers on node `node` (RaftConfig::group_config):
// differs between nodes for the same group, so replicas do not time out together.
uint64_t election_seed(NodeId node, GroupId group);

// A member address as add_member takes it and configurations record it:
// "host:port" (IPv6 as "[host]:port"), numeric host, the port of the
// member's core 0. kInvalidArgument naming what is wrong.
base::Result<PeerAddress> parse_member_address(NodeId id, std::string_view address);
std::string format_member_address(const PeerAddress& p);

// The core of every node that hosts group g (the same function everywhere).
inline unsigned placement(GroupId g, unsigned cores) {
  return static_cast<unsigned>(g % cores);
}

}  // namespace nori::raft
