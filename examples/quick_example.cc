// The README's quick example (the seed's, in C++): start a node, propose a
// command once it leads, then wait until a linearizable read may be served.
// A one-node cluster here, so it runs alone: `./quick_example [data_dir]`.
#include <chrono>
#include <thread>

#include "raft/node/node.h"

using namespace nori;

int main(int argc, char** argv) {
  raft::RaftConfig config;
  config.node_id = 1;
  config.peers = {{1, "127.0.0.1", 7101}};  // every voter; core i listens on port + i
  config.data_dir = argc > 1 ? argv[1] : "./quick-example-data";
  config.cluster_secret = "change me, and keep me secret";
  config.groups = {1};
  config.heartbeat_ms = 150;  // the defaults, spelled out
  config.election_timeout_min_ms = 300;
  config.election_timeout_max_ms = 600;
  config.lease_ms = 2000;

  raft::NodeCallbacks callbacks;
  callbacks.group_hooks = [](raft::GroupId) {
    raft::GroupHooks hooks;
    hooks.apply = [](raft::Index index, std::string_view cmd) {
      fmt::print("applied {}: {}\n", index, cmd);  // your state machine here
    };
    return hooks;
  };
  auto node = raft::Node::open(config, callbacks);
  if (!node) {
    fmt::print(stderr, "{}\n", node.error().to_string());
    return 1;
  }
  raft::Node& n = **node;
  const raft::GroupId g = 1;
  while (!n.is_leader(g))  // a one-node group elects itself within a timeout
    std::this_thread::sleep_for(std::chrono::milliseconds(10));

  // Propose a command (write): resolves once committed on a majority.
  base::Result<raft::Index> index = n.run(g, [&] { return n.propose(g, "SET key value"); });
  if (!index) {
    fmt::print(stderr, "propose: {}\n", index.error().to_string());
    return 1;
  }
  fmt::print("Command committed at index: {}\n", *index);

  // Read with the lease (fast path; falls back to read-index when it lapsed).
  base::Status read = n.run(g, [&] { return n.read(g, raft::ReadMode::kLease); });
  if (!read) {
    fmt::print(stderr, "read: {}\n", read.error().to_string());
    return 1;
  }
  fmt::print("now safe to read from the local state machine\n");
  n.close();
  return 0;
}
