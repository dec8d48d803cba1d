// The per-group index of the per-core log: for every Raft group, its first
// and last index, each entry's term and location (segment, offset, length),
// its hard state and its compaction point, plus which segments it pins.
//
// Used by recovery (rebuilt by replaying records, docs/wal-format.md
// "Replay") and by the writer (updated as records are appended). Owned by
// one core; not thread-safe. Holds locations only: payloads live in the
// writer's chunk cache or on disk.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <unordered_map>

#include "runtime/base/result.h"
#include "wal/format.h"

namespace nori::wal {

inline constexpr uint64_t kNoSeq = std::numeric_limits<uint64_t>::max();

// Where an entry's payload is: segment seq and byte offset in that file.
struct EntryLoc {
  uint64_t term = 0;
  uint64_t seq = 0;
  uint32_t offset = 0;
  uint32_t len = 0;
};

// One group's log as the WAL holds it. The log is the entries
// first_index()..last_index() (none when first_index() == last_index() + 1),
// preceded by a start point: the (index, term) it starts after, set by the
// newest compaction mark (mark_compacted) or reset (reset_group) and
// (0, 0) for a log that never had one. The same values after recovery as at
// run time: recovery replays the records that produced them.
//
//   first_index() == compact_index() + 1      (recovery: kCorruption if entries are held and not)
//   last_index()  >= compact_index()          (== when no entry is held)
//   term(compact_index()) == compact_term()   (term of the start point)
//
// A Raft storage answers first_index() with first_index(), term(first - 1)
// with compact_term(), and its snapshot's index/term with compact_index() /
// compact_term() (a snapshot at or above the start point must exist for the
// group once compact_index() > 0: the caller made it durable before marking).
class GroupLog {
 public:
  // Index of the first entry held: compact_index() + 1.
  uint64_t first_index() const { return last_index_ + 1 - entries_.size(); }
  // Index of the last entry held, or compact_index() if none is held.
  uint64_t last_index() const { return last_index_; }
  // The start point: the log starts after entry compact_index(), whose term
  // was compact_term() (the newest compaction mark or reset; 0/0 if none).
  uint64_t compact_index() const { return compact_index_; }
  uint64_t compact_term() const { return compact_term_; }
  const HardState& hard_state() const { return hs_; }
  bool has_hard_state() const { return hs_seq_ != kNoSeq; }
  size_t entry_count() const { return entries_.size(); }

  // The term of index i: an entry held, or the compaction point itself.
  std::optional<uint64_t> term(uint64_t i) const;
  // The location of a held entry (nullptr if not held).
  const EntryLoc* entry(uint64_t i) const;

  // Appends entries first_index.. (must be last_index + 1; replay may also
  // start an empty log above the compaction point). kInvalidArgument if not.
  base::Status check_append(uint64_t first_index, bool replay) const;
  void append(uint64_t first_index, const EntryLoc& loc, bool replay);
  // Drops entries after last_kept. kInvalidArgument below the compaction point.
  base::Status check_truncate(uint64_t last_kept) const;
  void truncate(uint64_t last_kept);
  // Entries through index are no longer needed; last_index >= index after.
  // A mark below the current start point changes nothing (not even which
  // segment holds the newest mark).
  void compact(uint64_t index, uint64_t term, uint64_t seq);
  // Whether the log holds entry index with this term (the start point
  // counts: it is the term of compact_index()).
  bool matches(uint64_t index, uint64_t term) const;
  // Every entry goes; the log restarts empty after (index, term), which may
  // be below the old start point. Recorded by a reset record in segment seq.
  void reset(uint64_t index, uint64_t term, uint64_t seq);
  void set_hard_state(const HardState& hs, uint64_t seq);
  // A checkpoint re-records hard state and compaction point in segment seq.
  void checkpoint(const HardState& hs, uint64_t compact_index, uint64_t compact_term, uint64_t seq);

  // The oldest segment this group needs: its first held entry's, its newest
  // hard state's and its newest start point's (compaction mark, reset or
  // checkpoint; kNoSeq if none).
  uint64_t oldest_needed_seq() const;
  // The oldest segment needed for entries alone (kNoSeq if none held).
  uint64_t oldest_entry_seq() const { return entries_.empty() ? kNoSeq : entries_.front().seq; }
  uint64_t hard_state_seq() const { return hs_seq_; }
  uint64_t compact_seq() const { return compact_seq_; }

 private:
  std::deque<EntryLoc> entries_;  // entries_[k] is index first_index() + k
  uint64_t last_index_ = 0;
  uint64_t compact_index_ = 0;
  uint64_t compact_term_ = 0;
  HardState hs_;
  uint64_t hs_seq_ = kNoSeq;
  uint64_t compact_seq_ = kNoSeq;
};

using GroupMap = std::unordered_map<uint64_t, GroupLog>;

// Applies one checksum-valid record of segment `seq` at `offset` to the
// groups (replay rules of docs/wal-format.md). kCorruption when a record does
// not parse or breaks the rules (an unknown required kind included).
base::Status replay_record(GroupMap& groups, const RecordView& rec, uint64_t seq);

// After replay: every group's held entries must start right after its
// compaction point (else segments holding live entries are missing).
base::Status check_groups_complete(const GroupMap& groups);

}  // namespace nori::wal
