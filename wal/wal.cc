#include "wal/wal.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "runtime/base/bytes.h"
#include "runtime/base/clock.h"
#include "runtime/io.h"
#include "wal/posix_dir.h"
#include "wal/write_sync.h"

namespace nori::wal {

using base::ErrorKind;
using runtime::Task;
namespace io = runtime::io;

namespace {

constexpr uint32_t kZeroFillBytes = 1u << 20;  // one write while zero-filling a segment
constexpr auto kPrepareRetry = std::chrono::milliseconds(100);  // after disk full
constexpr uint64_t kReadSpanMax = uint64_t{1} << 20;            // one disk read in read_entries
constexpr uint64_t kReadGapMax = 64 << 10;                      // merge entries closer than this

struct AlignedFree {
  void operator()(char* p) const { std::free(p); }
};
using AlignedBuf = std::unique_ptr<char, AlignedFree>;
AlignedBuf aligned_buf(size_t n) {
  char* p = static_cast<char*>(std::aligned_alloc(kBlockBytes, base::align_up(n, kBlockBytes)));
  NORI_ASSERT(p != nullptr, "out of memory for a {}-byte I/O buffer", n);
  return AlignedBuf(p);
}

uint64_t random_log_id() {
  uint64_t id = 0;
  while (id == 0) {
    if (::getrandom(&id, sizeof id, 0) != sizeof id) {
      id =
          static_cast<uint64_t>(base::to_ns(base::BootClock::now())) ^ (uint64_t(::getpid()) << 32);
    }
  }
  return id;
}

uint64_t realtime_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000 + uint64_t(ts.tv_nsec);
}

// Operator override for A/B measurements (docs/wal.md, "Linked write +
// sync"): NORI_WAL_LINKED_SYNC=0 or 1 replaces WalOptions::linked_sync.
bool linked_sync_enabled(const WalOptions& opts) {
  if (const char* e = std::getenv("NORI_WAL_LINKED_SYNC"); e != nullptr && *e != '\0') {
    return *e != '0';
  }
  return opts.linked_sync;
}

auto renameat_op(int dirfd, const char* from, const char* to) {
  return io::make_op<io::AsStatus>(
      "renameat", [=](io_uring_sqe* s) { io_uring_prep_renameat(s, dirfd, from, dirfd, to, 0); });
}
auto unlinkat_op(int dirfd, const char* name) {
  return io::make_op<io::AsStatus>(
      "unlinkat", [=](io_uring_sqe* s) { io_uring_prep_unlinkat(s, dirfd, name, 0); });
}

}  // namespace

// ---- signals (one waiter each) ------------------------------------------------

struct Wal::SignalAwaitable {
  Signal& sig;
  bool await_ready() {
    if (sig.pending) {
      sig.pending = false;
      return true;
    }
    return false;
  }
  void await_suspend(std::coroutine_handle<> h) {
    NORI_ASSERT(!sig.waiting, "two waiters on one WAL signal");
    sig.s.handle = h;
    sig.waiting = true;
  }
  void await_resume() { sig.pending = false; }
};

Wal::SignalAwaitable Wal::wait_signal(Signal& sig) {
  return SignalAwaitable{sig};
}

void Wal::raise(Signal& sig) {
  sig.pending = true;
  if (sig.waiting) {
    sig.waiting = false;
    runtime::Reactor::here().schedule(sig.s);
  }
}

// ---- open / close -------------------------------------------------------------

Wal::Wal(std::string dir, const WalOptions& opts, RecoveryResult rec, uint64_t log_id)
    : dir_(std::move(dir)),
      engine_(opts, std::move(rec), log_id),
      linked_sync_(linked_sync_enabled(opts) && write_sync_supported()) {}

