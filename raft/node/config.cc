#include "raft/node/config.h"

#include <arpa/inet.h>

#include <set>

#include "raft/codec.h"

namespace nori::raft {

using base::ErrorKind;

static_assert(kSnapshotChunkBytesMax + kDecodeSnapshotMembershipBytesMax <
                  kDecodeSnapshotChunkBytesMax,
              "a chunk the config allows must decode on every peer");

namespace {
base::Error invalid(std::string msg) {
  return base::Error(ErrorKind::kInvalidArgument, "RaftConfig: " + std::move(msg));
}
}  // namespace

base::Status RaftConfig::validate() const {
  if (node_id == kNoNode) return invalid("node_id must be non-zero");
  if (cluster_id == 0) return invalid("cluster_id must be non-zero");
  if (cluster_secret.size() < 8) return invalid("cluster_secret must be at least 8 bytes");
  if (data_dir.empty()) return invalid("data_dir is empty");
  if (cores == 0 || cores > 256) return invalid(fmt::format("cores = {} not in 1..256", cores));
  if (peers.empty()) return invalid("peers is empty (list every voter, this node included)");
  std::set<NodeId> ids;
  for (const PeerAddress& p : peers) {
    if (p.id == kNoNode) return invalid("a peer has id 0");
    if (!ids.insert(p.id).second) return invalid(fmt::format("peer {} listed twice", p.id));
    if (p.host.empty()) return invalid(fmt::format("peer {} has no host", p.id));
    if (p.port == 0 || uint32_t{p.port} + cores - 1 > 65535) {
      return invalid(
          fmt::format("peer {} port {} (+{} cores) is not a usable port", p.id, p.port, cores));
    }
  }
  if (!ids.contains(node_id)) {
    return invalid(fmt::format("node_id {} is not listed in peers (its own address)", node_id));
  }
  std::set<GroupId> gs;
  for (GroupId g : groups) {
    if (!gs.insert(g).second) return invalid(fmt::format("group {} listed twice", g));
  }
  if (heartbeat_ms == 0) return invalid("heartbeat_ms must be > 0");
  if (election_timeout_min_ms < 2 * heartbeat_ms) {
    return invalid(fmt::format(
        "election_timeout_min_ms ({}) must be >= 2 x heartbeat_ms ({}): elections would fire "
        "between heartbeats",
        election_timeout_min_ms, heartbeat_ms));
  }
  if (election_timeout_max_ms <= election_timeout_min_ms) {
    return invalid(
        fmt::format("election_timeout_max_ms ({}) must be > election_timeout_min_ms ({})",
                    election_timeout_max_ms, election_timeout_min_ms));
  }
  if (tick_granularity_ms == 0 || tick_granularity_ms * 4 > heartbeat_ms) {
    return invalid(fmt::format("tick_granularity_ms ({}) must be in 1..heartbeat_ms/4 ({})",
                               tick_granularity_ms, heartbeat_ms / 4));
  }
  if (snapshot_log_bytes == 0 || snapshot_entries == 0) {
    return invalid("snapshot_log_bytes and snapshot_entries must be > 0");
  }
  if (snapshot_chunk_bytes < kSnapshotChunkBytesMin ||
      snapshot_chunk_bytes > kSnapshotChunkBytesMax) {
    return invalid(fmt::format("snapshot_chunk_bytes ({}) not in {}..{}", snapshot_chunk_bytes,
                               kSnapshotChunkBytesMin, kSnapshotChunkBytesMax));
  }
  if (send_queue_bytes_max < 2 * uint64_t{snapshot_chunk_bytes}) {
    return invalid(fmt::format("send_queue_bytes_max ({}) must hold two snapshot chunks ({})",
                               send_queue_bytes_max, snapshot_chunk_bytes));
  }
  if (snapshot_transfers_max == 0) return invalid("snapshot_transfers_max must be > 0");
  if (snapshot_send_bytes_per_s < snapshot_chunk_bytes) {
    return invalid(
        fmt::format("snapshot_send_bytes_per_s ({}) must be >= snapshot_chunk_bytes ({})",
                    snapshot_send_bytes_per_s, snapshot_chunk_bytes));
  }
  if (snapshot_timeout_ms < 2 * heartbeat_ms) {
    return invalid(fmt::format("snapshot_timeout_ms ({}) must be >= 2 x heartbeat_ms ({})",
                               snapshot_timeout_ms, heartbeat_ms));
  }
  if (propose_timeout_ms == 0 || read_timeout_ms == 0) {
    return invalid("propose_timeout_ms and read_timeout_ms must be > 0");
  }
  if (member_change_timeout_ms == 0) return invalid("member_change_timeout_ms must be > 0");
  if (send_queue_bytes_max < append_bytes_max) {
    return invalid(fmt::format("send_queue_bytes_max ({}) must hold one append ({})",
                               send_queue_bytes_max, append_bytes_max));
  }
  if (!metrics_listen.empty() && metrics_listen.rfind(':') == std::string::npos) {
    return invalid(fmt::format("metrics_listen '{}' must be host:port", metrics_listen));
  }
  // The Raft core's own rules (lease vs election timeout, drift, bounds).
  if (auto st = group_config(1, 0).validate(); !st.ok()) {
    return invalid(st.error().message());
  }
  if (auto st = wal_options().validate(); !st.ok()) {
    return invalid(st.error().message());
  }
  return {};
}

uint64_t election_seed(NodeId node, GroupId group) {
  // splitmix64's finalizer over both ids: no linear relation to either.
  uint64_t z = (node * 0xD1B54A32D192ED03ull) ^ (group + 0x632BE59BD9B4E019ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Config RaftConfig::group_config(GroupId group, Index applied) const {
  Config c;
  c.id = node_id;
  c.group = group;
  if (!join) {
    for (const PeerAddress& p : peers)
      c.voters.push_back(p.id);
  }
  c.heartbeat_ms = heartbeat_ms;
  c.election_timeout_min_ms = election_timeout_min_ms;
  c.election_timeout_max_ms = election_timeout_max_ms;
  c.lease_ms = lease_ms;
  c.max_clock_drift_ppm = max_clock_drift_ppm;
  c.lease_margin_ms = lease_margin_ms;
  c.inflight_msgs_max = inflight_msgs_max;
  c.inflight_bytes_max = inflight_bytes_max;
  c.append_hold_us = append_hold_us;
  c.append_hold_bytes = append_hold_bytes;
  c.append_bytes_max = append_bytes_max;
  c.uncommitted_bytes_max = uncommitted_bytes_max;
  c.proposals_pending_max = proposals_pending_max;
  c.reads_pending_max = reads_pending_max;
  c.log_cache_bytes_max = log_cache_bytes_max;
  c.snapshot_log_bytes_max = snapshot_log_bytes;
  c.snapshot_entries_max = snapshot_entries;
  c.snapshot_keep_entries = snapshot_keep_entries;
  c.snapshot_timeout_ms = snapshot_timeout_ms;
  c.promote_lag_entries_max = promote_lag_entries;
  // Distinct election timers per (node, group), reproducible per node. The
  // seed goes through a non-linear mix: Raft XORs `id * 0x9e3779b97f4a7c15`
  // into it, so a seed linear in the node id with that same constant (the
  // previous formula) cancelled the node id out and gave every node the SAME
  // timer sequence for a group: all replicas of a group timed out in the same
  // 5 ms tick and split the vote forever (10,000 groups never elected).
  c.random_seed = election_seed(node_id, group);
  c.applied = applied;
  return c;
}

wal::WalOptions RaftConfig::wal_options() const {
  wal::WalOptions o;
  o.segment_bytes = wal_segment_bytes;
  o.log_bytes_max = wal_log_bytes_max;
  o.batch_delay_us = wal_batch_delay_us;
  o.writes_in_flight_max = wal_writes_in_flight_max;
  o.write_hold_bytes = wal_write_hold_bytes;
  o.use_rwf_dsync = wal_use_rwf_dsync;
  return o;
}

base::Result<PeerAddress> parse_member_address(NodeId id, std::string_view address) {
  auto bad = [&](const char* why) {
    return base::err(ErrorKind::kInvalidArgument,
                     "address '{}' of node {}: {} (want host:port with a numeric IPv4 host, or "
                     "[IPv6]:port; the port of its core 0)",
                     address, id, why);
  };
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == address.size()) {
    return bad("not host:port");
  }
  std::string host(address.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  uint32_t port = 0;
  for (char ch : address.substr(colon + 1)) {
    if (ch < '0' || ch > '9') return bad("the port is not a number");
    port = port * 10 + static_cast<uint32_t>(ch - '0');
    if (port > 65535) return bad("the port is above 65535");
  }
  if (port == 0) return bad("port 0");
  in6_addr scratch;
  if (::inet_pton(AF_INET, host.c_str(), &scratch) != 1 &&
      ::inet_pton(AF_INET6, host.c_str(), &scratch) != 1) {
    return bad("the host is not a numeric IPv4 or IPv6 address");
  }
  return PeerAddress{id, std::move(host), static_cast<uint16_t>(port)};
}

std::string format_member_address(const PeerAddress& p) {
  if (p.host.find(':') != std::string::npos) return fmt::format("[{}]:{}", p.host, p.port);
  return fmt::format("{}:{}", p.host, p.port);
}

const PeerAddress* RaftConfig::self_address() const {
  for (const PeerAddress& p : peers) {
    if (p.id == node_id) return &p;
  }
  return nullptr;
}

}  // namespace nori::raft
