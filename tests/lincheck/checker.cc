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
  // `info_return` gives, per operation, a finite return time to assume for
  // an info write (empty: all info returns are infinitely late).
  KeySearch(std::vector<const Operation*> ops, const CheckOptions& options,
            std::vector<int64_t> info_return = {})
      : ops_(std::move(ops)), options_(options), info_return_(std::move(info_return)) {
    const int n = static_cast<int>(ops_.size());
    head_ = 2 * n;
    next_.assign(2 * n + 1, kNil);
    prev_.assign(2 * n + 1, kNil);
    words_ = (ops_.size() + 63) / 64;
    // State 0 stands for every value no remaining get can observe; it is not
    // in state_ids_, so no real value maps to it.
    states_.push_back("<unobservable>");
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
    // The candidates at each point are the calls before the first return in
    // the list. They are tried in two passes: operations that completed (ok)
    // first, unknown-outcome ones second. Any order is complete; this one
    // postpones info writes until a get needs their value, instead of trying
    // them (and failing) at every step from their call on.
    int entry = next_[head_];
    int pass = 0;
    struct Choice {
      int call;    // the call entry linearized
      int before;  // the model state before it
      int pass;    // the pass it was chosen in
    };
    std::vector<Choice> calls;
    size_t best_depth = 0;
    int stuck_op = -1;
    int best_state = state;

    while (next_[head_] != kNil) {
      if (options_.max_steps_per_key && result.steps >= options_.max_steps_per_key) {
        result.verdict = Verdict::kUnknown;
        result.longest_prefix = best_depth;
        result.explanation = fmt::format(
            "search gave up after {} steps ({} ops); the longest partial linearization places "
            "{} ops and then cannot place {}",
            result.steps, ops_.size(), best_depth,
            stuck_op >= 0 ? describe(*ops_[stuck_op]) : std::string("-"));
        return result;
      }
      ++result.steps;
      NORI_ASSERT(entry != kNil, "scan ran off the list end");
      if ((entry & 1) == 0) {
        const int op = entry / 2;
        const bool info = ops_[op]->status == OpStatus::kInfo;
        if (info != (pass == 1)) {
          entry = next_[entry];
          continue;
        }
        std::optional<int> after = step(state, op);
        if (after && ops_[op]->kind != OpKind::kGet) after = settle(*after, op);
        if (after) {
          flip(op);
          if (remember(*after)) {
            calls.push_back(Choice{entry, state, pass});
            state = *after;
            lift(entry);
            entry = next_[head_];
            pass = 0;
            continue;
          }
          flip(op);
        }
        entry = next_[entry];
        continue;
      }
      // A return entry: its operation is still unlinearized, so nothing
      // further along may go first. After the first pass, rescan for info
      // candidates; after the second, record the deepest dead end for the
      // report and backtrack.
      if (pass == 0) {
        pass = 1;
        entry = next_[head_];
        continue;
      }
      if (calls.size() >= best_depth) {
        best_depth = calls.size();
        stuck_op = entry / 2;
        best_state = state;
      }
      if (calls.empty()) break;
      Choice last = calls.back();
      calls.pop_back();
      state = last.before;
      flip(last.call / 2);
      unlift(last.call);
      entry = next_[last.call];
      pass = last.pass;
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
    if (op.status != OpStatus::kInfo) return op.return_ns;
    return info_return_.empty() ? kInfinitelyLate : info_return_[entry / 2];
  }

  int intern(const std::string& s) {
    auto [it, inserted] = state_ids_.try_emplace(s, static_cast<int>(states_.size()));
    if (inserted) states_.push_back(s);
    return it->second;
  }

  // Pruning for the append model, after a write by `op` led to `state`.
  //
  // Look at the first get whose return is next in time order, G. Everything
  // linearized before G was called before G's return. Until G the value only
  // grows by appends unless a put intervenes, and then it starts with the
  // last such put's value. So G's output must start with `state` or with the
  // value of a put that may still go before G; otherwise the branch is dead
  // (nullopt). A burst of unknown-outcome appends that all took effect would
  // otherwise be tried in every order.
  //
  // If only a put can save the branch and no remaining get's output starts
  // with `state` at all, the exact value can never be observed: appends keep
  // it unobservable, gets fail on it, and the next put replaces it. All such
  // values behave alike, so they become one "unobservable" state, and the
  // memo merges the orders of appends that a put will erase anyway.
  std::optional<int> settle(int state, int op) {
    puts_before_.clear();
    for (int e = next_[head_]; e != kNil; e = next_[e]) {
      const Operation& o = *ops_[e / 2];
      if (e / 2 == op) continue;
      if ((e & 1) == 0) {
        if (o.kind == OpKind::kPut) puts_before_.push_back(&o.value);
        continue;
      }
      if (o.kind != OpKind::kGet) continue;
      if (state != unobservable_ && o.output.starts_with(states_[state])) return state;
      bool rescued = false;
      for (const std::string* v : puts_before_)
        rescued |= o.output.starts_with(*v);
      if (!rescued) return std::nullopt;
      return observable(state, op) ? state : unobservable_;
    }
    return state;
  }

  // Whether some get still to be linearized (other than `op`) returned a
  // value starting with `state`.
  bool observable(int state, int op) const {
    if (state == unobservable_) return false;
    for (int e = next_[head_]; e != kNil; e = next_[e]) {
      const Operation& o = *ops_[e / 2];
      if ((e & 1) == 0 && e / 2 != op && o.kind == OpKind::kGet &&
          o.output.starts_with(states_[state])) {
        return true;
      }
    }
    return false;
  }

  // The model: the state after `op` from `state`, or nullopt if `op` cannot
  // take effect there (a get that saw another value).
  std::optional<int> step(int state, int op_index) {
    const Operation& op = *ops_[op_index];
    switch (op.kind) {
      case OpKind::kGet:
        if (state != unobservable_ && states_[state] == op.output) return state;
        return std::nullopt;
      case OpKind::kPut:
        return intern(op.value);
      case OpKind::kAppend: {
        if (state == unobservable_) return state;
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
  std::vector<int64_t> info_return_;
  std::vector<const std::string*> puts_before_;  // scratch for settle()
  static constexpr int unobservable_ = 0;
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

// An info put or append whose value no successful get of the key ever
// contains can be dropped: the history is linearizable with it iff it is
// without it. (Placed at the end, it changes nothing observed; placed
// anywhere else, every get until the next put would contain its value, so
// there is none, and the next put erases it.) This matters: unknown-outcome
// writes never return, so each one stays a candidate at every step of the
// search, and a few dozen of them make the search space explode. Empty values
// are kept (the empty string is in every output).
size_t drop_unobserved_info_writes(std::vector<const Operation*>& ops) {
  std::vector<const std::string*> outputs;
  for (const Operation* op : ops) {
    if (op->kind == OpKind::kGet && op->status == OpStatus::kOk) outputs.push_back(&op->output);
  }
  auto observed = [&](const std::string& v) {
    if (v.empty()) return true;
    for (const std::string* out : outputs) {
      if (out->find(v) != std::string::npos) return true;
    }
    return false;
  };
  const size_t before = ops.size();
  std::erase_if(ops, [&](const Operation* op) {
    return op->status == OpStatus::kInfo && op->kind != OpKind::kGet && !observed(op->value);
  });
  return before - ops.size();
}

// For the quick search: per operation, the earliest return among ok gets
// whose output contains the info write's value (infinitely late when none
// does, or for other operations). Empty if there is no info write to bound.
std::vector<int64_t> early_info_returns(const std::vector<const Operation*>& ops) {
  std::vector<int64_t> out(ops.size(), kInfinitelyLate);
  bool any = false;
  for (size_t i = 0; i < ops.size(); ++i) {
    const Operation& w = *ops[i];
    if (w.status != OpStatus::kInfo || w.kind == OpKind::kGet || w.value.empty()) continue;
    for (const Operation* g : ops) {
      if (g->kind == OpKind::kGet && g->status == OpStatus::kOk && g->return_ns < out[i] &&
          g->output.find(w.value) != std::string::npos) {
        out[i] = std::max(g->return_ns, w.call_ns);
        any = true;
      }
    }
  }
  if (!any) out.clear();
  return out;
}

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
    result.ops_dropped += drop_unobserved_info_writes(ops);
    // First a quick search where each observed info write must take effect
    // before the first get that shows its value returns. Its windows are
    // subsets of the real ones, so a linearization it finds is one of the
    // real history; only if it finds none does the full search decide.
    KeyResult k;
    std::vector<int64_t> early = early_info_returns(ops);
    if (!early.empty()) {
      k = KeySearch(ops, options, std::move(early)).run();
    }
    if (early.empty() || k.verdict != Verdict::kLinearizable) {
      result.steps += k.steps;
      k = KeySearch(std::move(ops), options).run();
    }
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
