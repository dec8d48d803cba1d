#include "tests/sim/checkers.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "runtime/base/bytes.h"

namespace nori::sim {

namespace {
double ms(SimTime t) {
  return static_cast<double>(t) / kMillisecond;
}
}  // namespace

void SafetyChecker::violation(std::string what) {
  ++violation_count_;
  if (violations_.size() < kViolationsKeptMax) violations_.push_back(std::move(what));
}

SafetyChecker::Digest SafetyChecker::digest(const raft::Entry& e) {
  return Digest{e.term, base::xxh3_64(e.data.data(), e.data.size(), static_cast<uint64_t>(e.type))};
}

void SafetyChecker::on_leader(raft::GroupId group, raft::Term term, raft::NodeId node,
                              SimTime now) {
  auto [it, inserted] = leaders_.try_emplace({group, term}, node);
  if (!inserted && it->second != node) {
    violation(
        fmt::format("two leaders in one term: group {} term {} led by node {} and node {} "
                    "(t={:.3f} ms)",
                    group, term, it->second, node, ms(now)));
  }
}

void SafetyChecker::on_restart(raft::GroupId group, raft::NodeId node) {
  applied_cursor_[{group, node}] = 0;
}

void SafetyChecker::on_apply(raft::GroupId group, raft::NodeId node, const raft::Entry& e,
                             raft::Term leader_term, SimTime now) {
  if (leader_term != 0 && e.index != 0) {
    auto& ct = commit_term_[group];
    if (ct.size() < e.index) ct.resize(e.index, 0);
    raft::Term& t = ct[e.index - 1];
    if (t == 0 || leader_term < t) t = leader_term;
  }
  raft::Index& cursor = applied_cursor_[{group, node}];
  if (e.index != cursor + 1) {
    violation(
        fmt::format("out-of-order apply: group {} node {} applied index {} after {} "
                    "(t={:.3f} ms)",
                    group, node, e.index, cursor, ms(now)));
  }
  cursor = e.index;
  auto& seq = applied_[group];
  const Digest d = digest(e);
  if (e.index == 0 || e.index > seq.size() + 1) {
    // Nobody applied the previous index yet; the first check already fired
    // for this replica, keep the global sequence contiguous.
    return;
  }
  if (e.index == seq.size() + 1) {
    seq.push_back(d);
    committed_[group].push_back(e);
  } else if (!(seq[e.index - 1] == d)) {
    violation(
        fmt::format("replicas applied different entries: group {} index {}: node {} "
                    "applied term {} (hash {:x}), another replica applied term {} "
                    "(hash {:x}) (t={:.3f} ms)",
                    group, e.index, node, d.term, d.hash, seq[e.index - 1].term,
                    seq[e.index - 1].hash, ms(now)));
  }
}

void SafetyChecker::on_restore(raft::GroupId group, raft::NodeId node, raft::Index index,
                               const KvStore& kv, const char* what, SimTime now) {
  applied_cursor_[{group, node}] = index;
  check_state(group, node, index, kv, what, now);
}

const KvStore* SafetyChecker::reference_state(raft::GroupId group, raft::Index index) {
  const auto& log = committed_[group];
  if (index > log.size()) return nullptr;
  auto& [at, kv] = reference_[group];
  if (at > index) {
    at = 0;
    kv = KvStore();
  }
  for (; at < index; ++at) {
    const raft::Entry& e = log[at];
    if (e.type != raft::EntryType::kNormal || e.data.empty()) continue;
    auto cmd = decode_command(e.data);
    if (cmd) kv.apply(*cmd);  // an undecodable entry is reported where it is applied
  }
  return &kv;
}

void SafetyChecker::check_state(raft::GroupId group, raft::NodeId node, raft::Index index,
                                const KvStore& kv, const char* what, SimTime now) {
  const KvStore* ref = reference_state(group, index);
  if (ref == nullptr) {
    violation(fmt::format(
        "{}: group {} node {} holds a state machine at index {} but only {} entries were ever "
        "applied (t={:.3f} ms)",
        what, group, node, index, committed_[group].size(), ms(now)));
    return;
  }
  if (kv == *ref) return;
  std::string diff;
  for (const auto& [k, v] : ref->data()) {
    if (kv.get(k) != v) {
      diff = fmt::format("key {}: '{}' instead of '{}'", k, kv.get(k), v);
      break;
    }
  }
  if (diff.empty())
    diff = fmt::format("{} keys instead of {}", kv.data().size(), ref->data().size());
  violation(fmt::format(
      "state machine contents: {}: group {} node {} at index {} differs from the committed "
      "log: {} (t={:.3f} ms)",
      what, group, node, index, diff, ms(now)));
}

void SafetyChecker::check_leader_completeness(raft::GroupId group, raft::NodeId node,
                                              raft::Term term, const std::vector<raft::Entry>& log,
                                              SimTime now, raft::Index snap_index,
                                              raft::Term snap_term) {
  const auto& seq = applied_[group];
  const auto& ct = commit_term_[group];
  const size_t first = log.empty() ? snap_index + 1 : log.front().index;  // 1-based
  for (size_t i = 0; i < seq.size(); ++i) {
    if (i >= ct.size() || ct[i] == 0 || ct[i] >= term) continue;
    const raft::Index index = i + 1;
    if (index < first) {
      // Covered by the snapshot; its own term must be the committed one
      // (log matching then covers the prefix).
      if (index <= snap_index && (index != snap_index || seq[i].term == snap_term)) continue;
      violation(fmt::format(
          "leader completeness: group {} node {} leads term {} but its log starts "
          "at {} after snapshot ({}, term {}), missing committed entry {} of term "
          "{} (t={:.3f} ms)",
          group, node, term, first, snap_index, snap_term, index, seq[i].term, ms(now)));
      return;
    }
    const size_t pos = index - first;
    if (pos >= log.size() || !(digest(log[pos]) == seq[i])) {
      violation(
          fmt::format("leader completeness: group {} node {} leads term {} but its log "
                      "({} entries) lacks entry {} (of term {}) committed in term {} "
                      "(t={:.3f} ms)",
                      group, node, term, log.size(), i + 1, seq[i].term, ct[i], ms(now)));
      return;
    }
  }
}

void SafetyChecker::check_log_matching(
    raft::GroupId group,
    const std::vector<std::pair<raft::NodeId, const std::vector<raft::Entry>*>>& logs,
    const char* which, SimTime now) {
  for (size_t a = 0; a < logs.size(); ++a) {
    for (size_t b = a + 1; b < logs.size(); ++b) {
      const auto& la = *logs[a].second;
      const auto& lb = *logs[b].second;
      if (la.empty() || lb.empty()) continue;
      // Compare where both logs have entries (either may be compacted).
      const raft::Index fa = la.front().index, fb = lb.front().index;
      const raft::Index lo = std::max(fa, fb);
      const raft::Index hi = std::min(fa + la.size(), fb + lb.size());  // exclusive
      for (const auto* l : {&la, &lb}) {
        for (size_t i = 0; i < l->size(); ++i) {
          if ((*l)[i].index != l->front().index + i) {
            violation(fmt::format("{} log of group {} has a wrong index at position {}", which,
                                  group, i + 1));
            return;
          }
        }
      }
      raft::Index first_diff = hi;
      for (raft::Index i = lo; i < hi; ++i) {
        if (!(la[i - fa] == lb[i - fb])) {
          first_diff = i;
          break;
        }
      }
      for (raft::Index i = first_diff; i < hi; ++i) {
        if (la[i - fa].term == lb[i - fb].term) {
          violation(fmt::format(
              "log matching: group {} {} logs of nodes {} and {} both hold "
              "term {} at index {} but differ at index {} (t={:.3f} ms)",
              group, which, logs[a].first, logs[b].first, la[i - fa].term, i, first_diff, ms(now)));
          break;
        }
      }
    }
  }
}

void SafetyChecker::on_lease_read(raft::GroupId group, raft::NodeId node, raft::Term term,
                                  SimTime now) {
  ++lease_reads_;
  auto [it, inserted] = lease_spans_.try_emplace({group, node, term}, LeaseSpan{now, now});
  if (!inserted) it->second.last = now;
}

void SafetyChecker::finish() {
  // Spans sorted by start within each group; any overlap between spans of
  // different nodes means two nodes believed they held the lease at once.
  std::map<raft::GroupId, std::vector<std::tuple<SimTime, SimTime, raft::NodeId, raft::Term>>>
      by_group;
  for (const auto& [k, span] : lease_spans_) {
    auto [group, node, term] = k;
    by_group[group].emplace_back(span.first, span.last, node, term);
  }
  for (auto& [group, spans] : by_group) {
    std::sort(spans.begin(), spans.end());
    // Track the span reaching furthest so far (sorted by start).
    size_t reach = 0;
    for (size_t i = 1; i < spans.size(); ++i) {
      const auto& [first, last, node, term] = spans[i];
      const auto& [rfirst, rlast, rnode, rterm] = spans[reach];
      if (first <= rlast && node != rnode) {
        violation(fmt::format(
            "lease exclusion: group {}: node {} (term {}) granted lease reads "
            "over [{:.3f}, {:.3f}] ms while node {} (term {}) granted them "
            "over [{:.3f}, {:.3f}] ms",
            group, node, term, ms(first), ms(last), rnode, rterm, ms(rfirst), ms(rlast)));
      }
      if (last > rlast) reach = i;
    }
  }
}

size_t SafetyChecker::terms_with_leader() const {
  return leaders_.size();
}

size_t SafetyChecker::applied_entries(raft::GroupId group) const {
  auto it = applied_.find(group);
  return it == applied_.end() ? 0 : it->second.size();
}

}  // namespace nori::sim
