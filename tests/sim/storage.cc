#include "tests/sim/storage.h"

namespace nori::sim {

using base::ErrorKind;

base::Result<raft::Term> SimStorage::term(raft::Index index) const {
  if (index == 0) return raft::Term{0};
  if (index + 1 == durable_.first) return durable_.term_before;
  if (index < durable_.first || index > durable_.last()) {
    return base::err(ErrorKind::kNotFound, "index {} outside the durable log [{}, {}]", index,
                     durable_.first, durable_.last());
  }
  return durable_.entries[index - durable_.first].term;
}

base::Status SimStorage::entries(raft::Index lo, raft::Index hi, uint64_t bytes_max,
                                 std::vector<raft::Entry>& out) const {
  if (lo < durable_.first || lo > hi || hi > durable_.last() + 1) {
    return base::err(ErrorKind::kNotFound, "entries [{}, {}) outside durable log [{}, {}]", lo, hi,
                     durable_.first, durable_.last());
  }
  uint64_t bytes = 0;
  for (raft::Index i = lo; i < hi; ++i) {
    const raft::Entry& e = durable_.entries[i - durable_.first];
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
  LogWrite w = EntryWrite{truncate_from, std::move(entries)};
  apply(written_, w);
  entries_pending_.push_back(std::move(w));
  return ++entries_issued_;
}

uint64_t SimStorage::write_compaction(raft::Index before) {
  LogWrite w = Compaction{before};
  apply(written_, w);
  entries_pending_.push_back(std::move(w));
  return ++entries_issued_;
}

uint64_t SimStorage::write_reset(const raft::SnapshotMeta& meta) {
  NORI_ASSERT(meta.index > 0 && meta.term > 0, "reset to an empty snapshot");
  LogWrite w = Reset{meta};
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
  const raft::Index last = durable_.last();
  if (last == 0) return {0, 0};
  return {last, *term(last)};
}

void SimStorage::put_file(SnapshotFile file) {
  const raft::Index index = file.meta.index;
  files_[index] = std::move(file);
}

const SnapshotFile* SimStorage::file(raft::Index index) const {
  auto it = files_.find(index);
  return it == files_.end() ? nullptr : &it->second;
}

const SnapshotFile* SimStorage::newest_file_at_or_below(raft::Index index) const {
  auto it = files_.upper_bound(index);
  if (it == files_.begin()) return nullptr;
  return &std::prev(it)->second;
}

void SimStorage::set_taken_snapshot(const raft::SnapshotMeta& meta) {
  NORI_ASSERT(files_.count(meta.index), "snapshot {} taken without a durable file", meta.index);
  // A newer one may be there already (installed while this one was written).
  if (meta.index > durable_.snap.index) durable_.snap = meta;
  if (meta.index > written_.snap.index) written_.snap = meta;
}

void SimStorage::remove_superseded_files(const std::vector<raft::Index>& pinned) {
  for (auto it = files_.begin(); it != files_.end();) {
    const raft::Index i = it->first;
    const bool keep = i >= durable_.snap.index || i >= written_.snap.index ||
                      std::find(pinned.begin(), pinned.end(), i) != pinned.end();
    it = keep ? std::next(it) : files_.erase(it);
  }
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

void SimStorage::apply(Log& log, const LogWrite& w) {
  if (const auto* ew = std::get_if<EntryWrite>(&w)) {
    if (ew->truncate_from) {
      const raft::Index t = *ew->truncate_from;
      NORI_ASSERT(t >= 1, "truncate_from 0");
      // Below the log's start only after a reset the core had not heard of
      // yet: everything after the snapshot goes.
      if (t <= log.first) {
        log.entries.clear();
      } else if (t <= log.last()) {
        log.entries.resize(t - log.first);
      }
    }
    for (const raft::Entry& e : ew->entries) {
      // Covered by a snapshot (a reset or a compaction got there first).
      if (e.index < log.first) continue;
      NORI_ASSERT(e.index <= log.last() + 1, "append of index {} leaves a gap after {}", e.index,
                  log.last());
      if (e.index <= log.last()) log.entries.resize(e.index - log.first);
      log.entries.push_back(e);
    }
    return;
  }
  if (const auto* c = std::get_if<Compaction>(&w)) {
    if (c->before <= log.first) return;
    NORI_ASSERT(c->before <= log.last() + 1, "compaction to {} past the log end {}", c->before,
                log.last());
    log.term_before = log.entries[c->before - 1 - log.first].term;
    log.entries.erase(log.entries.begin(),
                      log.entries.begin() + static_cast<ptrdiff_t>(c->before - log.first));
    log.first = c->before;
    return;
  }
  const raft::SnapshotMeta& meta = std::get<Reset>(w).meta;
  if (meta.index <= log.snap.index) return;  // an older snapshot than the one held
  const bool holds = meta.index + 1 >= log.first && meta.index <= log.last();
  raft::Term t = 0;
  if (holds) {
    t = meta.index + 1 == log.first ? log.term_before : log.entries[meta.index - log.first].term;
  }
  if (holds && t == meta.term) {
    log.entries.erase(log.entries.begin(),
                      log.entries.begin() + static_cast<ptrdiff_t>(meta.index + 1 - log.first));
  } else {
    log.entries.clear();
  }
  log.first = meta.index + 1;
  log.term_before = meta.term;
  log.snap = meta;
}

}  // namespace nori::sim
