// SimWal: the LogEngine driven over a SimDisk, step by step, for
// deterministic tests and simulations. It follows the same open, prepare,
// write, complete and reclaim protocol as the io_uring driver (wal/wal.h),
// but the test decides when each issued write reaches the disk and when it
// completes (in any order), and when the power fails.
//
// A failed write or sync makes the SimWal fail-stop (failed() is true, and
// every later call is refused), where the real driver stops the process.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "wal/engine.h"
#include "wal/sim_disk.h"

namespace nori::wal {

class SimWal {
 public:
  // Recovers the log in disk (creating it if empty) and prepares the first
  // segment. Errors: recovery's (kCorruption...), kNoSpace.
  static base::Result<std::unique_ptr<SimWal>> open(SimDisk& disk, const WalOptions& opts,
                                                    uint64_t new_log_id);

  LogEngine& engine() { return engine_; }
  const RecoveryResult& recovery() const { return recovery_; }

  // Issues every write the engine has ready (group commit of everything
  // appended since the last call). Prepares segments the engine asks for.
  // hold_small: with write coalescing (LogEngine::next_write), as the
  // io_uring driver does.
  void issue(bool hold_small = false);
  // Completes one issued write chosen by rng (makes its blocks durable).
  // False if none is in flight.
  bool complete_one(std::mt19937_64& rng);
  // Issues and completes until everything appended is durable.
  base::Status flush_all();
  // Checkpoints, waits for durability, and drops segments nothing needs.
  base::Status reclaim();

  size_t in_flight() const { return in_flight_.size(); }
  const std::vector<WriteRequest>& in_flight_writes() const { return in_flight_; }
  bool failed() const { return failed_.has_value(); }
  const std::optional<base::Error>& failure() const { return failed_; }

 private:
  SimWal(SimDisk& disk, const WalOptions& opts, RecoveryResult rec, uint64_t new_log_id);
  base::Status prepare_segment(uint64_t seq);
  void prepare_ahead();

  SimDisk& disk_;
  RecoveryResult recovery_;
  LogEngine engine_;
  std::deque<std::string> free_files_;
  uint64_t next_free_ = 0;
  std::vector<WriteRequest> in_flight_;
  std::optional<base::Error> failed_;
};

}  // namespace nori::wal
