#include "raft/node/wal_storage.h"

#include <algorithm>

namespace nori::raft {

using base::ErrorKind;

void encode_payload(const Entry& e, std::string& out) {
  out.push_back(static_cast<char>(e.type));
  out.append(e.data);
}

base::Status decode_payload(std::string_view payload, Index index, Term term, Entry& e) {
  if (payload.empty() ||
      static_cast<uint8_t>(payload[0]) > static_cast<uint8_t>(EntryType::kConfig)) {
    return base::err(ErrorKind::kCorruption, "WAL entry {} has no valid type byte", index);
  }
  e.index = index;
  e.term = term;
  e.type = static_cast<EntryType>(payload[0]);
  e.data.assign(payload.substr(1));
  return {};
}

HardState WalStorage::hard_state() const {
  const wal::GroupLog* g = wal_.group(group_);
  if (g == nullptr) return {};
  return HardState{g->hard_state().term, g->hard_state().vote, g->hard_state().commit};
}

Index WalStorage::first_index() const {
  const wal::GroupLog* g = wal_.group(group_);
  return g == nullptr ? 1 : g->first_index();
}

Index WalStorage::last_index() const {
  const wal::GroupLog* g = wal_.group(group_);
  return g == nullptr ? 0 : g->last_index();
}

base::Result<Term> WalStorage::term(Index index) const {
  if (index == 0) return Term{0};
  const wal::GroupLog* g = wal_.group(group_);
  if (g != nullptr) {
    if (auto t = g->term(index)) return Term{*t};
  }
  return base::err(ErrorKind::kNotFound, "group {} has no entry {} in the WAL", group_, index);
}

void WalStorage::maybe_start_fetch(Index lo, Index hi) const {
  if (in_flight_ != 0 || !start_fetch_) return;
  in_flight_ = start_fetch_(lo, hi, fetch_bytes_max_);
}

base::Status WalStorage::entries(Index lo, Index hi, uint64_t bytes_max,
                                 std::vector<Entry>& out) const {
  const wal::GroupLog* g = wal_.group(group_);
  if (g == nullptr || lo < g->first_index()) {
    return base::err(ErrorKind::kNotFound, "group {} entry {} was compacted", group_, lo);
  }
  const size_t start = out.size();
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const wal::EntryLoc* loc = g->entry(i);
    if (loc == nullptr) {
      out.resize(start);
      return base::err(ErrorKind::kNotFound, "group {} has no entry {} in the WAL", group_, i);
    }
    Entry e;
    if (auto cached = wal_.engine().cached_payload(*loc)) {
      if (auto st = decode_payload(*cached, i, loc->term, e); !st.ok()) {
        out.resize(start);
        return st;
      }
    } else if (i >= cache_lo_ && i - cache_lo_ < cache_.size() &&
               cache_[i - cache_lo_].term == loc->term) {
      // Fetched earlier; same index and term as the WAL's entry now, so the
      // same entry (a truncation since would have changed the term or index).
      e = cache_[i - cache_lo_];
    } else {
      // On disk only. Serve what came before it; the rest once fetched.
      if (i == lo && failure_) {
        // The last fetch failed: report it once (the core retries later and
        // that retry starts a new fetch).
        base::Error err = std::move(*failure_);
        failure_.reset();
        return err;
      }
      maybe_start_fetch(i, hi);
      if (i > lo) return {};
      return base::err(ErrorKind::kUnavailable, "group {} entry {} is being read from disk", group_,
                       i);
    }
    const uint64_t b = entry_bytes(e);
    if (i > lo && bytes + b > bytes_max) break;
    bytes += b;
    out.push_back(std::move(e));
  }
  return {};
}

bool WalStorage::fetch_done(uint64_t ticket, base::Result<std::vector<wal::Entry>> result) {
  if (ticket == 0 || ticket != in_flight_) return false;
  in_flight_ = 0;
  if (!result.ok()) {
    failure_ = std::move(result).error();
    return true;
  }
  std::vector<wal::Entry> fetched = std::move(result).value();
  std::vector<Entry> decoded;
  decoded.reserve(fetched.size());
  for (size_t k = 0; k < fetched.size(); ++k) {
    const wal::Entry& w = fetched[k];
    NORI_ASSERT(k == 0 || w.index == fetched[k - 1].index + 1, "WAL read is not contiguous");
    Entry e;
    if (auto st = decode_payload(w.payload, w.index, w.term, e); !st.ok()) {
      failure_ = std::move(st).error();
      return true;
    }
    decoded.push_back(std::move(e));
  }
  if (decoded.empty()) return true;
  // Replaces the previous fetch's entries: the cache holds one fetch.
  cache_lo_ = decoded.front().index;
  cache_ = std::move(decoded);
  failure_.reset();
  return true;
}

void WalStorage::set_config_entries(Index lo, std::vector<Entry> entries) {
  configs_.emplace(lo, std::move(entries));
}

base::Status WalStorage::config_entries(Index lo, std::vector<Entry>& out) const {
  if (!configs_) return LogStorage::config_entries(lo, out);  // all in memory, or kUnavailable
  NORI_ASSERT(lo >= configs_->first, "configuration scan from {} but preloaded from {}", lo,
              configs_->first);
  for (const Entry& e : configs_->second) {
    if (e.index >= lo) out.push_back(e);
  }
  return {};
}

}  // namespace nori::raft
