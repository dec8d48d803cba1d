// nori-sim: runs the deterministic simulator (tests/sim/simulation.h).
//
//   nori-sim --seed 42                     one run, summary printed
//   nori-sim --seed 1 --seeds 500          seeds 1..500, failures printed
//   nori-sim --seed 42 --trace t.jsonl     with an event trace (JSON lines)
//   nori-sim --long --budget-s 3600        long runs (60 s simulated each) until the budget is
//   spent nori-sim --storm                       the election-storm scenario, with distributions
//   nori-sim --seed 1 --seeds 100 --membership   membership changes + snapshots
//   nori-sim --seed 1 --seeds 100 --snapshots    snapshots only
//   nori-sim --seed 1 --seeds 100 --quiesce      idle groups quiesce (node-level liveness)
//   nori-sim --seed 42 --history-dir d     also write each group's client history (JSON lines,
//                                          readable by nori-lincheck)
//
// Every failure prints its seed and the exact command that replays it. Exit
// status: 0 every run passed its checkers, 1 at least one failed, 2 bad usage.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "tests/sim/simulation.h"

int main(int argc, char** argv) {
  using namespace nori::sim;
  CLI::App app{
      "Deterministic simulation of nori-raft groups with safety and linearizability checks"};
  uint64_t seed = 1;
  uint64_t seeds = 1;
  std::string trace;
  bool long_mode = false;
  double budget_s = 600;
  bool storm = false;
  bool lease_hazard = false;
  int storm_rounds = 0;
  int64_t duration_ms = 0;
  double drift_ppm = -2;
  bool unsafe_skip_wait = false, unsafe_no_clock = false;
  bool snapshots = false, membership = false, unsafe_reset_first = false, quiesce = false;
  bool unsafe_random_clients = false;
  double install_crash_chance = -1;
  int install_crash_step = -1;
  int64_t append_hold_us = -1;
  bool verbose = false;
  std::string history_dir;
  app.add_option("--seed", seed, "first seed");
  app.add_option("--seeds", seeds, "number of consecutive seeds to run");
  app.add_option("--trace", trace, "write the event trace (JSON lines) of the run; one seed only");
  app.add_flag("--long", long_mode, "long mode: 60 s simulated per seed, seeds until --budget-s");
  app.add_option("--budget-s", budget_s, "wall-clock budget of --long, in seconds");
  app.add_flag("--storm", storm, "election-storm scenario (5 nodes, repeated leader loss)");
  app.add_flag("--lease-hazard", lease_hazard,
               "lease-hazard scenario: leaders paused while partitioned, reads queued");
  app.add_option("--storm-rounds", storm_rounds, "leader disruptions per storm run");
  app.add_option("--duration-ms", duration_ms, "simulated time with faults, in ms");
  app.add_option("--drift-ppm", drift_ppm, "clock drift bound used by the simulation");
  app.add_flag("--unsafe-skip-lease-wait", unsafe_skip_wait,
               "BROKEN CORE: new leaders skip the lease wait (checkers must fail)");
  app.add_flag("--unsafe-lease-no-clock", unsafe_no_clock,
               "BROKEN CORE: lease reads skip the clock check (checkers must fail)");
  app.add_flag("--snapshots", snapshots,
               "snapshots: small thresholds, chunked transfers, installs (some seeds crash "
               "nodes during installs)");
  app.add_flag("--quiesce", quiesce,
               "node-level liveness and quiescence of idle groups (clients pause between "
               "operations)");
  app.add_flag("--membership", membership,
               "membership changes (add, remove, replace, the leader too, abandon stuck) on "
               "spare nodes, with snapshots");
  app.add_option("--install-crash-chance", install_crash_chance,
                 "chance of a crash at each install step boundary (0..1)");
  app.add_option(
      "--append-hold-us", append_hold_us,
      "append coalescing hold (raft::Config::append_hold_us) instead of the seed's draw");
  app.add_option("--install-crash-step", install_crash_step,
                 "crash only at this install step (1 file, 2 reset record, 3 restored, 4 acked)");
  app.add_flag("--unsafe-install-reset-first", unsafe_reset_first,
               "BROKEN DRIVER: reset record durable before the snapshot file (checkers must fail)");
  app.add_flag("--unsafe-random-clients", unsafe_random_clients,
               "BROKEN CLIENTS: forget the leader on a timeout and guess among every node id "
               "(the clients before seed 2873; the progress check must catch them)");
  app.add_option("--history-dir", history_dir, "write client histories (JSON lines) here");
  app.add_flag("-v,--verbose", verbose, "print every run's summary, not only failures");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (!trace.empty() && (seeds != 1 || long_mode)) {
    fmt::print(stderr, "--trace needs a single seed\n");
    return 2;
  }

  auto options_for = [&](uint64_t s) {
    SimOptions o = lease_hazard ? SimOptions::lease_hazard_for_seed(s)
                   : membership ? SimOptions::membership_for_seed(s)
                   : snapshots  ? SimOptions::snapshots_for_seed(s)
                                : SimOptions::for_seed(s);
    if (storm) {
      o.storm = true;
      o.nodes = 5;
      o.groups = 1;
      o.fault_interval_mean = 0;
      o.clock_offset_max_ms = 200;
      o.duration = 40 * kSecond;
      if (storm_rounds > 0) o.storm_rounds = storm_rounds;
    }
    if (long_mode) {
      // Every fourth long run is a lease-hazard run.
      if (s % 4 == 3 && !storm) o = SimOptions::lease_hazard_for_seed(s);
      // And every fourth a membership + snapshot run (unless one was asked for).
      if (s % 4 == 1 && !storm && !snapshots && !membership) {
        o = SimOptions::membership_for_seed(s);
      }
      o.duration = 60 * kSecond;
    }
    if (quiesce) o.with_quiesce();
    if (duration_ms > 0) o.duration = duration_ms * kMillisecond;
    if (drift_ppm >= -1) o.clock_drift_ppm = drift_ppm;
    o.raft.unsafe_skip_new_leader_lease_wait_for_testing = unsafe_skip_wait;
    o.raft.unsafe_lease_read_skips_clock_check_for_testing = unsafe_no_clock;
    if (install_crash_chance >= 0) o.install_crash_chance = install_crash_chance;
    if (install_crash_step >= 0) o.install_crash_step = install_crash_step;
    if (append_hold_us >= 0) o.raft.append_hold_us = static_cast<uint32_t>(append_hold_us);
    o.unsafe_install_reset_before_file_for_testing = unsafe_reset_first;
    o.unsafe_clients_guess_at_random_for_testing = unsafe_random_clients;
    o.trace_path = trace;
    return o;
  };

  const auto start = std::chrono::steady_clock::now();
  auto elapsed_s = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  uint64_t runs = 0, failures = 0;
  Distribution to_leader, to_write;
  for (uint64_t s = seed;; ++s) {
    if (long_mode ? elapsed_s() >= budget_s : s >= seed + seeds) break;
    SimOptions o = options_for(s);
    SimReport r = run_simulation(o);
    ++runs;
    if (!r.ok) ++failures;
    if (!r.ok || verbose || seeds == 1) fmt::print("{}\n", r.summary());
    if (!r.ok) fmt::print(stderr, "FAILED seed {}; replay: {}\n", s, r.replay);
    to_leader.samples_ms.insert(to_leader.samples_ms.end(), r.time_to_leader.samples_ms.begin(),
                                r.time_to_leader.samples_ms.end());
    to_write.samples_ms.insert(to_write.samples_ms.end(), r.time_to_write.samples_ms.begin(),
                               r.time_to_write.samples_ms.end());
    if (!history_dir.empty()) {
      std::filesystem::create_directories(history_dir);
      for (size_t g = 0; g < r.histories.size(); ++g) {
        std::ofstream out(fmt::format("{}/seed-{}-group-{}.jsonl", history_dir, s, g + 1));
        nori::lincheck::write_history(out, r.histories[g]);
      }
    }
  }
  fmt::print("{} runs, {} failed, {:.1f} s wall\n", runs, failures, elapsed_s());
  if (storm && runs > 1) {
    fmt::print("all runs: time to new leader: {}\n", to_leader.summary());
    fmt::print("all runs: time to first committed write: {}\n", to_write.summary());
  }
  return failures ? 1 : 0;
}
