// norikv: a replicated key-value server speaking RESP2 (docs/kv.md).
//
//   norikv --node 1 --cluster 1=127.0.0.1:7101:6381,2=127.0.0.1:7201:6382,3=127.0.0.1:7301:6383 \
//          --data-dir /tmp/norikv/n1 --admin-port 9101
//
// --cluster lists every node as id=host:raft_port:client_port (the same list
// on every node). Stops cleanly (WAL durable) on SIGINT or SIGTERM.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "kv/server.h"

namespace {

bool parse_cluster(const std::string& spec, nori::kv::ServerConfig& cfg) {
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = spec.substr(pos, comma - pos);
    pos = comma + 1;
    const size_t eq = item.find('=');
    const size_t c2 = item.rfind(':');
    const size_t c1 =
        c2 == std::string::npos || c2 == 0 ? std::string::npos : item.rfind(':', c2 - 1);
    if (eq == std::string::npos || c1 == std::string::npos || c1 < eq) return false;
    try {
      const uint64_t id = std::stoull(item.substr(0, eq));
      const std::string host = item.substr(eq + 1, c1 - eq - 1);
      const auto raft_port = static_cast<uint16_t>(std::stoul(item.substr(c1 + 1, c2 - c1 - 1)));
      const auto client_port = static_cast<uint16_t>(std::stoul(item.substr(c2 + 1)));
      cfg.raft.peers.push_back({id, host, raft_port});
      cfg.peer_clients[id] = {host, client_port};
    } catch (const std::exception&) {
      return false;
    }
  }
  return !cfg.raft.peers.empty();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"norikv: a replicated key-value server speaking RESP2 over nori-raft"};
  nori::kv::ServerConfig cfg;
  std::string cluster, read_mode = "lease";
  uint64_t node_id = 0;
  app.add_option("--node", node_id, "this node's id (in --cluster)")->required();
  app.add_option("--cluster", cluster, "id=host:raft_port:client_port,... (every node)")
      ->required();
  app.add_option("--data-dir", cfg.raft.data_dir, "data directory (WAL per core)")->required();
  app.add_option("--shards", cfg.shards, "shards (Raft groups); the same on every node")
      ->capture_default_str();
  app.add_option("--cores", cfg.raft.cores, "reactor threads; the same on every node")
      ->capture_default_str();
  app.add_option("--bind", cfg.client_host, "client listen address")->capture_default_str();
  app.add_option("--admin-port", cfg.admin_port, "HTTP /metrics port (0: off)")
      ->capture_default_str();
  app.add_option("--read-mode", read_mode, "linearizable read path: lease or read-index")
      ->check(CLI::IsMember({"lease", "read-index"}))
      ->capture_default_str();
  app.add_option("--maxclients", cfg.connections_max, "client connections")->capture_default_str();
  app.add_option("--write-timeout-ms", cfg.write_timeout_ms, "retry budget of one command")
      ->capture_default_str();
  app.add_option("--member-change-timeout-ms", cfg.raft.member_change_timeout_ms,
                 "retry budget of CLUSTER ADDNODE / REMOVENODE (every shard's change)")
      ->capture_default_str();
  app.add_option("--client-idle-timeout-ms", cfg.client_idle_timeout_ms,
                 "close a client connection silent this long (0: never)")
      ->capture_default_str();
  std::string secret = "norikv-local-secret";
  app.add_option("--secret", secret, "cluster secret (peer handshake and forwarded commands MAC)");
  app.add_option("--events", cfg.raft.events_jsonl_path, "append Raft events as JSON lines here");
  app.add_option("--lease-ms", cfg.raft.lease_ms, "leader lease")->capture_default_str();
  std::string initial_state = "new";
  app.add_option("--initial-cluster-state", initial_state,
                 "new: an empty data directory bootstraps this node as a founding member; "
                 "existing: an empty data directory is refused (a wiped node must come back "
                 "through CLUSTER REMOVENODE/ADDNODE, never silently: it forgot its votes)")
      ->check(CLI::IsMember({"new", "existing"}))
      ->capture_default_str();
  app.add_flag("--join", cfg.raft.join,
               "join a running cluster: shards start without voters until a member runs "
               "CLUSTER ADDNODE for this node (--cluster lists the current members and this node)");
  app.add_option("--snapshot-entries", cfg.raft.snapshot_entries,
                 "snapshot a shard once its applied index is this far past the last snapshot")
      ->capture_default_str();
  app.add_option("--snapshot-log-bytes", cfg.raft.snapshot_log_bytes,
                 "snapshot a shard once its log grew this much since the last snapshot")
      ->capture_default_str();
  app.add_option("--snapshot-keep-entries", cfg.raft.snapshot_keep_entries,
                 "log entries kept behind a snapshot for slightly lagging followers")
      ->capture_default_str();
  app.add_option("--inflight-msgs-max", cfg.raft.inflight_msgs_max,
                 "Append messages in flight per follower (pipelining depth)")
      ->capture_default_str();
  app.add_option("--wal-writes-in-flight", cfg.raft.wal_writes_in_flight_max,
                 "durable WAL writes (write + fdatasync) in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--wal-dsync", cfg.raft.wal_use_rwf_dsync,
                 "WAL writes with RWF_DSYNC instead of write + fdatasync (docs/wal.md)")
      ->capture_default_str();
  app.add_option("--wal-write-hold-bytes", cfg.raft.wal_write_hold_bytes,
                 "WAL write coalescing: fewer new bytes than this wait for the durable write "
                 "in flight (0: off)")
      ->capture_default_str();
  app.add_option("--write-batch-bytes-max", cfg.write_batch_bytes_max,
                 "pipelined writes to one shard proposed as one entry up to this size (0: off)")
      ->capture_default_str();
  app.add_option("--append-hold-us", cfg.raft.append_hold_us,
                 "append coalescing: new entries wait this long at most for a follower's "
                 "unacknowledged append before going out on their own (0: off)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  cfg.raft.node_id = node_id;
  cfg.raft.bootstrap = initial_state == "new";
  cfg.raft.cluster_secret = secret;
  cfg.read_mode =
      read_mode == "lease" ? nori::raft::ReadMode::kLease : nori::raft::ReadMode::kReadIndex;
  if (!parse_cluster(cluster, cfg)) {
    std::fprintf(stderr, "norikv: bad --cluster '%s' (want id=host:raft_port:client_port,...)\n",
                 cluster.c_str());
    return 2;
  }
  auto it = cfg.peer_clients.find(node_id);
  if (it == cfg.peer_clients.end()) {
    std::fprintf(stderr, "norikv: --node %llu is not in --cluster\n",
                 static_cast<unsigned long long>(node_id));
    return 2;
  }
  cfg.client_port = it->second.port;

  // Block the stop signals in every thread (the reactors inherit the mask);
  // the main thread waits for them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto server = nori::kv::Server::open(std::move(cfg));
  if (!server.ok()) {
    std::fprintf(stderr, "norikv: %s\n", server.error().to_string().c_str());
    return 1;
  }
  std::fprintf(stderr, "norikv: node %llu ready\n", static_cast<unsigned long long>(node_id));
  int sig = 0;
  sigwait(&stop, &sig);
  std::fprintf(stderr, "norikv: signal %d, stopping\n", sig);
  (*server)->close();
  return 0;
}
