#include "tests/lincheck/checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>

namespace nori::lincheck {

std::string_view to_string(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "not linearizable";
    case Verdict::kUnknown:
      return "unknown";
  }
  return "?";
}

const KeyResult* CheckResult::first_problem() const {
  for (const KeyResult& k : keys) {
    if (k.verdict == Verdict::kNotLinearizable) return &k;
  }
  for (const KeyResult& k : keys) {
    if (k.verdict == Verdict::kUnknown) return &k;
  }
  return nullptr;
}

std::string CheckResult::summary() const {
  const KeyResult* p = first_problem();
  if (!p) {
    return fmt::format("linearizable ({} ops, {} dropped, {} keys, {} steps)", ops_total,
                       ops_dropped, keys.size(), steps);
  }
  return fmt::format("{}: key \"{}\": {}", to_string(verdict), p->key, p->explanation);
}

namespace {

constexpr int kNil = -1;
constexpr int64_t kInfinitelyLate = std::numeric_limits<int64_t>::max();

// Search over the operations of one key. Operation i has call entry 2i and
// return entry 2i+1; the list head is a sentinel at index 2n.
class KeySearch {
 public:
  KeySearch(std::vector<const Operation*> ops, const CheckOptions& options)
      : ops_(std::move(ops)), options_(options) {
    const int n = static_cast<int>(ops_.size());
    head_ = 2 * n;
    next_.assign(2 * n + 1, kNil);
    prev_.assign(2 * n + 1, kNil);
    words_ = (ops_.size() + 63) / 64;
    linearized_.assign(words_, 0);

    // Zobrist words: a fixed seed keeps the search (and its step count)
    // deterministic from run to run.
    std::mt19937_64 rng(0x6e6f72696c696e63ULL);
    zobrist_.resize(ops_.size());
    for (uint64_t& z : zobrist_)
      z = rng();

    // Time order; at equal times calls first (touching intervals overlap), and
    // the order among equal entries is fixed by operation index.
    std::vector<int> order(2 * n);
    for (int e = 0; e < 2 * n; ++e)
      order[e] = e;
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      int64_t ta = time_of(a), tb = time_of(b);
      if (ta != tb) return ta < tb;
      bool ra = a & 1, rb = b & 1;
      if (ra != rb) return !ra;
      return a < b;
    });
    int last = head_;
    for (int e : order) {
      next_[last] = e;
      prev_[e] = last;
      last = e;
    }
    next_[last] = kNil;
  }

  KeyResult run() {
    KeyResult result;
    result.ops = ops_.size();
    int state = intern("");
    int entry = next_[head_];
    std::vector<std::pair<int, int>> calls;  // (call entry, state before it)
    size_t best_depth = 0;
    int stuck_op = -1;
    int best_state = state;

    while (next_[head_] != kNil) {
      if (options_.max_steps_per_key && result.steps >= options_.max_steps_per_key) {
        result.verdict = Verdict::kUnknown;
        result.explanation =
            fmt::format("search gave up after {} steps ({} ops)", result.steps, ops_.size());
        return result;
      }
      ++result.steps;
      NORI_ASSERT(entry != kNil, "scan ran off the list end");
      if ((entry & 1) == 0) {
        const int op = entry / 2;
        std::optional<int> after = step(state, op);
        if (after) {
          flip(op);
          if (remember(*after)) {
            calls.emplace_back(entry, state);
            state = *after;
            lift(entry);
            entry = next_[head_];
            continue;
          }
          flip(op);
        }
        entry = next_[entry];
        continue;
      }
      // A return entry: its operation is still unlinearized, so nothing
      // further along may go first. Record the deepest dead end for the
      // report, then backtrack.
      if (calls.size() >= best_depth) {
        best_depth = calls.size();
        stuck_op = entry / 2;
        best_state = state;
      }
      if (calls.empty()) break;
      auto [call_entry, before] = calls.back();
      calls.pop_back();
      state = before;
      flip(call_entry / 2);
      unlift(call_entry);
      entry = next_[call_entry];
    }

    if (next_[head_] == kNil) {
      result.verdict = Verdict::kLinearizable;
      return result;
    }
    result.verdict = Verdict::kNotLinearizable;
    result.longest_prefix = best_depth;
    NORI_ASSERT(stuck_op >= 0);
    result.explanation = fmt::format(
        "no linearization of {} ops; the longest partial one places {} ops, reaching value "
        "\"{}\", and then cannot place {}",
        ops_.size(), best_depth, states_[best_state], describe(*ops_[stuck_op]));
    return result;
  }

 private:
  int64_t time_of(int entry) const {
    const Operation& op = *ops_[entry / 2];
    if ((entry & 1) == 0) return op.call_ns;
    return op.status == OpStatus::kInfo ? kInfinitelyLate : op.return_ns;
  }

  int intern(const std::string& s) {
    auto [it, inserted] = state_ids_.try_emplace(s, static_cast<int>(states_.size()));
    if (inserted) states_.push_back(s);
    return it->second;
  }

  // The model: the state after `op` from `state`, or nullopt if `op` cannot
  // take effect there (a get that saw another value).
  std::optional<int> step(int state, int op_index) {
    const Operation& op = *ops_[op_index];
    switch (op.kind) {
      case OpKind::kGet:
        if (states_[state] == op.output) return state;
        return std::nullopt;
      case OpKind::kPut:
        return intern(op.value);
      case OpKind::kAppend: {
        uint64_t k = (static_cast<uint64_t>(state) << 32) | static_cast<uint32_t>(op_index);
        auto it = appended_.find(k);
        if (it != appended_.end()) return it->second;
        int s = intern(states_[state] + op.value);
        appended_.emplace(k, s);
        return s;
      }
    }
    return std::nullopt;
  }

  void flip(int op) {
    linearized_[op / 64] ^= uint64_t{1} << (op % 64);
    hash_ ^= zobrist_[op];
  }

  // Adds (linearized_, state) to the visited set; false if it was there.
  bool remember(int state) {
    uint64_t h = hash_ ^ (static_cast<uint64_t>(state) * 0x9e3779b97f4a7c15ULL);
    auto& bucket = visited_[h];
    for (size_t offset : bucket) {
      if (static_cast<int>(arena_[offset]) == state &&
          std::equal(linearized_.begin(), linearized_.end(), arena_.begin() + offset + 1)) {
        return false;
      }
    }
    bucket.push_back(arena_.size());
    arena_.push_back(static_cast<uint64_t>(state));
    arena_.insert(arena_.end(), linearized_.begin(), linearized_.end());
    return true;
  }

  // Unlinks a call entry and its return; unlift must undo lifts in reverse
  // order, which the search's stack discipline guarantees.
  void lift(int call) {
    unlink(call);
    unlink(call + 1);
  }
  void unlift(int call) {
    relink(call + 1);
    relink(call);
  }
  void unlink(int e) {
    next_[prev_[e]] = next_[e];
    if (next_[e] != kNil) prev_[next_[e]] = prev_[e];
  }
  void relink(int e) {
    next_[prev_[e]] = e;
    if (next_[e] != kNil) prev_[next_[e]] = e;
  }

  std::vector<const Operation*> ops_;
  const CheckOptions& options_;
  int head_ = 0;
  std::vector<int> next_, prev_;
  size_t words_ = 0;
  std::vector<uint64_t> linearized_;
  std::vector<uint64_t> zobrist_;
  uint64_t hash_ = 0;
  std::vector<std::string> states_;
  std::unordered_map<std::string, int> state_ids_;
  std::unordered_map<uint64_t, int> appended_;
  // Visited (state, bitset) pairs, stored flat: [state, word0, word1, ...].
  std::unordered_map<uint64_t, std::vector<size_t>> visited_;
  std::vector<uint64_t> arena_;
};

}  // namespace

CheckResult check_kv_history(const History& history, const CheckOptions& options) {
  CheckResult result;
  result.ops_total = history.size();
  std::map<std::string, std::vector<const Operation*>> by_key;
  for (const Operation& op : history) {
    const bool dropped =
        op.status == OpStatus::kFail || (op.status == OpStatus::kInfo && op.kind == OpKind::kGet);
    if (dropped) {
      ++result.ops_dropped;
      continue;
    }
    by_key[op.key].push_back(&op);
  }
  for (auto& [key, ops] : by_key) {
    KeyResult k = KeySearch(std::move(ops), options).run();
    k.key = key;
    result.steps += k.steps;
    if (k.verdict == Verdict::kNotLinearizable) {
      result.verdict = Verdict::kNotLinearizable;
    } else if (k.verdict == Verdict::kUnknown && result.verdict == Verdict::kLinearizable) {
      result.verdict = Verdict::kUnknown;
    }
    result.keys.push_back(std::move(k));
  }
  return result;
}

}  // namespace nori::lincheck
