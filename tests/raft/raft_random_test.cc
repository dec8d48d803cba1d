// Randomized runs of the core on the TestCluster with chaotic delivery (loss,
// duplication, delay, reordering), crashes that lose unpersisted state,
// restarts and partitions, checking safety invariants as they run:
//   - at most one leader per term;
//   - every replica applies the same entry at each index;
//   - a linearizable read (lease or read-index) reflects every write that
//     was acknowledged before the read was issued;
//   - a proposal acknowledged ok was applied with its own payload;
//   - with clocks drifting within the configured bound, no lease read is
//     granted at or after the (real) time a later term's leader may first
//     commit.
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

// Runs one seed; returns the safety violations found (empty when safe).
std::vector<std::string> run_seed(uint64_t seed, int steps, bool unsafe_core = false) {
  std::vector<std::string> violations;
  auto violation = [&](std::string what) {
    violations.push_back("seed " + std::to_string(seed) + ": " + std::move(what));
  };
  std::mt19937_64 rng(seed);
  TestCluster c(5, [&](Config& cfg) {
    cfg.random_seed = seed * 31 + cfg.id;
    if (unsafe_core) {
      cfg.check_quorum = false;
      cfg.unsafe_lease_read_skips_clock_check_for_testing = true;
    }
  });
  c.set_chaos(seed);
  for (NodeId id : c.ids())
    c.set_drift_ppm(id, static_cast<int64_t>(rng() % 2001) - 1000);
  std::map<Term, TimePoint> wait_end;                    // real time a term's leader may commit
  std::vector<std::pair<Term, TimePoint>> lease_grants;  // (term, real time of the read)
  std::map<uint64_t, std::pair<Term, TimePoint>> read_issued;

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
        if (it->second != id) violation("two leaders in term " + std::to_string(e.term));
        if (c.raft(id).is_leader() && c.raft(id).term() == e.term) {
          wait_end[e.term] = c.real_time_of(id, c.raft(id).status().leader_wait_until);
        }
      }
      n.events.clear();
      for (size_t i = applied_seen[id]; i < n.applied.size(); ++i) {
        const Entry& e = n.applied[i];
        auto [it, inserted] = log.emplace(e.index, e);
        if (!(it->second == e)) {
          violation("node " + std::to_string(id) + " applied a different entry at " +
                    std::to_string(e.index));
        }
      }
      applied_seen[id] = n.applied.size();
      for (const ProposalResult& p : n.proposals) {
        if (!p.ok()) continue;
        if (acked.count(p.proposal_id) != 0) violation("proposal acknowledged twice");
        acked[p.proposal_id] = "p" + std::to_string(p.proposal_id);
        acked_index[p.proposal_id] = p.index;
        max_acked = std::max(max_acked, p.index);
      }
      n.proposals.clear();
      for (const ReadResult& r : n.reads) {
        if (!r.granted() || r.mode == ReadMode::kStaleNoGuarantee) continue;
        ++reads_granted;
        if (r.via_lease) lease_grants.push_back(read_issued.at(r.request_id));
        if (r.index < read_floor.at(r.request_id)) {
          violation("read " + std::to_string(r.request_id) + " on node " + std::to_string(id) +
                    " misses an acknowledged write");
        }
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
        (void)c.raft(l).propose("p" + std::to_string(id), id, c.local(l), c.local(l) + 3s);
      }
      // Reads go to any node that believes it leads, stale leaders included.
      std::vector<NodeId> leaders;
      for (NodeId id : c.ids()) {
        if (c.node(id).up && c.raft(id).is_leader()) leaders.push_back(id);
      }
      l = leaders[rng() % leaders.size()];
      if (rng() % 4 == 0) {
        uint64_t id = next_id++;
        read_floor[id] = max_acked;
        read_issued[id] = {c.raft(l).term(), c.now()};
        ReadMode mode = rng() % 2 ? ReadMode::kLease : ReadMode::kReadIndex;
        (void)c.raft(l).read(mode, id, c.local(l));
      }
    }
    c.advance(10ms);
    collect();
    if (violations.size() > 10) return violations;
  }
  // Every acknowledged proposal was applied, with its payload, somewhere.
  for (const auto& [id, payload] : acked) {
    auto it = log.find(acked_index[id]);
    if (it != log.end() && it->second.data != payload) {
      violation("proposal " + std::to_string(id) + " applied with another payload");
    }
  }
  for (const auto& [term, at] : lease_grants) {
    for (auto it = wait_end.upper_bound(term); it != wait_end.end(); ++it) {
      if (at > it->second) {
        violation("lease read in term " + std::to_string(term) + " overlaps term " +
                  std::to_string(it->first));
      }
    }
  }
  // The run must have exercised something.
  if (!unsafe_core) {
    EXPECT_GE(leader_of_term.size(), 2u);
    EXPECT_GT(acked.size(), 0u);
    EXPECT_GT(reads_granted, 0u);
    EXPECT_GT(lease_grants.size(), 0u);
  }
  return violations;
}

TEST(RaftRandomized, SafetyHoldsUnderChaoticDeliveryCrashesAndPartitions) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    std::vector<std::string> v = run_seed(seed, 2000);
    for (const std::string& s : v)
      ADD_FAILURE() << s;
    if (!v.empty()) return;
  }
}

TEST(RaftRandomized, ChecksCatchACoreThatSkipsTheLeaseClockCheck) {
  // A checker that cannot fail is not a checker.
  size_t found = 0;
  for (uint64_t seed = 1; seed <= 12 && found == 0; ++seed) {
    found += run_seed(seed, 2000, true).size();
  }
  EXPECT_GT(found, 0u);
}

}  // namespace
}  // namespace nori::raft
