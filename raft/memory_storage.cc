#include "raft/memory_storage.h"

#include "runtime/base/assert.h"

namespace nori::raft {

base::Result<Term> MemoryStorage::term(Index index) const {
  if (index == 0) return Term{0};
  if (fail_reads_) return base::err(base::ErrorKind::kIo, "injected read failure");
  if (index > entries_.size()) {
    return base::err(base::ErrorKind::kNotFound, "index {} beyond last {}", index, entries_.size());
  }
  return entries_[index - 1].term;
}

base::Status MemoryStorage::entries(Index lo, Index hi, uint64_t bytes_max,
                                    std::vector<Entry>& out) const {
  if (fail_reads_) return base::err(base::ErrorKind::kIo, "injected read failure");
  if (lo < 1 || hi > entries_.size() + 1 || lo > hi) {
    return base::err(base::ErrorKind::kNotFound, "entries [{}, {}) outside [1, {}]", lo, hi,
                     entries_.size() + 1);
  }
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - 1];
    bytes += entry_bytes(e);
    if (i > lo && bytes > bytes_max) break;
    out.push_back(e);
  }
  return {};
}

void MemoryStorage::truncate_from(Index index) {
  NORI_ASSERT(index >= 1, "truncate_from 0");
  if (index <= entries_.size()) entries_.resize(index - 1);
}

void MemoryStorage::append(const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    NORI_ASSERT(e.index >= 1 && e.index <= entries_.size() + 1, "append at {} to log of {}",
                e.index, entries_.size());
    if (e.index <= entries_.size()) entries_.resize(e.index - 1);  // overwrite a suffix
    entries_.push_back(e);
  }
}

void MemoryStorage::persist(const Ready& ready) {
  if (ready.hard_state) hard_state_ = *ready.hard_state;
  if (ready.truncate_from) truncate_from(*ready.truncate_from);
  append(ready.entries);
}

}  // namespace nori::raft
