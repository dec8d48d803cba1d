// Server: norikv, the RESP2 front end of a raft::Node whose groups are the
// shards of a key-value store (docs/kv.md).
//
// What it is for: letting stock Redis clients (redis-cli, redis-benchmark)
// drive a replicated store. Any node accepts any request:
//   - a write is proposed to its shard's group here if this node leads it,
//     else forwarded to the leader (ForwardLink, forward.h: NORI.WRITE);
//   - a read is linearizable by default (ReadMode kLease: lease, falling back
//     to read-index; --read-mode read-index forces read-index), served here
//     when this node leads the shard, else forwarded (NORI.READ); after
//     READONLY a connection reads stale data from the local replica, READWRITE
//     restores linearizable reads.
// Membership: CLUSTER ADDNODE / REMOVENODE record and announce a new node's
// client port (NORI.PEER, kv/peer_book.h), then make one raft::Node::add_node
// / remove_node call for the Raft side (docs/kv.md, "Membership").
// Writes carry a session (connection id, sequence number; store.h), so the
// server retries a write whose outcome is unknown (a lost forward, a leader
// change after it was appended) with the same number until write_timeout_ms:
// the write applies at most once.
// Pipelines: the writes a connection sends back to back (one parse round)
// go to each shard as batch entries (store.h encode_batch), one proposal
// and one wait per shard instead of one per write (forwarded as one
// NORI.WRITEB); a batch is retried whole, so each shard applies a
// connection's pipelined writes in the order they were sent, failures
// included. Reads run after the writes before them in the pipeline.
//
// Error replies say whether the command may have taken effect:
//   -TRYAGAIN ...     certainly not applied (election, busy, not yet appended)
//   -CLUSTERDOWN ...  certainly not applied: the shard has no quorum
//   -UNKNOWN ...      may or may not have been applied (timed out after append)
//   -ERR ...          bad input (never applied)
//
// Threading: every core accepts client connections on the same port
// (SO_REUSEPORT); a connection lives on the core that accepted it. Shard
// state (Store) lives on the shard's group core and is touched only there
// (submit_to). open/wait/close run on the main thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "kv/auth.h"
#include "kv/forward.h"
#include "kv/resp.h"
#include "kv/store.h"
#include "raft/node/node.h"

namespace nori::kv {

struct ServerImpl;

struct PeerClientAddress {
  std::string host;
  uint16_t port = 0;  // the peer's RESP client port
};

struct ServerConfig {
  raft::RaftConfig raft;  // groups are set from `shards` by open()
  uint32_t shards = 8;    // fixed for the life of the cluster
  std::string client_host = "127.0.0.1";
  uint16_t client_port = 6379;
  std::string admin_host = "127.0.0.1";
  uint16_t admin_port = 0;                                 // 0: no admin HTTP (/metrics)
  std::map<raft::NodeId, PeerClientAddress> peer_clients;  // forwarding targets
  raft::ReadMode read_mode = raft::ReadMode::kLease;
  size_t connections_max = 4096;  // per node; beyond: "-ERR max number of clients reached"
  size_t pipeline_max = 1024;     // commands taken from one connection per round
  size_t reply_bytes_max = size_t{64} << 20;  // one round's replies before they are sent
  // A connection's pipelined writes to one shard go to the log as batch
  // entries of at most this many bytes (a larger write goes alone; a shard's
  // batches of one pipeline commit one after another); 0: one entry per
  // write, proposed concurrently (no order across a failure).
  size_t write_batch_bytes_max = size_t{256} << 10;
  uint32_t write_timeout_ms = 5000;         // retry budget of one command
  uint32_t client_send_timeout_ms = 30000;  // TCP_USER_TIMEOUT: a client that stops reading
  uint32_t client_idle_timeout_ms = 0;  // close a connection silent this long (0: never, as Redis)
  ParserLimits limits;
  StoreOptions store;
  ForwardOptions forward;
};

class Server {
 public:
  static base::Result<std::unique_ptr<Server>> open(ServerConfig cfg);
  ~Server();
  // Stops accepting, closes the node (WAL durable), stops the runtime.
  void close();
  raft::Node& node() { return *node_; }

  struct CoreState;  // server.cc

 private:
  explicit Server(ServerConfig cfg);
  base::Status start();

  ServerConfig cfg_;
  ForwardAuth auth_;  // tags and checks NORI.WRITE / NORI.READ (kv/auth.h)
  std::unique_ptr<raft::Node> node_;
  std::vector<std::unique_ptr<CoreState>> cores_;
  std::unique_ptr<ServerImpl> impl_;  // the reactor-side code (server.cc)
  std::atomic<size_t> connections_{0};
  bool closed_ = false;

  friend struct ServerImpl;
};

}  // namespace nori::kv
