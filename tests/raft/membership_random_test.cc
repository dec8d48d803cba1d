// Randomized membership changes on the TestCluster: while clients propose
// and read, the leader adds members (learner, then automatic promotion),
// removes members (the leader itself included) and abandons changes, under
// chaotic delivery (loss, duplication, delay, reordering), crashes that lose
// unpersisted state, restarts and partitions. Checked as it runs:
//   - at most one leader per term;
//   - every replica applies the same entry at each index (configuration
//     entries included, so every replica walks the same configurations);
//   - a linearizable read reflects every write acknowledged before it;
//   - an acknowledged proposal was applied with its own payload;
//   - a node that applied a configuration without itself never leads after.
// At the end the network heals and every node restarts: the group must elect
// a leader and finish any change (no joint configuration left behind).
// Snapshots are taken every few dozen entries, so new, lagging and restarted
// members also catch up by snapshot transfer. A failure prints its seed.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "raft/membership.h"
#include "tests/raft/test_cluster.h"

namespace nori::raft {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;

constexpr NodeId kIdsMax = 8;  // nodes 1..8; 1..3 bootstrap the group

std::vector<std::string> run_seed(uint64_t seed, int steps, size_t* changes_done,
                                  size_t* installs_done) {
  std::vector<std::string> violations;
  auto violation = [&](std::string what) {
    violations.push_back("seed " + std::to_string(seed) + ": " + std::move(what));
  };
  std::mt19937_64 rng(seed);
  TestCluster c(3, [&](Config& cfg) {
    cfg.random_seed = seed * 31 + cfg.id;
    // Snapshots every few dozen entries, keeping few behind them: lagging,
    // restarted and new members catch up by snapshot while changes run.
    cfg.snapshot_entries_max = 40;
    cfg.snapshot_keep_entries = 8;
    cfg.snapshot_timeout_ms = 500;
  });
  c.set_snapshot_chunk_bytes(256);
  c.set_chaos(seed);

  std::map<Term, NodeId> leader_of_term;
  std::map<Index, Entry> log;
  std::map<uint64_t, std::string> acked;
  std::map<uint64_t, Index> acked_index;
  std::map<uint64_t, Index> read_floor;
  Index max_acked = 0;
  std::map<NodeId, size_t> applied_seen;
  uint64_t next_id = 1;

  auto collect = [&] {
    for (NodeId id : c.all_ids()) {
      auto& n = c.node(id);
      for (const Event& e : n.events) {
        if (e.kind != EventKind::kLeaderElected || e.node != id) continue;
        auto [it, inserted] = leader_of_term.emplace(e.term, id);
        if (it->second != id) violation("two leaders in term " + std::to_string(e.term));
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
        acked[p.proposal_id] = "p" + std::to_string(p.proposal_id);
        acked_index[p.proposal_id] = p.index;
        max_acked = std::max(max_acked, p.index);
      }
      n.proposals.clear();
      for (const ReadResult& r : n.reads) {
        if (!r.granted() || r.mode == ReadMode::kStaleNoGuarantee) continue;
        if (r.index < read_floor.at(r.request_id)) {
          violation("read " + std::to_string(r.request_id) + " misses an acknowledged write");
        }
      }
      n.reads.clear();
    }
  };

  for (int step = 0; step < steps; ++step) {
    uint64_t dice = rng() % 1000;
    std::vector<NodeId> ids = c.all_ids();
    NodeId victim = ids[rng() % ids.size()];
    if (dice < 3 && c.node(victim).up) {
      int down = 0;
      for (NodeId id : ids)
        down += !c.node(id).up;
      if (down < 1) c.crash(victim);
    } else if (dice < 15 && !c.node(victim).up) {
      c.start_node(victim);
      applied_seen[victim] = 0;
    } else if (dice < 17) {
      c.isolate(victim);
    } else if (dice < 30) {
      c.heal();
    }
    NodeId l = c.leader();
    if (l != kNoNode) {
      Raft& r = c.raft(l);
      TimePoint now = c.local(l);
      if (rng() % 3 == 0) {
        uint64_t id = next_id++;
        (void)r.propose("p" + std::to_string(id), id, now, now + 3s);
      }
      if (rng() % 4 == 0) {
        uint64_t id = next_id++;
        read_floor[id] = max_acked;
        (void)r.read(rng() % 2 ? ReadMode::kLease : ReadMode::kReadIndex, id, now);
      }
      uint64_t op = rng() % 100;
      const Membership& m = r.membership();
      if (op < 3) {
        // Add a node that has never been a member (a fresh disk).
        for (NodeId id = 4; id <= kIdsMax; ++id) {
          if (c.has_node(id)) continue;
          if (r.add_member(id, now).ok()) {
            c.add_node(id);
            ++*changes_done;
          }
          break;
        }
      } else if (op < 6 && m.voters.size() > 3 && !m.joint()) {
        // Remove a voter, the leader itself included.
        NodeId target = m.voters[rng() % m.voters.size()];
        if (r.remove_member(target, now).ok()) ++*changes_done;
      } else if (op == 6) {
        (void)r.abandon_member_change(now);
      }
    }
    c.advance(10ms);
    collect();
    if (violations.size() > 10) return violations;
  }
  // Heal, restart everyone: the group elects and finishes any change.
  c.heal();
  for (NodeId id : c.all_ids()) {
    if (!c.node(id).up) c.start_node(id);
  }
  NodeId l = kNoNode;
  for (int i = 0; i < 1000; ++i) {
    c.advance(10ms);
    l = c.leader();
    if (l != kNoNode && !c.raft(l).membership().joint() &&
        c.raft(l).commit_index() >= c.raft(l).membership_index()) {
      break;
    }
  }
  collect();
  if (l == kNoNode) {
    violation("no leader after healing");
  } else if (c.raft(l).membership().joint()) {
    violation("joint configuration left behind: " + to_string(c.raft(l).membership()));
  }
  for (const auto& [id, payload] : acked) {
    auto it = log.find(acked_index[id]);
    if (it != log.end() && it->second.data != payload) {
      violation("proposal " + std::to_string(id) + " applied with another payload");
    }
  }
  size_t installs = 0;
  for (NodeId id : c.all_ids())
    installs += c.node(id).installs;
  *installs_done += installs;
  return violations;
}

TEST(RaftMembershipRandomized, SafetyHoldsUnderRandomChangesChaosCrashesAndPartitions) {
  size_t changes = 0, installs = 0;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    std::vector<std::string> v = run_seed(seed, 2000, &changes, &installs);
    for (const std::string& s : v)
      ADD_FAILURE() << s;
    if (!v.empty()) return;
  }
  EXPECT_GT(changes, 8u) << "the runs made too few membership changes to mean anything";
  EXPECT_GT(installs, 0u) << "no snapshot was ever installed";
}

}  // namespace
}  // namespace nori::raft
