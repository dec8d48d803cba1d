// nori-lincheck: decides whether JSON-lines key-value histories are
// linearizable (format: tests/lincheck/histories/README.md; model: checker.h).
//
//   nori-lincheck history.jsonl [more.jsonl ...]   ("-" or nothing reads stdin)
//
// Exit status: 0 every history is linearizable; 1 at least one is not;
// 2 bad input (unreadable file, malformed line: nothing is judged past it);
// 3 the search gave up (--max-steps) without a verdict and none was refuted.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "tests/lincheck/checker.h"

namespace {

constexpr int kExitLinearizable = 0;
constexpr int kExitNotLinearizable = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitUnknown = 3;

}  // namespace

int main(int argc, char** argv) {
  using namespace nori::lincheck;
  CLI::App app{"Checks key-value histories (JSON lines) for linearizability"};
  std::vector<std::string> files;
  uint64_t max_steps = 0;
  bool verbose = false;
  app.add_option("files", files, "history files (JSON lines); '-' or none: stdin");
  app.add_option("--max-steps", max_steps, "search steps per key before giving up (0: no limit)");
  app.add_flag("-v,--verbose", verbose, "print per-key statistics");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitBadInput;
  }
  if (files.empty()) files.push_back("-");

  CheckOptions options;
  options.max_steps_per_key = max_steps;
  bool any_bad = false, any_unknown = false;
  for (const std::string& file : files) {
    nori::base::Result<History> history =
        file == "-" ? parse_history(std::cin) : read_history_file(file);
    if (!history) {
      fmt::print(stderr, "{}: bad input: {}\n", file, history.error().message());
      return kExitBadInput;
    }
    CheckResult r = check_kv_history(*history, options);
    fmt::print("{}: {}\n", file, r.summary());
    if (verbose) {
      for (const KeyResult& k : r.keys) {
        fmt::print("  key \"{}\": {} ops, {} steps, {}\n", k.key, k.ops, k.steps,
                   to_string(k.verdict));
      }
    }
    any_bad |= r.verdict == Verdict::kNotLinearizable;
    any_unknown |= r.verdict == Verdict::kUnknown;
  }
  if (any_bad) return kExitNotLinearizable;
  if (any_unknown) return kExitUnknown;
  return kExitLinearizable;
}