Wal::~Wal() {
  NORI_ASSERT(background_ == 0, "Wal destroyed with {} background tasks: call close()",
              background_);
  for (auto& [seq, fd] : fds_)
    ::close(fd);
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

Task<base::Result<std::unique_ptr<Wal>>> Wal::open(std::string dir, WalOptions opts) {
  NORI_CO_TRY(opts.validate());
  NORI_CO_TRY(make_dir(dir));
  PosixSegmentSource source(dir);
  const auto t0 = base::BootClock::now();
  auto rec = recover(source);
  if (!rec) co_return rec.error();
  const int64_t recovery_ns = base::to_ns(base::BootClock::now() - t0);
  std::vector<std::string> temps = rec->temp_files;
  std::vector<std::string> unused = rec->unused_segments;
  std::vector<std::string> frees = rec->free_files;
  std::vector<uint64_t> live;
  for (const auto& s : rec->segments)
    live.push_back(s.header.seq);
  const uint64_t bytes_read = rec->bytes_read;
  const bool torn = rec->torn_tail;
  std::unique_ptr<Wal> w(new Wal(dir, opts, std::move(*rec), random_log_id()));
  w->stats_.recovery_bytes = bytes_read;
  w->stats_.recovery_ns = recovery_ns;
  w->stats_.torn_tail_dropped = torn;
  NORI_CO_ASSIGN_OR_RETURN(w->dir_fd_,
                           co_await io::openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY, 0));
  for (const auto& t : temps)
    NORI_CO_TRY(co_await unlinkat_op(w->dir_fd_, t.c_str()));
  for (const auto& f : frees) {
    uint64_t n = 0;
    if (parse_prefixed_file_name(f, "free-", &n)) w->next_free_ = std::max(w->next_free_, n + 1);
    w->free_files_.push_back(f);
  }
  // Prepared-but-unused segments are recycled before the new segment gets
  // data: recovery would otherwise find a segment without data before the tail.
  for (const auto& u : unused) {
    std::string to = free_file_name(w->next_free_++);
    NORI_CO_TRY(co_await renameat_op(w->dir_fd_, u.c_str(), to.c_str()));
    w->free_files_.push_back(to);
  }
  if (!temps.empty() || !unused.empty()) NORI_CO_TRY(co_await io::fsync(w->dir_fd_));
  for (uint64_t seq : live) {
    const std::string name = segment_file_name(seq);
    NORI_CO_ASSIGN_OR_RETURN(int fd,
                             co_await io::openat(w->dir_fd_, name.c_str(), O_RDWR | O_DIRECT, 0));
    w->fds_[seq] = fd;
  }
  const uint64_t first = w->engine_.active_seq();
  w->engine_.segment_preparing(first);
  auto st = co_await w->prepare_segment(first);
  if (!st.ok()) {
    w->engine_.segment_prepare_failed(first, st.error());
    co_return std::move(st).error();
  }
  w->engine_.segment_prepared(first);
  w->last_active_seq_ = first;
  w->background_ += 2;
  runtime::spawn(w->flusher());
  runtime::spawn(w->preparer());
  co_return w;
}

Task<void> Wal::close() {
  closing_ = true;
  raise(flush_signal_);
  raise(prepare_signal_);
  while (background_ > 0)
    co_await wait_signal(close_signal_);
  NORI_ASSERT(engine_.durable_position() == engine_.append_position());
  for (auto& [seq, fd] : fds_)
    (void)co_await io::close(fd);
  fds_.clear();
  if (dir_fd_ >= 0) (void)co_await io::close(dir_fd_);
  dir_fd_ = -1;
}

void Wal::background_done() {
  NORI_ASSERT(background_ > 0);
  if (--background_ == 0) raise(close_signal_);
}

WalStats Wal::stats() const {
  WalStats s = stats_;
  s.engine = engine_.stats();
  return s;
}

int Wal::fd_of(uint64_t seq) const {
  auto it = fds_.find(seq);
  NORI_ASSERT(it != fds_.end(), "no open file for segment {}", seq);
  return it->second;
}

// ---- appends -------------------------------------------------------------------

void Wal::after_append() {
  raise(flush_signal_);
  if (engine_.active_seq() != last_active_seq_) {
    // Rotated: prepare the next segment ahead, and see what can go.
    last_active_seq_ = engine_.active_seq();
    raise(prepare_signal_);
    if (!reclaiming_ && !closing_) {
      ++background_;  // close() waits for it: it may be suspended on this Wal
      runtime::spawn([](Wal* w) -> Task<void> {
        auto st = co_await w->reclaim();
        (void)st;  // kBusy: retried at the next rotation
        w->background_done();
      }(this));
    }
  }
}

