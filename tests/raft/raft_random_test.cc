// Randomized runs of the core on the TestCluster with chaotic delivery (loss,
// duplication, delay, reordering), crashes that lose unpersisted state,
// restarts and partitions, checking safety invariants as they run:
//   - at most one leader per term;
//   - every replica applies the same entry at each index;
//   - a linearizable read (lease or read-index) reflects every write that
//     was acknowledged before the read was issued;
//   - a proposal acknowledged ok was applied with its own payload.
// The deterministic simulator (tests/sim) does this at scale, with drifting
// clocks; this is the core's own quick guard. A failure prints its seed.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "tests/raft/test_cluster.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

void run_seed(uint64_t seed, int steps) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  TestCluster c(5, [&](Config& cfg) { cfg.random_seed = seed * 31 + cfg.id; });
  c.set_chaos(seed);

  std::map<Term, NodeId> leader_of_term;
  std::map<Index, Entry> log;             // what some replica applied at each index
  std::map<uint64_t, std::string> acked;  // proposal id -> payload, acknowledged ok
  std::map<uint64_t, Index> acked_index;  // proposal id -> index
  std::map<uint64_t, Index> read_floor;   // read id -> max acked index when issued
  Index max_acked = 0;
  std::map<NodeId, size_t> applied_seen;
  uint64_t next_id = 1;
  size_t reads_granted = 0;

  auto collect = [&] {
    for (NodeId id : c.ids()) {
      auto& n = c.node(id);
      for (const Event& e : n.events) {
        if (e.kind != EventKind::kLeaderElected || e.node != id) continue;
        auto [it, inserted] = leader_of_term.emplace(e.term, id);
        ASSERT_EQ(it->second, id) << "two leaders in term " << e.term;
      }
      n.events.clear();
      for (size_t i = applied_seen[id]; i < n.applied.size(); ++i) {
        const Entry& e = n.applied[i];
        auto [it, inserted] = log.emplace(e.index, e);
        ASSERT_EQ(it->second, e) << "node " << id << " applied a different entry at " << e.index;
      }
      applied_seen[id] = n.applied.size();
      for (const ProposalResult& p : n.proposals) {
        if (!p.ok()) continue;
        ASSERT_TRUE(acked.count(p.proposal_id) == 0);
        acked[p.proposal_id] = "p" + std::to_string(p.proposal_id);
        acked_index[p.proposal_id] = p.index;
        max_acked = std::max(max_acked, p.index);
      }
      n.proposals.clear();
      for (const ReadResult& r : n.reads) {
        if (!r.granted() || r.mode == ReadMode::kStaleNoGuarantee) continue;
        ++reads_granted;
        ASSERT_GE(r.index, read_floor.at(r.request_id))
            << "read " << r.request_id << " on node " << id << " misses an acknowledged write";
      }
      n.reads.clear();
    }
  };

  for (int step = 0; step < steps; ++step) {
    uint64_t dice = rng() % 1000;
    NodeId victim = 1 + rng() % 5;
    if (dice < 3 && c.node(victim).up) {
      int down = 0;
      for (NodeId id : c.ids())
        down += !c.node(id).up;
      if (down < 2) c.crash(victim);
    } else if (dice < 15 && !c.node(victim).up) {
      c.start_node(victim);
      applied_seen[victim] = 0;
    } else if (dice < 18) {
      c.isolate(victim);
    } else if (dice < 28) {
      c.heal();
    }
    NodeId l = c.leader();
    if (l != kNoNode) {
      if (rng() % 3 == 0) {
        uint64_t id = next_id++;
        (void)c.raft(l).propose("p" + std::to_string(id), id, c.now(), c.now() + 3s);
      }
      if (rng() % 4 == 0) {
        uint64_t id = next_id++;
        read_floor[id] = max_acked;
        ReadMode mode = rng() % 2 ? ReadMode::kLease : ReadMode::kReadIndex;
        (void)c.raft(l).read(mode, id, c.now());
      }
    }
    c.advance(10ms);
    collect();
    if (::testing::Test::HasFatalFailure()) return;
  }
  // Every acknowledged proposal was applied, with its payload, somewhere.
  for (const auto& [id, payload] : acked) {
    auto it = log.find(acked_index[id]);
    if (it != log.end()) EXPECT_EQ(it->second.data, payload) << "proposal " << id;
  }
  EXPECT_GE(leader_of_term.size(), 1u);
  EXPECT_GT(acked.size(), 0u);
  EXPECT_GT(reads_granted, 0u);
}

TEST(RaftRandomized, SafetyHoldsUnderChaoticDeliveryCrashesAndPartitions) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    run_seed(seed, 2000);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace nori::raft
