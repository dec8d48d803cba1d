#include "raft/memory_storage.h"

#include <algorithm>

#include "runtime/base/assert.h"

namespace nori::raft {

base::Result<Term> MemoryStorage::term(Index index) const {
  if (index == 0) return Term{0};
  if (fail_reads_) return base::err(base::ErrorKind::kIo, "injected read failure");
  if (index + 1 == first_) return term_before_;
  if (index < first_ || index > last_index()) {
    return base::err(base::ErrorKind::kNotFound, "index {} outside [{}, {}]", index, first_ - 1,
                     last_index());
  }
  return entries_[index - first_].term;
}

base::Status MemoryStorage::entries(Index lo, Index hi, uint64_t bytes_max,
                                    std::vector<Entry>& out) const {
  if (fail_reads_) return base::err(base::ErrorKind::kIo, "injected read failure");
  if (lo < first_ || hi > last_index() + 1 || lo > hi) {
    return base::err(base::ErrorKind::kNotFound, "entries [{}, {}) outside [{}, {}]", lo, hi,
                     first_, last_index() + 1);
  }
  if (delay_reads_ && lo < hi) {
    if (lo < window_lo_ || lo >= window_hi_) {
      if (!fetch_pending()) {
        pending_lo_ = lo;
        pending_hi_ = hi;
        ++fetches_started_;
      }
      return base::err(base::ErrorKind::kUnavailable, "entries [{}, {}) are being fetched", lo, hi);
    }
    hi = std::min(hi, window_hi_);  // the rest: a later call, another fetch
  }
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - first_];
    bytes += entry_bytes(e);
    if (i > lo && bytes > bytes_max) break;
    out.push_back(e);
  }
  return {};
}

bool MemoryStorage::complete_fetch() {
  if (!fetch_pending()) return false;
  window_lo_ = pending_lo_;
  window_hi_ = pending_hi_;
  pending_lo_ = pending_hi_ = 0;
  return true;
}

void MemoryStorage::truncate_from(Index index) {
  NORI_ASSERT(index >= first_, "truncate_from {} below the first index {}", index, first_);
  if (index <= last_index()) entries_.resize(index - first_);
}

void MemoryStorage::append(const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    NORI_ASSERT(e.index >= first_ && e.index <= last_index() + 1, "append at {} to log [{}, {}]",
                e.index, first_, last_index());
    if (e.index <= last_index()) entries_.resize(e.index - first_);  // overwrite a suffix
    entries_.push_back(e);
  }
}

void MemoryStorage::persist(const Ready& ready) {
  if (ready.hard_state) hard_state_ = *ready.hard_state;
  if (ready.truncate_from) truncate_from(*ready.truncate_from);
  append(ready.entries);
}

void MemoryStorage::compact(Index before) {
  if (before <= first_) return;
  NORI_ASSERT(before <= last_index() + 1, "compacting to {} past the log end {}", before,
              last_index());
  term_before_ = entries_[before - 1 - first_].term;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<ptrdiff_t>(before - first_));
  first_ = before;
}

void MemoryStorage::install_snapshot(const SnapshotMeta& meta) {
  // raft/storage.h, install step 2: keep the suffix only if it continues
  // the snapshot (entry meta.index present with meta.term).
  auto t = term(meta.index);
  bool keep = meta.index >= first_ && t.ok() && *t == meta.term;
  if (keep) {
    entries_.erase(entries_.begin(),
                   entries_.begin() + static_cast<ptrdiff_t>(meta.index + 1 - first_));
  } else {
    entries_.clear();
  }
  first_ = meta.index + 1;
  term_before_ = meta.term;
  snapshot_ = meta;
}

}  // namespace nori::raft