base::Result<Position> Wal::append_entries(uint64_t group, uint64_t first_index,
                                           std::span<const uint64_t> terms,
                                           std::span<const std::string_view> payloads) {
  NORI_ASSERT(!closing_, "append after close");
  auto r = engine_.append_entries(group, first_index, terms, payloads);
  if (r) after_append();
  return r;
}

base::Result<Position> Wal::persist_hard_state(uint64_t group, const HardState& hs) {
  auto r = engine_.persist_hard_state(group, hs);
  if (r) {
    urgent_ = true;
    after_append();
  }
  return r;
}

base::Result<Position> Wal::truncate_suffix(uint64_t group, uint64_t last_kept) {
  auto r = engine_.truncate_suffix(group, last_kept);
  if (r) after_append();
  return r;
}

base::Result<Position> Wal::mark_compacted(uint64_t group, uint64_t index, uint64_t term) {
  auto r = engine_.mark_compacted(group, index, term);
  if (r) after_append();
  return r;
}

base::Result<Position> Wal::reset_group(uint64_t group, uint64_t index, uint64_t term) {
  NORI_ASSERT(!closing_, "reset after close");
  auto r = engine_.reset_group(group, index, term);
  if (r) after_append();
  return r;
}

base::Result<Position> Wal::remove_group(uint64_t group) {
  NORI_ASSERT(!closing_, "remove_group after close");
  auto r = engine_.remove_group(group);
  if (r) after_append();
  return r;
}

namespace {
struct ListAwaitable {
  boost::intrusive::list<runtime::Schedulable, boost::intrusive::constant_time_size<false>>& list;
  runtime::Schedulable s;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    s.handle = h;
    list.push_back(s);
  }
  void await_resume() const noexcept {}
};
}  // namespace

Task<base::Status> Wal::wait_writable() {
  if (closing_) co_return base::Error(ErrorKind::kShuttingDown, "WAL is closing");
  co_await ListAwaitable{writable_waiters_, {}};
  co_return base::Status{};
}

void Wal::wake_writable() {
  while (!writable_waiters_.empty()) {
    runtime::Schedulable& s = writable_waiters_.front();
    writable_waiters_.pop_front();
    runtime::Reactor::here().schedule(s);
  }
}

// ---- group commit ------------------------------------------------------------------

Task<void> Wal::flusher() {
  const WalOptions& o = engine_.options();
  for (;;) {
    if (closing_ && !engine_.has_unwritten() && engine_.writes_in_flight() == 0) break;
    if (!engine_.has_unwritten() || engine_.writes_in_flight() >= o.writes_in_flight_max) {
      co_await wait_signal(flush_signal_);
      continue;
    }
    // Let every task that is ready in this round append first: they all go
    // out in the write cut below (group commit).
    co_await runtime::yield();
    // A batch delay gathers more data, but never holds a hard state (a vote
    // reply waits for it).
    if (o.batch_delay_us > 0 && !closing_ && !urgent_) {
      (void)co_await runtime::sleep_for(std::chrono::microseconds(o.batch_delay_us));
    }
    // Write coalescing (WalOptions::write_hold_bytes), except for a hard
    // state someone waits on or at close.
    const bool hold_small = o.write_hold_bytes > 0 && !urgent_ && !closing_;
    urgent_ = false;
    bool issued = false;
    while (auto req = engine_.next_write(hold_small)) {
      ++background_;
      runtime::spawn(write_one(*req));
      issued = true;
    }
    // Nothing issuable (a write to the previous segment still in flight, or
    // the next segment not prepared): a completion or preparation raises us.
    if (!issued) co_await wait_signal(flush_signal_);
  }
  background_done();
}

