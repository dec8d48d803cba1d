#include "wal/group_index.h"

#include <algorithm>

namespace nori::wal {

using base::ErrorKind;

std::optional<uint64_t> GroupLog::term(uint64_t i) const {
  if (i == compact_index_) return compact_term_;
  if (const EntryLoc* e = entry(i)) return e->term;
  return std::nullopt;
}

const EntryLoc* GroupLog::entry(uint64_t i) const {
  if (entries_.empty() || i < first_index() || i > last_index_) return nullptr;
  return &entries_[i - first_index()];
}

base::Status GroupLog::check_append(uint64_t first_index, bool replay) const {
  if (first_index == last_index_ + 1) return {};
  // Replay may meet a group whose earlier records were in deleted segments:
  // its first entries record starts the log (checked after replay by
  // check_groups_complete against the compaction point).
  if (replay && entries_.empty() && first_index > compact_index_) return {};
  return base::err(ErrorKind::kInvalidArgument, "append at index {} but last index is {}",
                   first_index, last_index_);
}

void GroupLog::append(uint64_t index, const EntryLoc& loc, bool replay) {
  if (replay && entries_.empty() && index != last_index_ + 1) {
    NORI_ASSERT(index > compact_index_);
    last_index_ = index - 1;
  }
  NORI_ASSERT(index == last_index_ + 1, "append {} after {}", index, last_index_);
  entries_.push_back(loc);
  last_index_ = index;
}

base::Status GroupLog::check_truncate(uint64_t last_kept) const {
  if (last_kept < compact_index_) {
    return base::err(ErrorKind::kInvalidArgument, "truncate after {} below compaction point {}",
                     last_kept, compact_index_);
  }
  return {};
}

void GroupLog::truncate(uint64_t last_kept) {
  NORI_ASSERT(last_kept >= compact_index_);
  if (last_kept >= last_index_) return;
  while (!entries_.empty() && last_index_ > last_kept) {
    entries_.pop_back();
    --last_index_;
  }
  last_index_ = last_kept;
}

void GroupLog::compact(uint64_t index, uint64_t term, uint64_t seq) {
  // A mark below the start point is a no-op on replay too, so its segment
  // must not become the one that carries the start point: the older record
  // that set it would be reclaimed and recovery would find a lower point.
  if (index < compact_index_) return;
  compact_seq_ = seq;
  if (index == compact_index_) return;
  while (!entries_.empty() && first_index() <= index)
    entries_.pop_front();
  compact_index_ = index;
  compact_term_ = term;
  if (last_index_ < index) {
    NORI_ASSERT(entries_.empty());
    last_index_ = index;
  }
}

bool GroupLog::matches(uint64_t index, uint64_t term) const {
  const auto t = this->term(index);
  return t.has_value() && *t == term;
}

void GroupLog::reset(uint64_t index, uint64_t term, uint64_t seq) {
  entries_.clear();
  last_index_ = index;
  compact_index_ = index;
  compact_term_ = term;
  compact_seq_ = seq;
}

void GroupLog::set_hard_state(const HardState& hs, uint64_t seq) {
  hs_ = hs;
  hs_seq_ = seq;
}

void GroupLog::checkpoint(const HardState& hs, uint64_t compact_index, uint64_t compact_term,
                          uint64_t seq) {
  set_hard_state(hs, seq);
  compact(compact_index, compact_term, seq);
}

uint64_t GroupLog::oldest_needed_seq() const {
  return std::min({oldest_entry_seq(), hs_seq_, compact_seq_});
}

base::Status replay_record(GroupMap& groups, const RecordView& rec, uint64_t seq) {
  auto corrupt = [&](std::string_view what) {
    return base::err(ErrorKind::kCorruption, "segment {} offset {}: {} record: {}", seq, rec.offset,
                     kind_name(rec.kind), what);
  };
  switch (static_cast<RecordKind>(rec.kind)) {
    case RecordKind::kPadding:
    case RecordKind::kSegmentOpen:
      return {};
    case RecordKind::kEntries: {
      auto b = decode_entries(rec.body);
      if (!b) return corrupt(b.error().message());
      GroupLog& g = groups[b->group];
      uint64_t index = b->first_index;
      size_t k = 0;
      // Entries at or below the compaction point are no longer needed.
      for (const TermRun& run : b->runs) {
        for (uint32_t r = 0; r < run.count; ++r, ++k, ++index) {
          if (index <= g.compact_index()) continue;
          if (!g.check_append(index, /*replay=*/true).ok()) {
            return corrupt(fmt::format("group {} entry {} does not follow last index {}", b->group,
                                       index, g.last_index()));
          }
          const uint64_t at = rec.offset + kRecordHeaderBytes + b->payload_offsets[k];
          g.append(index,
                   EntryLoc{run.term, seq, static_cast<uint32_t>(at),
                            static_cast<uint32_t>(b->payloads[k].size())},
                   /*replay=*/true);
        }
      }
      return {};
    }
    case RecordKind::kHardState: {
      auto b = decode_hard_state(rec.body);
      if (!b) return corrupt(b.error().message());
      groups[b->group].set_hard_state(b->hs, seq);
      return {};
    }
    case RecordKind::kTruncate: {
      auto b = decode_truncate(rec.body);
      if (!b) return corrupt(b.error().message());
      GroupLog& g = groups[b->group];
      if (!g.check_truncate(b->last_kept).ok()) return corrupt("truncates below compaction point");
      g.truncate(b->last_kept);
      return {};
    }
    case RecordKind::kCompact: {
      auto b = decode_compact(rec.body);
      if (!b) return corrupt(b.error().message());
      groups[b->group].compact(b->index, b->term, seq);
      return {};
    }
    case RecordKind::kCheckpoint: {
      auto b = decode_checkpoint(rec.body);
      if (!b) return corrupt(b.error().message());
      groups[b->group].checkpoint(b->hs, b->compact_index, b->compact_term, seq);
      return {};
    }
    case RecordKind::kReset: {
      // Unconditional: the writer decided (a reset the log matched was
      // written as a compact record). Replay cannot decide again, since the
      // entry at the reset index may sit in a segment reclaimed since.
      auto b = decode_reset(rec.body);
      if (!b) return corrupt(b.error().message());
      groups[b->group].reset(b->index, b->term, seq);
      return {};
    }
    case RecordKind::kRemoveGroup: {
      // Every record of the group before this one is void; a later one
      // starts a new log (the group created again). Never carried forward
      // by a checkpoint: segments go oldest first, so once this record's
      // segment is gone, so is every older record of the group.
      auto b = decode_remove_group(rec.body);
      if (!b) return corrupt(b.error().message());
      groups.erase(b->group);
      return {};
    }
  }
  if (rec.kind >= kFirstOptionalKind) return {};  // optional and unknown: skipped
  return corrupt("unknown required record kind (written by a newer format?)");
}

base::Status check_groups_complete(const GroupMap& groups) {
  for (const auto& [id, g] : groups) {
    if (g.entry_count() > 0 && g.first_index() != g.compact_index() + 1) {
      return base::err(ErrorKind::kCorruption,
                       "group {}: entries {}..{} are missing (held from {}, compacted through {})",
                       id, g.compact_index() + 1, g.first_index() - 1, g.first_index(),
                       g.compact_index());
    }
  }
  return {};
}

}  // namespace nori::wal
