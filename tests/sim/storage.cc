#include "tests/sim/storage.h"

namespace nori::sim {

using base::ErrorKind;

base::Result<raft::Term> SimStorage::term(raft::Index index) const {
  if (index == 0) return raft::Term{0};
  if (index > durable_.size()) {
    return base::err(ErrorKind::kNotFound, "index {} beyond durable log end {}", index,
                     durable_.size());
  }
  return durable_[index - 1].term;
}

base::Status SimStorage::entries(raft::Index lo, raft::Index hi, uint64_t bytes_max,
                                 std::vector<raft::Entry>& out) const {
  if (lo == 0 || lo > hi || hi > durable_.size() + 1) {
    return base::err(ErrorKind::kNotFound, "entries [{}, {}) outside durable log [1, {}]", lo, hi,
                     durable_.size());
  }
  uint64_t bytes = 0;
  for (raft::Index i = lo; i < hi; ++i) {
    const raft::Entry& e = durable_[i - 1];
    bytes += raft::entry_bytes(e);
    if (i > lo && bytes > bytes_max) break;
    out.push_back(e);
  }
  return {};
}

uint64_t SimStorage::write_hard_state(const raft::HardState& hs) {
  hs_pending_.push_back(hs);
  return ++hs_issued_;
}

uint64_t SimStorage::write_entries(std::optional<raft::Index> truncate_from,
                                   std::vector<raft::Entry> entries) {
  EntryWrite w{truncate_from, std::move(entries)};
  apply(written_, w);
  entries_pending_.push_back(std::move(w));
  return ++entries_issued_;
}

raft::HardState SimStorage::complete_hard_state() {
  NORI_ASSERT(!hs_pending_.empty());
  hard_state_ = hs_pending_.front();
  hs_pending_.pop_front();
  ++hs_durable_seq_;
  return hard_state_;
}

std::pair<raft::Index, raft::Term> SimStorage::complete_entries() {
  NORI_ASSERT(!entries_pending_.empty());
  apply(durable_, entries_pending_.front());
  entries_pending_.pop_front();
  ++entries_durable_seq_;
  if (durable_.empty()) return {0, 0};
  return {durable_.size(), durable_.back().term};
}

size_t SimStorage::crash() {
  size_t lost = hs_pending_.size() + entries_pending_.size();
  hs_pending_.clear();
  entries_pending_.clear();
  // Sequence numbers keep counting so that stale completions can be told
  // apart; nothing is in flight now.
  hs_issued_ = hs_durable_seq_;
  entries_issued_ = entries_durable_seq_;
  written_ = durable_;
  return lost;
}

void SimStorage::apply(std::vector<raft::Entry>& log, const EntryWrite& w) {
  if (w.truncate_from) {
    NORI_ASSERT(*w.truncate_from >= 1, "truncate_from 0");
    if (*w.truncate_from <= log.size()) log.resize(*w.truncate_from - 1);
  }
  for (const raft::Entry& e : w.entries) {
    NORI_ASSERT(e.index >= 1 && e.index <= log.size() + 1,
                "append of index {} leaves a gap after {} (truncate first)", e.index, log.size());
    if (e.index <= log.size()) log.resize(e.index - 1);
    log.push_back(e);
  }
}

}  // namespace nori::sim