Task<void> Wal::write_one(WriteRequest req) {
  const int fd = fd_of(req.seq);
  const WalOptions& o = engine_.options();
  const bool dsync = o.use_rwf_dsync || req.bytes >= o.rwf_dsync_min_bytes;
  const bool linked = !dsync && linked_sync_;
  uint32_t done = 0;
  bool synced = false;
  while (done < req.bytes) {
    const uint64_t off = req.file_offset + done;
    const uint32_t left = req.bytes - done;
    int32_t wrote = 0;
    std::string failure;
    if (linked) {
      // One submission, one completion: the kernel starts the sync when the
      // write completes. A short write breaks the link (the sync does not
      // run): the loop writes the rest with a sync of its own.
      WriteSyncResult r = co_await WriteSync(fd, req.data + done, left, off);
      wrote = r.written;
      if (wrote < 0) failure = std::strerror(-wrote);
      if (wrote >= 0 && uint32_t(wrote) == left) {
        if (r.sync_res != 0) {
          NORI_PANIC(
              "WAL fdatasync of {}/{} failed: {}; stopping (after a failed fsync the page "
              "cache cannot be trusted)",
              dir_, segment_file_name(req.seq), std::strerror(-r.sync_res));
        }
        synced = true;
      }
      if (done == 0) ++stats_.linked_writes;
    } else {
      auto r = co_await io::write(fd, req.data + done, left, off, dsync ? RWF_DSYNC : 0);
      if (r) {
        wrote = static_cast<int32_t>(*r);
      } else {
        wrote = -1;
        failure = r.error().to_string();
      }
    }
    if (wrote <= 0) {
      NORI_PANIC(
          "WAL write of {} bytes to {}/{} at {} failed: {}; stopping (written data "
          "can no longer be trusted)",
          left, dir_, segment_file_name(req.seq), off, wrote == 0 ? "wrote 0 bytes" : failure);
    }
    if (uint32_t(wrote) < left) ++stats_.short_writes;
    done += static_cast<uint32_t>(wrote);
  }
  if (!dsync && !synced) {
    auto st = co_await io::fdatasync(fd);
    if (!st.ok()) {
      NORI_PANIC(
          "WAL fdatasync of {}/{} failed: {}; stopping (after a failed fsync the page "
          "cache cannot be trusted)",
          dir_, segment_file_name(req.seq), st.error().to_string());
    }
  }
  engine_.complete_write(req.id);
  ++stats_.durable_writes;
  on_durable_advance();
  raise(flush_signal_);
  wake_writable();
  background_done();
}

void Wal::add_waiter(Waiter& w) {
  auto it = waiters_.end();
  while (it != waiters_.begin() && std::prev(it)->pos > w.pos)
    --it;
  waiters_.insert(it, w);
}

void Wal::on_durable_advance() {
  const Position d = engine_.durable_position();
  while (!waiters_.empty() && waiters_.begin()->pos <= d) {
    Waiter& w = waiters_.front();
    waiters_.pop_front();
    runtime::Reactor::here().schedule(w.sched);
  }
}

// ---- segments ------------------------------------------------------------------------

Task<void> Wal::preparer() {
  for (;;) {
    if (closing_) break;
    auto seq = engine_.segment_to_prepare();
    if (!seq) {
      co_await wait_signal(prepare_signal_);
      continue;
    }
    engine_.segment_preparing(*seq);
    auto st = co_await prepare_segment(*seq);
    if (!st.ok()) {
      engine_.segment_prepare_failed(*seq, st.error());
      wake_writable();  // appends waiting for the segment now fail with kNoSpace
      (void)co_await runtime::sleep_for(kPrepareRetry);
      continue;
    }
    engine_.segment_prepared(*seq);
    raise(flush_signal_);
    wake_writable();
  }
  background_done();
}

