// The simulator's safety checkers, fed by the simulation as things happen
// and run on every seed:
//
//   - at most one leader per term (per group);
//   - log matching: two logs with an entry of the same index and term agree on
//     every entry up to it (checked over written and durable logs);
//   - leader completeness: a new leader's log holds every entry any replica
//     has applied so far, with the same term;
//   - state machine safety: every replica applies the same entry at each
//     index, in index order, from index 1 after every restart, or from just
//     after the snapshot it restored (restart recovery, snapshot install);
//   - state machine contents: a state machine restored from a snapshot, one
//     written into a snapshot, and every replica's at the end of the run
//     equal the KV state the committed log gives at that index (so a crash
//     during an install that left a mix of old and new is caught);
//   - lease exclusion: no two nodes of one group grant lease reads at
//     overlapping simulated real time (per (node, term), the span from its
//     first to its last lease grant; spans of different nodes must not
//     overlap).
// Linearizability of client histories is checked by the simulation with
// tests/lincheck after the run.
//
// A violation is recorded (with simulated time and enough context to start
// reading the trace) and never aborts: the run finishes and prints its seed.
// Single-threaded.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "raft/types.h"
#include "tests/sim/kv.h"
#include "tests/sim/scheduler.h"

namespace nori::sim {

class SafetyChecker {
 public:
  static constexpr size_t kViolationsKeptMax = 32;

  // A node of `group` believes it leads `term` (learned at simulated `now`).
  void on_leader(raft::GroupId group, raft::Term term, raft::NodeId node, SimTime now);

  // `node` applied `e`, as leader of `leader_term` (0 if not leader). Each
  // replica applies 1, 2, 3... (again from 1 after on_restart); every replica
  // must apply the same entry at each index. The lowest leader term seen
  // applying an entry is the term that committed it.
  void on_apply(raft::GroupId group, raft::NodeId node, const raft::Entry& e,
                raft::Term leader_term, SimTime now);
  void on_restart(raft::GroupId group, raft::NodeId node);
  // `node` restored its state machine `kv` as of `index` (a snapshot, on
  // restart or install): it must equal the committed log's state there, and
  // the node applies index + 1 next. `what` names the occasion.
  void on_restore(raft::GroupId group, raft::NodeId node, raft::Index index, const KvStore& kv,
                  const char* what, SimTime now);
  // `kv` claims to be the state at `index` (a snapshot being written, or a
  // replica at the end of the run): it must equal the committed log's.
  void check_state(raft::GroupId group, raft::NodeId node, raft::Index index, const KvStore& kv,
                   const char* what, SimTime now);

  // `node` just became leader of `term` with `log` (its written log, which
  // may start past index 1: entries carry their index) after the snapshot
  // (snap_index, snap_term): it must hold every entry committed so far in an
  // earlier term, in its log or covered by its snapshot (whose term at
  // snap_index must then be the committed one). (A leader of an old term can
  // still be elected late, by delayed votes: it need not hold entries later
  // terms committed.)
  void check_leader_completeness(raft::GroupId group, raft::NodeId node, raft::Term term,
                                 const std::vector<raft::Entry>& log, SimTime now,
                                 raft::Index snap_index = 0, raft::Term snap_term = 0);

  // Log matching across every pair of `logs` of one group (logs may start
  // past index 1; they are compared where they overlap).
  void check_log_matching(
      raft::GroupId group,
      const std::vector<std::pair<raft::NodeId, const std::vector<raft::Entry>*>>& logs,
      const char* which, SimTime now);

  // `node` granted a read from its lease, as leader of `term`.
  void on_lease_read(raft::GroupId group, raft::NodeId node, raft::Term term, SimTime now);

  // End-of-run checks (lease exclusion).
  void finish();

  void violation(std::string what);
  const std::vector<std::string>& violations() const { return violations_; }
  size_t violation_count() const { return violation_count_; }

  // Statistics for reports.
  size_t terms_with_leader() const;
  size_t applied_entries(raft::GroupId group) const;
  size_t lease_reads() const { return lease_reads_; }

 private:
  struct Digest {
    raft::Term term = 0;
    uint64_t hash = 0;
    bool operator==(const Digest&) const = default;
  };
  struct LeaseSpan {
    SimTime first = 0, last = 0;
  };
  static Digest digest(const raft::Entry& e);

  std::map<std::pair<raft::GroupId, raft::Term>, raft::NodeId> leaders_;
  // The committed log's KV state at `index`, replayed from committed_ (a
  // cursor makes the usual increasing queries cheap). nullopt if the
  // checker has not seen every entry up to `index` applied.
  const KvStore* reference_state(raft::GroupId group, raft::Index index);

  std::map<raft::GroupId, std::vector<Digest>> applied_;         // index i at [i - 1]
  std::map<raft::GroupId, std::vector<raft::Entry>> committed_;  // index i at [i - 1]
  std::map<raft::GroupId, std::pair<raft::Index, KvStore>> reference_;
  std::map<raft::GroupId, std::vector<raft::Term>> commit_term_;  // 0: not seen
  std::map<std::pair<raft::GroupId, raft::NodeId>, raft::Index> applied_cursor_;
  // (group, node, term) -> span of lease grants.
  std::map<std::tuple<raft::GroupId, raft::NodeId, raft::Term>, LeaseSpan> lease_spans_;
  size_t lease_reads_ = 0;
  std::vector<std::string> violations_;
  size_t violation_count_ = 0;
};

}  // namespace nori::sim
