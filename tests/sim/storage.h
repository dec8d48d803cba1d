// Simulated stable storage for one Raft replica (one node, one group): the
// raft::LogStorage the core reads, plus a model of a disk that makes writes
// durable only after a delay, and loses every write still in flight when the
// node crashes.
//
// Two lanes, as the storage contract allows (raft/storage.h):
//   - the hard-state lane: small records; a (term, vote) write may become
//     durable ahead of queued entry writes;
//   - the entry lane: truncations and appends, durable strictly in the order
//     they were issued (a FIFO disk queue).
// Each write gets a sequence number per lane; durable_*_seq() say how far each
// lane has reached, which the driver uses to release messages that must wait
// for durability (Ready's SendAfter).
//
// crash() drops every write not yet durable: what survives is exactly what
// the core was told is persisted (a write's completion is the only thing that
// acknowledges it). The durable view is what LogStorage answers; `written_log`
// (durable + in flight, the node's own view) serves the leader-completeness
// checker.
//
// Single-threaded; owned by the simulated node and outliving its Raft
// instances (a restart builds a new Raft on the same storage).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "raft/storage.h"

namespace nori::sim {

class SimStorage final : public raft::LogStorage {
 public:
  // --- raft::LogStorage (the durable view) ----------------------------------
  raft::HardState hard_state() const override { return hard_state_; }
  raft::Index first_index() const override { return 1; }
  raft::Index last_index() const override { return durable_.size(); }
  base::Result<raft::Term> term(raft::Index index) const override;
  base::Status entries(raft::Index lo, raft::Index hi, uint64_t bytes_max,
                       std::vector<raft::Entry>& out) const override;

  // --- the disk model ---------------------------------------------------------
  // Queues a hard-state write; returns its lane sequence number.
  uint64_t write_hard_state(const raft::HardState& hs);
  // Queues a truncation (optional) and appends; returns its lane sequence.
  uint64_t write_entries(std::optional<raft::Index> truncate_from,
                         std::vector<raft::Entry> entries);
  // Completes the oldest pending write of a lane; returns what became durable.
  raft::HardState complete_hard_state();
  // Returns the last durable (index, term) after the write, for the core's
  // entries_persisted acknowledgement (index 0 if the log is empty).
  std::pair<raft::Index, raft::Term> complete_entries();

  uint64_t issued_hard_state_seq() const { return hs_issued_; }
  uint64_t issued_entries_seq() const { return entries_issued_; }
  uint64_t durable_hard_state_seq() const { return hs_durable_seq_; }
  uint64_t durable_entries_seq() const { return entries_durable_seq_; }

  // Loses every pending write. Returns how many writes were lost.
  size_t crash();

  // The replica's full view: durable log with pending writes applied.
  const std::vector<raft::Entry>& written_log() const { return written_; }
  const std::vector<raft::Entry>& durable_log() const { return durable_; }

 private:
  struct EntryWrite {
    std::optional<raft::Index> truncate_from;
    std::vector<raft::Entry> entries;
  };
  static void apply(std::vector<raft::Entry>& log, const EntryWrite& w);

  raft::HardState hard_state_;
  std::vector<raft::Entry> durable_;  // entry i at durable_[i - 1]
  std::vector<raft::Entry> written_;
  std::deque<raft::HardState> hs_pending_;
  std::deque<EntryWrite> entries_pending_;
  uint64_t hs_issued_ = 0, hs_durable_seq_ = 0;
  uint64_t entries_issued_ = 0, entries_durable_seq_ = 0;
};

}  // namespace nori::sim
