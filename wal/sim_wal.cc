#include "wal/sim_wal.h"

#include <algorithm>

namespace nori::wal {

using base::ErrorKind;

base::Result<std::unique_ptr<SimWal>> SimWal::open(SimDisk& disk, const WalOptions& opts,
                                                   uint64_t new_log_id) {
  NORI_TRY(opts.validate());
  SimSegmentSource source(disk);
  NORI_ASSIGN_OR_RETURN(RecoveryResult rec, recover(source));
  // Unfinished preparations go; prepared-but-unused segments are recycled
  // before the new segment gets data (else recovery would see a segment
  // without data before the tail).
  for (const auto& t : rec.temp_files)
    NORI_TRY(disk.unlink(t));
  std::unique_ptr<SimWal> w(new SimWal(disk, opts, std::move(rec), new_log_id));
  for (const auto& f : w->recovery_.free_files)
    w->free_files_.push_back(f);
  for (const auto& f : w->recovery_.free_files) {
    uint64_t n = 0;
    if (parse_prefixed_file_name(f, "free-", &n)) w->next_free_ = std::max(w->next_free_, n + 1);
  }
  for (const auto& u : w->recovery_.unused_segments) {
    std::string to = free_file_name(w->next_free_++);
    NORI_TRY(disk.rename(u, to));
    w->free_files_.push_back(to);
  }
  const uint64_t first = w->engine_.active_seq();
  w->engine_.segment_preparing(first);
  auto st = w->prepare_segment(first);
  if (!st.ok()) return std::move(st).error();
  w->engine_.segment_prepared(first);
  return w;
}

SimWal::SimWal(SimDisk& disk, const WalOptions& opts, RecoveryResult rec, uint64_t new_log_id)
    : disk_(disk), recovery_(rec), engine_(opts, std::move(rec), new_log_id) {}

base::Status SimWal::prepare_segment(uint64_t seq) {
  std::string header(kSegmentHeaderBytes, '\0');
  encode_segment_header(engine_.header_for(seq, 0), header);
  const std::string name = segment_file_name(seq);
  if (!free_files_.empty()) {
    // Recycle: new header, durable before the rename makes it a segment.
    std::string from = free_files_.front();
    free_files_.pop_front();
    NORI_TRY(disk_.write(from, 0, header.data(), header.size()));
    NORI_TRY(disk_.sync(from));
    return disk_.rename(from, name);
  }
  const std::string tmp = temp_file_name(seq);
  NORI_TRY(disk_.create(tmp, engine_.options().segment_bytes));
  NORI_TRY(disk_.write(tmp, 0, header.data(), header.size()));
  NORI_TRY(disk_.sync(tmp));
  return disk_.rename(tmp, name);
}

void SimWal::prepare_ahead() {
  while (auto seq = engine_.segment_to_prepare()) {
    engine_.segment_preparing(*seq);
    auto st = prepare_segment(*seq);
    if (!st.ok()) {
      // Disk full is survivable (appends fail until space returns); any
      // other error on a file the log writes is not.
      if (st.error().kind() != ErrorKind::kNoSpace) failed_.emplace(st.error());
      engine_.segment_prepare_failed(*seq, std::move(st).error());
      return;
    }
    engine_.segment_prepared(*seq);
  }
}

void SimWal::issue(bool hold_small) {
  if (failed_) return;
  prepare_ahead();
  while (auto req = engine_.next_write(hold_small)) {
    auto st = disk_.write(segment_file_name(req->seq), req->file_offset, req->data, req->bytes);
    if (!st.ok()) {
      failed_.emplace(std::move(st).error());
      return;
    }
    in_flight_.push_back(*req);
  }
}

bool SimWal::complete_one(std::mt19937_64& rng) {
  if (failed_ || in_flight_.empty()) return false;
  const size_t i = rng() % in_flight_.size();
  WriteRequest req = in_flight_[i];
  in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(i));
  auto st = disk_.sync_range(segment_file_name(req.seq), req.file_offset, req.bytes);
  if (!st.ok()) {
    failed_.emplace(std::move(st).error());
    return false;
  }
  engine_.complete_write(req.id);
  return true;
}

base::Status SimWal::flush_all() {
  std::mt19937_64 rng(1);
  for (;;) {
    issue();
    if (failed_) return *failed_;
    if (in_flight_.empty()) {
      if (engine_.durable_position() == engine_.append_position()) return {};
      // Unwritten bytes but nothing can be issued: a segment is missing.
      return base::err(ErrorKind::kBusy, "WAL: cannot make progress (segment not prepared)");
    }
    while (complete_one(rng)) {
    }
  }
}

base::Status SimWal::reclaim() {
  // 1. Move every hard state and compaction mark out of the segments that no
  //    group needs for entries.
  NORI_TRY(engine_.checkpoint_before(engine_.oldest_entry_seq()));
  // 2. Everything appended so far (compaction marks, checkpoints) durable
  //    before any file goes: a deleted segment must not be the only copy.
  const uint64_t keep_from = engine_.first_needed_seq();
  NORI_TRY(flush_all());
  // 3. Oldest first, so a crash leaves a prefix deleted, never a hole.
  std::vector<uint64_t> drop;
  for (uint64_t s : engine_.live_segments()) {
    if (s < keep_from) drop.push_back(s);
  }
  for (uint64_t s : drop) {
    const std::string name = segment_file_name(s);
    if (free_files_.size() < engine_.options().free_segments_max) {
      std::string to = free_file_name(next_free_++);
      NORI_TRY(disk_.rename(name, to));
      free_files_.push_back(to);
    } else {
      NORI_TRY(disk_.unlink(name));
    }
  }
  engine_.segments_dropped_before(keep_from);
  return {};
}

}  // namespace nori::wal