// A segment is complete (sized, zero-filled or recycled, header written and
// synced) before its final name exists, and the directory is synced after
// the rename: a data write into it then needs no metadata update.
Task<base::Status> Wal::prepare_segment(uint64_t seq) {
  const WalOptions& o = engine_.options();
  AlignedBuf header = aligned_buf(kSegmentHeaderBytes);
  encode_segment_header(engine_.header_for(seq, realtime_ns()),
                        std::span<char>(header.get(), kSegmentHeaderBytes));
  const std::string name = segment_file_name(seq);
  int fd = -1;
  std::string from;
  if (!free_files_.empty()) {
    from = free_files_.back();
    free_files_.pop_back();
    NORI_CO_ASSIGN_OR_RETURN(fd, co_await io::openat(dir_fd_, from.c_str(), O_RDWR | O_DIRECT, 0));
    ++stats_.segments_recycled;
  } else {
    from = temp_file_name(seq);
    NORI_CO_ASSIGN_OR_RETURN(
        fd, co_await io::openat(dir_fd_, from.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0644));
    auto st = co_await io::fallocate(fd, 0, 0, o.segment_bytes);
    if (st.ok()) {
      // Zero-fill: the first write into a merely fallocated extent costs about
      // twice a write into written space (unwritten-extent conversion).
      AlignedBuf zeros = aligned_buf(kZeroFillBytes);
      std::memset(zeros.get(), 0, kZeroFillBytes);
      for (uint64_t off = kSegmentHeaderBytes; off < o.segment_bytes && st.ok();) {
        const uint64_t n = std::min<uint64_t>(kZeroFillBytes, o.segment_bytes - off);
        auto r = co_await io::write(fd, zeros.get(), n, off);
        if (!r)
          st = r.error();
        else
          off += *r;
      }
    }
    if (!st.ok()) {
      (void)co_await io::close(fd);
      (void)co_await unlinkat_op(dir_fd_, from.c_str());
      if (st.error().kind() == ErrorKind::kNoSpace) {
        co_return base::err(ErrorKind::kNoSpace, "WAL segment {}/{}: no space left on device", dir_,
                            name);
      }
      NORI_PANIC("WAL: preparing segment {}/{} failed: {}", dir_, name, st.error().to_string());
    }
  }
  auto w = co_await io::write(fd, header.get(), kSegmentHeaderBytes, 0);
  if (!w || *w != kSegmentHeaderBytes) {
    NORI_PANIC("WAL: writing the header of {}/{} failed: {}", dir_, name,
               w ? "short write" : w.error().to_string());
  }
  auto st = co_await io::fdatasync(fd);
  if (!st.ok()) NORI_PANIC("WAL: fdatasync of new segment {}/{} failed", dir_, name);
  st = co_await renameat_op(dir_fd_, from.c_str(), name.c_str());
  if (!st.ok()) NORI_PANIC("WAL: rename {} -> {} failed: {}", from, name, st.error().to_string());
  st = co_await io::fsync(dir_fd_);
  if (!st.ok()) NORI_PANIC("WAL: fsync of directory {} failed", dir_);
  fds_[seq] = fd;
  ++stats_.segments_prepared;
  co_return base::Status{};
}

// ---- space ---------------------------------------------------------------------------------

Task<base::Status> Wal::reclaim() {
  if (reclaiming_ || closing_) co_return base::Status{};
  reclaiming_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{reclaiming_};
  const auto& live = engine_.live_segments();
  const uint64_t entries_from = engine_.oldest_entry_seq();
  if (!live.empty() && live.front() < entries_from) {
    // Hard states and start points (compaction marks, resets, checkpoints)
    // still in old segments move forward.
    auto cp = engine_.checkpoint_before(entries_from);
    if (!cp) co_return cp.error();
    raise(flush_signal_);
    ++stats_.checkpoints;
  }
  const uint64_t keep_from = engine_.first_needed_seq();
  // Snapshot durable (the caller's), then compaction marks and checkpoints
  // durable (this wait), then delete: a deleted segment is never the only
  // copy of anything a group needs.
  const Position pos = engine_.append_position();
  raise(flush_signal_);
  auto st = co_await wait_durable(pos);
  if (!st.ok()) co_return st;
  std::vector<uint64_t> drop;
  for (uint64_t s : live) {
    if (s >= keep_from) break;
    if (readers_.count(s) && readers_[s] > 0) break;  // a read is in flight: next time
    drop.push_back(s);
  }
  // Oldest first: a crash leaves a deleted prefix, never a hole.
  for (uint64_t s : drop) {
    const std::string name = segment_file_name(s);
    auto it = fds_.find(s);
    if (it != fds_.end()) {
      (void)co_await io::close(it->second);
      fds_.erase(it);
    }
    if (free_files_.size() < engine_.options().free_segments_max) {
      std::string to = free_file_name(next_free_++);
      st = co_await renameat_op(dir_fd_, name.c_str(), to.c_str());
      if (!st.ok()) NORI_PANIC("WAL: rename {} -> {} failed: {}", name, to, st.error().to_string());
      free_files_.push_back(to);
    } else {
      st = co_await unlinkat_op(dir_fd_, name.c_str());
      if (!st.ok()) NORI_PANIC("WAL: unlink {} failed: {}", name, st.error().to_string());
    }
    ++stats_.segments_dropped;
  }
  if (!drop.empty()) {
    st = co_await io::fsync(dir_fd_);
    if (!st.ok()) NORI_PANIC("WAL: fsync of directory {} failed", dir_);
    engine_.segments_dropped_before(drop.back() + 1);
  }
  if (engine_.live_bytes() > engine_.options().log_bytes_max && on_pinned_) {
    on_pinned_(engine_.pinning_groups());
  }
  co_return base::Status{};
}

