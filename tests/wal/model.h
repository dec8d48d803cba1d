// A reference model of what a log holds, for WAL tests: the sequence of
// operations applied, and the state after any prefix of them. Recovery must
// produce exactly the state after some prefix that includes every
// acknowledged operation.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "wal/format.h"
#include "wal/group_index.h"

namespace nori::wal::testing {

struct Op {
  enum Kind { kAppend, kHardState, kTruncate, kCompact, kReset } kind;
  uint64_t group = 0;
  uint64_t index = 0;  // first index / last kept / compact or reset index
  uint64_t term = 0;   // compaction or reset term
  std::vector<uint64_t> terms;
  std::vector<std::string> payloads;
  HardState hs;
};

struct ModelGroup {
  std::map<uint64_t, std::pair<uint64_t, std::string>> entries;  // index -> (term, payload)
  uint64_t last = 0;
  uint64_t compact = 0;
  uint64_t compact_term = 0;
  HardState hs;
  bool operator==(const ModelGroup&) const = default;
};

using ModelState = std::map<uint64_t, ModelGroup>;

inline void apply_op(ModelState& s, const Op& op) {
  ModelGroup& g = s[op.group];
  switch (op.kind) {
    case Op::kAppend:
      for (size_t k = 0; k < op.terms.size(); ++k) {
        g.entries[op.index + k] = {op.terms[k], op.payloads[k]};
      }
      g.last = op.index + op.terms.size() - 1;
      break;
    case Op::kHardState:
      g.hs = op.hs;
      break;
    case Op::kTruncate:
      g.entries.erase(g.entries.upper_bound(op.index), g.entries.end());
      if (g.last > op.index) g.last = op.index;
      break;
    case Op::kCompact:
      if (op.index > g.compact) {
        g.entries.erase(g.entries.begin(), g.entries.upper_bound(op.index));
        g.compact = op.index;
        g.compact_term = op.term;
        if (g.last < op.index) g.last = op.index;
      }
      break;
    case Op::kReset: {
      // Written independently of the engine: the log matches the snapshot
      // if it holds entry index with that term, or it is the start point.
      auto it = g.entries.find(op.index);
      const bool matches = (it != g.entries.end() && it->second.first == op.term) ||
                           (g.compact == op.index && g.compact_term == op.term);
      if (matches) {
        apply_op(s, Op{Op::kCompact, op.group, op.index, op.term, {}, {}, {}});
      } else {
        g.entries.clear();
        g.last = op.index;
        g.compact = op.index;
        g.compact_term = op.term;
      }
      break;
    }
  }
}

// Builds the model state of a recovered (or live) log; payload(loc) fetches bytes.
inline ModelState state_of(const GroupMap& groups,
                           const std::function<std::string(const EntryLoc&)>& payload) {
  ModelState s;
  for (const auto& [id, g] : groups) {
    ModelGroup& m = s[id];
    m.last = g.last_index();
    m.compact = g.compact_index();
    m.compact_term = g.compact_term();
    m.hs = g.hard_state();
    for (uint64_t i = g.first_index(); i <= g.last_index() && g.entry_count() > 0; ++i) {
      const EntryLoc* e = g.entry(i);
      m.entries[i] = {e->term, payload(*e)};
    }
  }
  // Groups that exist only by a default-constructed state compare equal to absent ones.
  for (auto it = s.begin(); it != s.end();) {
    it = (it->second == ModelGroup{}) ? s.erase(it) : std::next(it);
  }
  return s;
}

inline ModelState normalized(ModelState s) {
  for (auto it = s.begin(); it != s.end();) {
    it = (it->second == ModelGroup{}) ? s.erase(it) : std::next(it);
  }
  return s;
}

}  // namespace nori::wal::testing
