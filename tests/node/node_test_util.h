// In-process clusters of raft::Node for tests: n nodes, each with its own
// runtime, data directory (under the build tree: O_DIRECT needs a real
// filesystem, not tmpfs) and loopback ports.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "raft/node/node.h"
#include "tests/node/free_ports.h"

namespace nori::raft::testing {

using nori::testing::free_port_block;

inline std::string fresh_dir(const std::string& name) {
  std::string d = std::filesystem::current_path().string() + "/node-test-data/" + name + "-" +
                  std::to_string(::getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// What each node applied, per group, in order (filled on the group's core,
// read by the test thread under the mutex).
struct Applied {
  std::mutex mu;
  std::map<GroupId, std::vector<std::pair<Index, std::string>>> log;
};

inline RaftConfig node_config(NodeId id, const std::vector<PeerAddress>& peers,
                              const std::string& dir, std::vector<GroupId> groups) {
  RaftConfig c;
  c.node_id = id;
  c.cluster_secret = "node test secret";
  c.peers = peers;
  c.data_dir = dir;
  c.groups = std::move(groups);
  c.heartbeat_ms = 50;
  c.election_timeout_min_ms = 150;
  c.election_timeout_max_ms = 300;
  c.lease_ms = 400;
  c.tick_granularity_ms = 5;
  c.wal_segment_bytes = 4 << 20;
  c.propose_timeout_ms = 2000;
  c.read_timeout_ms = 2000;
  return c;
}

class TestCluster {
 public:
  TestCluster(const std::string& name, size_t n, std::vector<GroupId> groups)
      : root_(fresh_dir(name)), groups_(std::move(groups)) {
    const uint16_t base = free_port_block(static_cast<unsigned>(n));
    for (size_t i = 0; i < n; ++i)
      peers_.push_back({static_cast<NodeId>(i + 1), "127.0.0.1", static_cast<uint16_t>(base + i)});
    applied_.resize(n);
    nodes_.resize(n);
    for (size_t i = 0; i < n; ++i)
      applied_[i] = std::make_unique<Applied>();
    for (size_t i = 0; i < n; ++i)
      start(i);
  }
  ~TestCluster() {
    for (auto& n : nodes_)
      n.reset();
    std::filesystem::remove_all(root_);
  }

  RaftConfig config(size_t i) const {
    return node_config(i + 1, peers_, root_ + "/n" + std::to_string(i + 1), groups_);
  }
  void start(size_t i, std::optional<RaftConfig> cfg = std::nullopt) {
    Applied* a = applied_[i].get();
    NodeCallbacks cb;
    cb.group_hooks = [a](GroupId g) {
      GroupHooks h;
      h.apply = [a, g](Index idx, std::string_view data) {
        std::lock_guard lk(a->mu);
        a->log[g].emplace_back(idx, std::string(data));
      };
      return h;
    };
    auto n = Node::open(cfg ? *cfg : config(i), std::move(cb));
    NORI_ASSERT(n.ok(), "{}", n.error().to_string());
    nodes_[i] = std::move(n).value();
  }
  void stop(size_t i) { nodes_[i].reset(); }
  void wipe_applied(size_t i) {
    std::lock_guard lk(applied_[i]->mu);
    applied_[i]->log.clear();
  }

  Node& node(size_t i) { return *nodes_[i]; }
  bool up(size_t i) const { return nodes_[i] != nullptr; }
  size_t size() const { return nodes_.size(); }

  // The index of the node that leads g as seen by a majority, or -1 after the deadline.
  int wait_leader(GroupId g, std::chrono::milliseconds within = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (up(i) && nodes_[i]->is_leader(g)) return static_cast<int>(i);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  base::Result<Index> propose(size_t i, GroupId g, std::string data) {
    Node& n = node(i);
    return n.run(g, [&n, g, data]() { return n.propose(g, data); });
  }
  base::Status read(size_t i, GroupId g, ReadMode mode) {
    Node& n = node(i);
    return n.run(g, [&n, g, mode]() { return n.read(g, mode); });
  }

  std::vector<std::pair<Index, std::string>> applied(size_t i, GroupId g) {
    std::lock_guard lk(applied_[i]->mu);
    return applied_[i]->log[g];
  }
  // Waits until node i applied at least `count` entries of g.
  bool wait_applied(size_t i, GroupId g, size_t count,
                    std::chrono::milliseconds within = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      if (applied(i, g).size() >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  std::string root_;
  std::vector<GroupId> groups_;
  std::vector<PeerAddress> peers_;
  std::vector<std::unique_ptr<Applied>> applied_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

}  // namespace nori::raft::testing