// ---- reads ---------------------------------------------------------------------------------

base::Status Wal::read_cached(uint64_t group_id, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                              std::vector<Entry>& out) const {
  const GroupLog* g = engine_.group(group_id);
  if (g == nullptr || g->entry_count() == 0 || lo < g->first_index() || lo > g->last_index()) {
    return base::err(ErrorKind::kNotFound, "group {}: entry {} not held", group_id, lo);
  }
  hi = std::min(hi, g->last_index() + 1);
  const size_t start = out.size();
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const EntryLoc* loc = g->entry(i);
    if (out.size() > start && bytes + loc->len > bytes_max) break;
    auto p = engine_.cached_payload(*loc);
    if (!p) {
      out.resize(start);
      return base::err(ErrorKind::kUnavailable, "group {}: entry {} is on disk only", group_id, i);
    }
    bytes += loc->len;
    out.push_back(Entry{i, loc->term, std::string(*p)});
  }
  return {};
}

Task<base::Result<std::vector<Entry>>> Wal::read_entries(uint64_t group_id, uint64_t lo,
                                                         uint64_t hi, uint64_t bytes_max) {
  const GroupLog* g = engine_.group(group_id);
  if (g == nullptr || g->entry_count() == 0 || lo < g->first_index() || lo > g->last_index()) {
    co_return base::err(ErrorKind::kNotFound, "group {}: entry {} not held", group_id, lo);
  }
  hi = std::min(hi, g->last_index() + 1);
  std::vector<Entry> out;
  std::vector<std::pair<size_t, EntryLoc>> missing;  // (slot in out, where on disk)
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const EntryLoc* loc = g->entry(i);
    NORI_ASSERT(loc != nullptr);
    if (!out.empty() && bytes + loc->len > bytes_max) break;
    bytes += loc->len;
    Entry e{i, loc->term, {}};
    // Copy from memory now: a chunk may be recycled while we wait for disk.
    if (auto p = engine_.cached_payload(*loc)) {
      e.payload.assign(*p);
    } else {
      missing.emplace_back(out.size(), *loc);
    }
    out.push_back(std::move(e));
  }
  size_t k = 0;
  while (k < missing.size()) {
    // One aligned read covers a run of nearby entries of one segment.
    const EntryLoc first = missing[k].second;
    size_t j = k + 1;
    uint64_t end = first.offset + uint64_t{first.len};
    while (j < missing.size()) {
      const EntryLoc& l = missing[j].second;
      if (l.seq != first.seq || l.offset < end || l.offset > end + kReadGapMax ||
          l.offset + uint64_t{l.len} - base::align_down(first.offset, kBlockBytes) > kReadSpanMax) {
        break;
      }
      end = l.offset + uint64_t{l.len};
      ++j;
    }
    const uint64_t start = base::align_down(first.offset, kBlockBytes);
    const uint64_t len = base::align_up(end, kBlockBytes) - start;
    AlignedBuf buf = aligned_buf(len);
    ++readers_[first.seq];
    auto r = co_await io::read(fd_of(first.seq), buf.get(), len, start);
    if (--readers_[first.seq] == 0) readers_.erase(first.seq);
    if (!r) co_return r.error();
    if (*r < end - start) {
      co_return base::err(ErrorKind::kIo, "short read of {} at {}: {} of {} bytes",
                          segment_file_name(first.seq), start, *r, end - start);
    }
    for (size_t m = k; m < j; ++m) {
      const EntryLoc& l = missing[m].second;
      out[missing[m].first].payload.assign(buf.get() + (l.offset - start), l.len);
    }
    ++stats_.disk_reads;
    k = j;
  }
  co_return out;
}

}  // namespace nori::wal
