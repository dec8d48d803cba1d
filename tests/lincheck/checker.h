// Linearizability checker for the key-value model (get / put / append).
//
// Decides whether a History (history.h) could have come from one register per
// key, every key starting as "", each operation taking effect at a single
// instant between its call and its return. This is what the simulator and the
// cluster tests run on every client history, and what `nori-lincheck` runs on
// JSON-lines files.
//
// Semantics of statuses (../shared/histories/README.md):
//   ok    takes effect once, somewhere in [call, return];
//   fail  certainly had no effect: dropped;
//   info  outcome unknown: a put/append may take effect at any time after call
//         (its return is treated as infinitely late, so it may also never be
//         observed); an info get carries no information and is dropped.
//
// Algorithm: Wing & Gong's search with Lowe's and Porcupine's improvements.
//   - Keys are independent registers, so the history is partitioned by key and
//     each partition is searched alone (P-compositionality).
//   - Calls and returns form one doubly linked list sorted by time (a call
//     sorts before a return at the same instant, so touching operations count
//     as concurrent). Linearizing an operation unlinks its call and return
//     ("lift"); backtracking relinks them in reverse order ("unlift").
//   - An info put/append whose value no successful get contains is dropped
//     before the search (it cannot matter; see checker.cc); the others stay
//     candidates from their call to the end.
//   - Completed operations are tried before unknown-outcome ones; a quick
//     pass bounds each observed info write by the first get showing it (its
//     answer is kept only if it finds a linearization); a write whose value
//     the next get to return can no longer start with (nor any put that may
//     still come first) is cut; values no remaining get can observe are one
//     state. Each rule is argued sound in checker.cc and docs/simulation.md.
//   - Every (set of linearized operations, model state) pair reached is
//     memoised; reaching one again cannot lead anywhere new, so that branch is
//     cut. Sets are bitsets hashed incrementally (one random word per
//     operation, xor-ed in and out); states are interned strings.
//
// The search is exponential in the worst case; `max_steps_per_key` bounds the
// work (the verdict is then kUnknown, never a guess). Single-threaded, no
// global state: callers may run checks on several threads at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tests/lincheck/history.h"

namespace nori::lincheck {

enum class Verdict : uint8_t { kLinearizable, kNotLinearizable, kUnknown };

std::string_view to_string(Verdict verdict);

struct CheckOptions {
  // Search steps (list moves) allowed per key before giving up with kUnknown;
  // 0 means unbounded.
  uint64_t max_steps_per_key = 0;
};

struct KeyResult {
  std::string key;
  Verdict verdict = Verdict::kLinearizable;
  size_t ops = 0;      // operations searched (after dropping fail and info gets)
  uint64_t steps = 0;  // search steps spent
  // For kNotLinearizable: the deepest partial linearization found and the
  // operation no order could place next (a person can start reading there).
  size_t longest_prefix = 0;
  std::string explanation;
};

struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  size_t ops_total = 0;
  size_t ops_dropped = 0;  // fail operations, info gets, unobserved info writes
  uint64_t steps = 0;
  std::vector<KeyResult> keys;  // one per key, in key order

  // First non-linearizable (else first unknown) key, or nullptr.
  const KeyResult* first_problem() const;
  // One line: "linearizable (N ops, K keys)" or the first problem.
  std::string summary() const;
};

CheckResult check_kv_history(const History& history, const CheckOptions& options = {});

}  // namespace nori::lincheck
