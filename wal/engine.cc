#include "wal/engine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "runtime/base/bytes.h"

namespace nori::wal {

using base::ErrorKind;

base::Status WalOptions::validate() const {
  if (write_bytes_max < 4 * kBlockBytes || write_bytes_max % kBlockBytes != 0) {
    return base::err(ErrorKind::kInvalidArgument,
                     "write_bytes_max {} must be a multiple of {} and at least 4 blocks",
                     write_bytes_max, kBlockBytes);
  }
  if (segment_bytes % kBlockBytes != 0 ||
      segment_bytes < kSegmentHeaderBytes + 2 * uint64_t{write_bytes_max} ||
      segment_bytes > kSegmentBytesMax) {
    return base::err(ErrorKind::kInvalidArgument,
                     "segment_bytes {} must be a block multiple >= header + 2 writes and <= {}",
                     segment_bytes, kSegmentBytesMax);
  }
  if (writes_in_flight_max == 0 || writes_in_flight_max > 64) {
    return base::err(ErrorKind::kInvalidArgument, "writes_in_flight_max {} not in 1..64",
                     writes_in_flight_max);
  }
  if (segments_ahead == 0 || segments_ahead > 8) {
    return base::err(ErrorKind::kInvalidArgument, "segments_ahead {} not in 1..8", segments_ahead);
  }
  return {};
}

struct LogEngine::Chunk {
  char* data = nullptr;
  uint32_t capacity = 0;  // bytes of the segment this chunk may cover
  uint64_t seq = 0;
  uint64_t file_off = 0;   // where data[0] goes in the segment file
  uint32_t fill = 0;       // bytes encoded
  uint32_t cut = 0;        // bytes handed to writes (block multiple)
  uint32_t in_flight = 0;  // writes issued and not yet in the durable prefix
  Position lsn_base = 0;   // position of data[0]
  ~Chunk() { std::free(data); }
};

namespace {
// Writes issued but not durable, plus the open chunk, plus one being sealed.
constexpr size_t kChunksBeyondInFlight = 2;
}  // namespace

LogEngine::LogEngine(const WalOptions& opts, RecoveryResult recovered, uint64_t new_log_id)
    : opts_(opts),
      log_id_(recovered.log_id != 0 ? recovered.log_id : new_log_id),
      groups_(std::move(recovered.groups)),
      active_seq_(recovered.next_seq) {
  auto st = opts_.validate();
  NORI_ASSERT(st.ok(), "invalid WAL options: {}", st.error().message());
  NORI_ASSERT(log_id_ != 0, "log id 0 is reserved");
  for (const auto& s : recovered.segments)
    live_.push_back(s.header.seq);
  if (!recovered.segments.empty()) {
    prev_seq_ = recovered.segments.back().header.seq;
    prev_end_ = recovered.segments.back().end;
  }
  prepared_through_ = active_seq_ - 1;
}

LogEngine::~LogEngine() = default;

// ---- Chunks -----------------------------------------------------------------

LogEngine::Chunk* LogEngine::take_chunk_buffer() {
  if (!free_chunks_.empty()) {
    Chunk* c = free_chunks_.back();
    free_chunks_.pop_back();
    return c;
  }
  const size_t cache_chunks = opts_.cache_bytes_max / opts_.write_bytes_max;
  if (all_chunks_.size() < opts_.writes_in_flight_max + kChunksBeyondInFlight + cache_chunks) {
    auto c = std::make_unique<Chunk>();
    c->data = static_cast<char*>(std::aligned_alloc(kBlockBytes, opts_.write_bytes_max));
    NORI_ASSERT(c->data != nullptr, "out of memory for a {}-byte WAL chunk", opts_.write_bytes_max);
    all_chunks_.push_back(std::move(c));
    return all_chunks_.back().get();
  }
  // Evict the oldest cached chunk (fully written and durable).
  if (!chunks_.empty()) {
    Chunk* front = chunks_.front();
    const bool is_open = open_ && chunks_.size() == 1;
    if (!is_open && front->cut == front->fill && front->in_flight == 0) {
      chunks_.pop_front();
      return front;
    }
  }
  return nullptr;
}

void LogEngine::recycle_cached() {
  const size_t cache_chunks = opts_.cache_bytes_max / opts_.write_bytes_max;
  size_t cached = 0;
  for (Chunk* c : chunks_) {
    if (c->cut != c->fill || c->in_flight != 0 || (open_ && c == chunks_.back())) break;
    ++cached;
  }
  while (cached > cache_chunks) {
    free_chunks_.push_back(chunks_.front());
    chunks_.pop_front();
    --cached;
  }
}

void LogEngine::seal_open_chunk() {
  NORI_ASSERT(open_);
  Chunk* c = chunks_.back();
  const uint32_t end = static_cast<uint32_t>(base::align_up(c->fill, kBlockBytes));
  if (end > c->fill) {
    encode_padding(std::span<char>(c->data + c->fill, end - c->fill),
                   RecordPlace{log_id_, c->seq, c->file_off + c->fill});
    stats_.padding_bytes += end - c->fill;
    c->fill = end;
    active_end_ = c->file_off + c->fill;
    append_lsn_ = c->lsn_base + c->fill;
  }
  open_ = false;
}

base::Status LogEngine::open_chunk(uint64_t seq, uint64_t file_off) {
  Chunk* c = take_chunk_buffer();
  if (c == nullptr) {
    ++stats_.busy;
    return base::err(ErrorKind::kBusy, "WAL: every chunk is in flight; wait for durability");
  }
  c->seq = seq;
  c->file_off = file_off;
  c->capacity = static_cast<uint32_t>(
      std::min<uint64_t>(opts_.write_bytes_max, opts_.segment_bytes - file_off));
  c->fill = 0;
  c->cut = 0;
  c->in_flight = 0;
  c->lsn_base = append_lsn_;
  chunks_.push_back(c);
  open_ = true;
  return {};
}

// Makes room for a record of body_bytes in the open chunk: seals a full
// chunk, rotates to the next (prepared) segment when the active one cannot
// hold the record, and starts a segment with its segment_open record.
base::Status LogEngine::ensure_room(uint64_t body_bytes) {
  const uint64_t span = record_span(body_bytes);
  NORI_ASSERT(span <= opts_.write_bytes_max - kBlockBytes);
  if (open_) {
    Chunk* c = chunks_.back();
    if (c->fill + span <= c->capacity) return {};
    seal_open_chunk();
  }
  // Where the next chunk of the active segment starts.
  bool started = !live_.empty() && live_.back() == active_seq_;
  uint64_t seg_off = started ? active_end_ : kSegmentHeaderBytes;
  const uint64_t open_span = started ? 0 : record_span(kSegmentOpenBodyBytes);
  uint64_t seq = active_seq_;
  if (seg_off + open_span + span > opts_.segment_bytes) {
    seq = active_seq_ + 1;
    seg_off = kSegmentHeaderBytes;
    started = false;
  }
  if (seq > prepared_through_) {
    ++stats_.busy;
    if (prepare_error_ && prepare_error_->kind() == ErrorKind::kNoSpace) {
      return base::err(ErrorKind::kNoSpace, "WAL: cannot create segment {}: {}", seq,
                       prepare_error_->message());
    }
    return base::err(ErrorKind::kBusy, "WAL: segment {} is not prepared yet", seq);
  }
  if (seq != active_seq_) {
    // Rotation: the old segment ends where its last chunk ends.
    prev_seq_ = active_seq_;
    prev_end_ = active_end_;
    active_seq_ = seq;
    ++stats_.rotations;
  }
  NORI_TRY(open_chunk(seq, seg_off));
  if (!started) {
    char* body = body_ptr();
    encode_segment_open(std::span<char>(body, kSegmentOpenBodyBytes),
                        SegmentOpenBody{prev_seq_, prev_end_});
    commit_record(RecordKind::kSegmentOpen, kSegmentOpenBodyBytes);
    live_.push_back(seq);
  }
  return {};
}

char* LogEngine::body_ptr() const {
  NORI_ASSERT(open_);
  Chunk* c = chunks_.back();
  return c->data + c->fill + kRecordHeaderBytes;
}

uint64_t LogEngine::commit_record(RecordKind kind, uint32_t body_bytes) {
  Chunk* c = chunks_.back();
  const uint64_t span = record_span(body_bytes);
  NORI_ASSERT(c->fill + span <= c->capacity);
  const uint64_t off = c->file_off + c->fill;
  seal_record(std::span<char>(c->data + c->fill, span), kind, body_bytes,
              RecordPlace{log_id_, c->seq, off});
  c->fill += static_cast<uint32_t>(span);
  active_end_ = c->file_off + c->fill;
  append_lsn_ = c->lsn_base + c->fill;
  ++stats_.records;
  return off;
}

// ---- Appends ------------------------------------------------------------------

base::Result<Position> LogEngine::append_entries(uint64_t group, uint64_t first_index,
                                                 std::span<const uint64_t> terms,
                                                 std::span<const std::string_view> payloads) {
  if (terms.size() != payloads.size() || terms.empty()) {
    return base::err(ErrorKind::kInvalidArgument, "append of {} terms and {} payloads",
                     terms.size(), payloads.size());
  }
  const uint32_t body_max = opts_.record_body_max();
  for (auto p : payloads) {
    if (kEntriesFixedBytes + kTermRunBytes + base::kVarintMaxBytes + p.size() > body_max) {
      return base::err(ErrorKind::kInvalidArgument, "entry of {} bytes exceeds the {}-byte limit",
                       p.size(), body_max - kEntriesFixedBytes - kTermRunBytes - 10);
    }
  }
  GroupLog& g = groups_[group];
  NORI_TRY(g.check_append(first_index, /*replay=*/false));
  ++stats_.appends;
  size_t k = 0;
  std::vector<uint32_t>& offsets = offsets_scratch_;  // reused: no allocation per append
  while (k < payloads.size()) {
    // Take as many entries as fit one record body.
    size_t n = 0;
    size_t bytes = kEntriesFixedBytes;
    while (k + n < payloads.size()) {
      const size_t add = base::varint_size(payloads[k + n].size()) + payloads[k + n].size() +
                         ((n == 0 || terms[k + n] != terms[k + n - 1]) ? kTermRunBytes : 0);
      if (bytes + add > body_max) break;
      bytes += add;
      ++n;
    }
    NORI_ASSERT(n > 0);
    NORI_TRY(ensure_room(bytes));
    auto t = terms.subspan(k, n);
    auto p = payloads.subspan(k, n);
    NORI_ASSERT(entries_body_bytes(t, p) == bytes);
    offsets.resize(n);
    encode_entries(std::span<char>(body_ptr(), bytes), group, first_index + k, t, p,
                   offsets.data());
    const uint64_t rec_off = commit_record(RecordKind::kEntries, static_cast<uint32_t>(bytes));
    const uint64_t seq = chunks_.back()->seq;
    for (size_t i = 0; i < n; ++i) {
      g.append(first_index + k + i,
               EntryLoc{t[i], seq, static_cast<uint32_t>(rec_off + kRecordHeaderBytes + offsets[i]),
                        static_cast<uint32_t>(p[i].size())},
               /*replay=*/false);
    }
    stats_.entries += n;
    k += n;
  }
  return append_lsn_;
}

base::Result<Position> LogEngine::append_small(RecordKind kind, std::span<const char> body) {
  NORI_TRY(ensure_room(body.size()));
  std::memcpy(body_ptr(), body.data(), body.size());
  commit_record(kind, static_cast<uint32_t>(body.size()));
  ++stats_.appends;
  return append_lsn_;
}

base::Result<Position> LogEngine::persist_hard_state(uint64_t group, const HardState& hs) {
  char body[kHardStateBodyBytes];
  encode_hard_state(body, HardStateBody{group, hs});
  NORI_ASSIGN_OR_RETURN(Position pos, append_small(RecordKind::kHardState, body));
  groups_[group].set_hard_state(hs, chunks_.back()->seq);
  return pos;
}

base::Result<Position> LogEngine::truncate_suffix(uint64_t group, uint64_t last_kept) {
  GroupLog& g = groups_[group];
  NORI_TRY(g.check_truncate(last_kept));
  char body[kTruncateBodyBytes];
  encode_truncate(body, TruncateBody{group, last_kept});
  NORI_ASSIGN_OR_RETURN(Position pos, append_small(RecordKind::kTruncate, body));
  g.truncate(last_kept);
  return pos;
}

base::Result<Position> LogEngine::mark_compacted(uint64_t group, uint64_t index, uint64_t term) {
  char body[kCompactBodyBytes];
  encode_compact(body, CompactBody{group, index, term});
  NORI_ASSIGN_OR_RETURN(Position pos, append_small(RecordKind::kCompact, body));
  groups_[group].compact(index, term, chunks_.back()->seq);
  return pos;
}

base::Result<Position> LogEngine::reset_group(uint64_t group, uint64_t index, uint64_t term) {
  if (index == 0 || index == UINT64_MAX || term == 0) {
    return base::err(ErrorKind::kInvalidArgument,
                     "group {}: reset to index {} term {} (index and term must be >= 1)", group,
                     index, term);
  }
  GroupLog& g = groups_[group];
  // The decision is taken here, once, and the record says which: replay
  // could not take it again, because the entry at index may be in a segment
  // reclaimed before the crash.
  if (g.matches(index, term)) return mark_compacted(group, index, term);
  char body[kResetBodyBytes];
  encode_reset(body, ResetBody{group, index, term});
  NORI_ASSIGN_OR_RETURN(Position pos, append_small(RecordKind::kReset, body));
  g.reset(index, term, chunks_.back()->seq);
  return pos;
}

base::Result<Position> LogEngine::remove_group(uint64_t group) {
  char body[kRemoveGroupBodyBytes];
  encode_remove_group(body, RemoveGroupBody{group});
  NORI_ASSIGN_OR_RETURN(Position pos, append_small(RecordKind::kRemoveGroup, body));
  // Forgotten only once the record is appended: a refused append (kBusy)
  // leaves the group as it was.
  groups_.erase(group);
  return pos;
}

// ---- Group commit -------------------------------------------------------------

bool LogEngine::has_unwritten() const {
  for (const Chunk* c : chunks_) {
    if (c->cut < c->fill) return true;
  }
  return false;
}

std::optional<WriteRequest> LogEngine::next_write(bool hold_small) {
  if (writes_.size() >= opts_.writes_in_flight_max) return std::nullopt;
  Chunk* c = nullptr;
  for (Chunk* x : chunks_) {
    if (x->cut < x->fill) {
      c = x;
      break;
    }
  }
  if (c == nullptr) return std::nullopt;
  // A segment's first write waits until every write to the previous segment
  // is durable: recovery treats damage in a non-tail segment as corruption.
  if (!writes_.empty() && writes_.front().seq != c->seq) return std::nullopt;
  // Write coalescing: a small tail waits for the write in flight (a full
  // chunk, or one that is not the last, goes now).
  if (hold_small && !writes_.empty() && c == chunks_.back() &&
      c->fill - c->cut < opts_.write_hold_bytes) {
    ++stats_.held_writes;
    return std::nullopt;
  }
  NORI_ASSERT(c->seq <= prepared_through_);
  if (open_ && c == chunks_.back()) {
    // Pad the last block, so that block is never written again.
    const uint32_t end = static_cast<uint32_t>(base::align_up(c->fill, kBlockBytes));
    if (end > c->fill) {
      encode_padding(std::span<char>(c->data + c->fill, end - c->fill),
                     RecordPlace{log_id_, c->seq, c->file_off + c->fill});
      stats_.padding_bytes += end - c->fill;
      c->fill = end;
      active_end_ = c->file_off + c->fill;
      append_lsn_ = c->lsn_base + c->fill;
    }
  }
  NORI_ASSERT(c->fill % kBlockBytes == 0 && c->cut % kBlockBytes == 0);
  WriteRequest req{next_write_id_++, c->seq, c->file_off + c->cut, c->data + c->cut,
                   c->fill - c->cut};
  c->cut = c->fill;
  ++c->in_flight;
  writes_.push_back(Slot{req.id, c, c->seq, c->lsn_base + c->fill, false});
  ++stats_.writes;
  stats_.write_bytes += req.bytes;
  return req;
}

void LogEngine::complete_write(uint64_t id) {
  auto it = std::find_if(writes_.begin(), writes_.end(), [&](const Slot& s) { return s.id == id; });
  NORI_ASSERT(it != writes_.end() && !it->done, "completion of unknown write {}", id);
  it->done = true;
  // The durable position is the completed prefix: recovery stops at a gap.
  while (!writes_.empty() && writes_.front().done) {
    NORI_ASSERT(writes_.front().lsn_end >= durable_lsn_);
    durable_lsn_ = writes_.front().lsn_end;
    --writes_.front().chunk->in_flight;
    writes_.pop_front();
  }
  recycle_cached();
}

// ---- Segments -------------------------------------------------------------------

SegmentHeader LogEngine::header_for(uint64_t seq, uint64_t created_unix_ns) const {
  SegmentHeader h;
  h.log_id = log_id_;
  h.seq = seq;
  h.created_unix_ns = created_unix_ns;
  h.tail_window_bytes = opts_.tail_window_bytes();
  h.segment_bytes = opts_.segment_bytes;
  return h;
}

std::optional<uint64_t> LogEngine::segment_to_prepare() const {
  if (preparing_ != 0) return std::nullopt;
  if (prepared_through_ >= active_seq_ + opts_.segments_ahead) return std::nullopt;
  return prepared_through_ + 1;
}

void LogEngine::segment_preparing(uint64_t seq) {
  NORI_ASSERT(preparing_ == 0 && seq == prepared_through_ + 1);
  preparing_ = seq;
}

void LogEngine::segment_prepared(uint64_t seq) {
  NORI_ASSERT(seq == prepared_through_ + 1, "prepared {} after {}", seq, prepared_through_);
  prepared_through_ = seq;
  preparing_ = 0;
  prepare_error_.reset();
}

void LogEngine::segment_prepare_failed(uint64_t seq, base::Error error) {
  NORI_ASSERT(seq == preparing_);
  preparing_ = 0;
  prepare_error_.emplace(std::move(error));
}

// ---- Space ------------------------------------------------------------------------

uint64_t LogEngine::oldest_entry_seq() const {
  uint64_t s = active_seq_;
  for (const auto& [id, g] : groups_)
    s = std::min(s, g.oldest_entry_seq());
  return s;
}

uint64_t LogEngine::first_needed_seq() const {
  uint64_t s = active_seq_;
  for (const auto& [id, g] : groups_)
    s = std::min(s, g.oldest_needed_seq());
  return s;
}

base::Result<Position> LogEngine::checkpoint_before(uint64_t below_seq) {
  for (auto& [id, g] : groups_) {
    const bool hs_old = g.hard_state_seq() != kNoSeq && g.hard_state_seq() < below_seq;
    const bool compact_old = g.compact_seq() != kNoSeq && g.compact_seq() < below_seq;
    if (!hs_old && !compact_old) continue;
    char body[kCheckpointBodyBytes];
    encode_checkpoint(body,
                      CheckpointBody{id, g.hard_state(), g.compact_index(), g.compact_term()});
    NORI_TRY(append_small(RecordKind::kCheckpoint, body));
    g.checkpoint(g.hard_state(), g.compact_index(), g.compact_term(), chunks_.back()->seq);
  }
  return append_lsn_;
}

std::vector<uint64_t> LogEngine::pinning_groups() const {
  std::vector<uint64_t> out;
  if (live_.empty()) return out;
  const uint64_t oldest = live_.front();
  for (const auto& [id, g] : groups_) {
    if (g.oldest_entry_seq() <= oldest) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void LogEngine::segments_dropped_before(uint64_t seq) {
  NORI_ASSERT(seq <= active_seq_);
  NORI_ASSERT(seq <= first_needed_seq(), "dropping segment {} still needed", seq);
  while (!live_.empty() && live_.front() < seq)
    live_.pop_front();
}

// ---- Reads --------------------------------------------------------------------------

const GroupLog* LogEngine::group(uint64_t id) const {
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : &it->second;
}

std::optional<std::string_view> LogEngine::cached_payload(const EntryLoc& loc) const {
  // chunks_ is ordered by (seq, file_off): find the last chunk starting at or
  // before the entry.
  auto it = std::upper_bound(chunks_.begin(), chunks_.end(), loc, [](const EntryLoc& l, Chunk* c) {
    return l.seq < c->seq || (l.seq == c->seq && l.offset < c->file_off);
  });
  if (it == chunks_.begin()) return std::nullopt;
  const Chunk* c = *std::prev(it);
  if (c->seq != loc.seq || loc.offset + uint64_t{loc.len} > c->file_off + c->fill) {
    return std::nullopt;
  }
  return std::string_view(c->data + (loc.offset - c->file_off), loc.len);
}

}  // namespace nori::wal
