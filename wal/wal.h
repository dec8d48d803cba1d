// Wal: one core's write-ahead log on io_uring, shared by every Raft group on
// that core. It drives the LogEngine (wal/engine.h: format, index, group
// commit decisions) with real files: O_DIRECT segment files written from
// aligned chunks through the reactor's ring, segments prepared ahead off the
// append path, rotation, reclamation, and reads of old entries.
//
//   auto wal = co_await Wal::open(dir, opts);            // recovers the directory
//   auto pos = wal->append_entries(g, first, terms, payloads);   // in memory, returns at once
//   co_await wal->wait_durable(*pos);                    // many waiters, one sync
//   auto hs = wal->persist_hard_state(g, {term, vote, commit});
//   co_await wal->wait_durable(*hs);                     // before answering a vote
//   auto entries = co_await wal->read_entries(g, lo, hi, bytes_max);
//   auto r = wal->reset_group(g, snap_index, snap_term);  // snapshot installed
//   co_await wal->wait_durable(*r);
//   wal->group(g)->compact_index();                       // the log starts after this
//   co_await wal->close();
//
// Threads: everything on the reactor that opened it (not thread-safe).
// Durability: a position is durable when wait_durable(pos) returns ok; every
// record appended before it is durable too (the durable position is the
// completed prefix). Group commit: appends made during one reactor round go
// out in one write; up to writes_in_flight_max contiguous writes are in
// flight. A hard state is durable only after everything appended before it;
// it does not wait for a batch delay (appending one flushes at the end of
// the round).
// Failures: a failed write, fsync, or segment preparation other than disk
// full stops the process (NORI_PANIC): after a failed fsync the page cache
// cannot be trusted. Disk full when creating a segment fails appends with
// kNoSpace (nothing acknowledged is lost) until a retry succeeds.
// Shutdown: call close() before the runtime stops; it waits for every write.
#pragma once

#include <boost/intrusive/list.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/reactor.h"
#include "runtime/task.h"
#include "wal/engine.h"

namespace nori::wal {

struct Entry {
  uint64_t index = 0;
  uint64_t term = 0;
  std::string payload;
};

struct WalStats {
  EngineStats engine;
  uint64_t durable_writes = 0;  // completed durable writes
  uint64_t linked_writes = 0;   // durable writes issued as one write + sync chain
  uint64_t short_writes = 0;    // writes the kernel cut short (the rest rewritten)
  uint64_t segments_prepared = 0;
  uint64_t segments_recycled = 0;  // prepared from the free pool
  uint64_t segments_dropped = 0;
  uint64_t checkpoints = 0;  // reclaim rounds that wrote checkpoints
  uint64_t disk_reads = 0;   // read_entries calls that went to disk
  uint64_t recovery_bytes = 0;
  int64_t recovery_ns = 0;
  bool torn_tail_dropped = false;
};

class Wal {
 public:
  // Called with the groups pinning the oldest segment when the log's live
  // bytes exceed log_bytes_max: Raft should snapshot them and mark_compacted.
  using PinnedCallback = std::function<void(const std::vector<uint64_t>& groups)>;

  // Recovers (or creates) the log in dir and prepares its first segment.
  // Recovery reads are blocking (before the log serves). Errors: recovery's
  // (kCorruption with file and offset), kNoSpace, kIo.
  static runtime::Task<base::Result<std::unique_ptr<Wal>>> open(std::string dir, WalOptions opts);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // ---- Appends: in memory at return; durable once wait_durable(result) ----
  base::Result<Position> append_entries(uint64_t group, uint64_t first_index,
                                        std::span<const uint64_t> terms,
                                        std::span<const std::string_view> payloads);
  base::Result<Position> persist_hard_state(uint64_t group, const HardState& hs);
  base::Result<Position> truncate_suffix(uint64_t group, uint64_t last_kept);
  base::Result<Position> mark_compacted(uint64_t group, uint64_t index, uint64_t term);
  // Resets group to a snapshot at (index, term) (LogEngine::reset_group has
  // the whole contract): entries after index kept if the log holds index with
  // term `term`, else the log restarts empty after (index, term). The
  // snapshot file must be durable before the caller waits for this position
  // to acknowledge anything; the WAL does not know snapshot files.
  base::Result<Position> reset_group(uint64_t group, uint64_t index, uint64_t term);
  // Removes the group (LogEngine::remove_group): forgotten at once, not
  // recovered once the returned position is durable.
  base::Result<Position> remove_group(uint64_t group);

  // Resumes once pos is durable (kCancelled if the caller's scope is).
  class DurableAwaitable;
  DurableAwaitable wait_durable(Position pos);
  // After kBusy: resumes when a write completes or a segment is prepared.
  runtime::Task<base::Status> wait_writable();

  // Entries [lo, hi) of a group, stopping early after bytes_max payload bytes
  // (at least one entry). Recent ones from memory, older ones from disk.
  // kNotFound if lo is compacted away or beyond the last index.
  runtime::Task<base::Result<std::vector<Entry>>> read_entries(uint64_t group, uint64_t lo,
                                                               uint64_t hi, uint64_t bytes_max);

  // Synchronous variant for LogStorage-style callers (raft/storage.h): the
  // same entries if every one is in memory; kUnavailable (nothing appended)
  // if one would need a disk read, then use read_entries.
  base::Status read_cached(uint64_t group, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                           std::vector<Entry>& out) const;

  const GroupLog* group(uint64_t id) const { return engine_.group(id); }
  Position durable_position() const { return engine_.durable_position(); }
  Position append_position() const { return engine_.append_position(); }
  const LogEngine& engine() const { return engine_; }
  WalStats stats() const;
  const std::string& dir() const { return dir_; }

  void set_pinned_callback(PinnedCallback cb) { on_pinned_ = std::move(cb); }
  // Drops segments nothing needs (checkpointing hard states and compaction
  // marks forward first). Runs by itself after each rotation; callable.
  runtime::Task<base::Status> reclaim();

  // Makes everything appended durable, stops background work, closes files.
  runtime::Task<void> close();

 private:
  Wal(std::string dir, const WalOptions& opts, RecoveryResult rec, uint64_t log_id);
  void after_append();
  void kick_flusher();
  runtime::Task<void> flusher();
  runtime::Task<void> preparer();
  runtime::Task<void> write_one(WriteRequest req);
  runtime::Task<base::Status> prepare_segment(uint64_t seq);
  void on_durable_advance();
  void wake_writable();
  void background_done();
  int fd_of(uint64_t seq) const;

  std::string dir_;
  int dir_fd_ = -1;
  LogEngine engine_;
  const bool linked_sync_;                // WalOptions::linked_sync and the kernel supports it
  std::map<uint64_t, int> fds_;           // segment seq -> O_DIRECT fd
  std::map<uint64_t, uint32_t> readers_;  // segment seq -> reads in flight
  std::vector<std::string> free_files_;
  uint64_t next_free_ = 0;
  PinnedCallback on_pinned_;
  WalStats stats_;

  // Background tasks and their wake-ups (single waiter each).
  struct Signal {
    runtime::Schedulable s;
    bool waiting = false;
    bool pending = false;
  };
  struct SignalAwaitable;
  SignalAwaitable wait_signal(Signal& sig);
  void raise(Signal& sig);
  Signal flush_signal_;
  Signal prepare_signal_;
  Signal close_signal_;
  boost::intrusive::list<runtime::Schedulable, boost::intrusive::constant_time_size<false>>
      writable_waiters_;
  bool urgent_ = false;  // a hard state is waiting: no batch delay
  bool reclaiming_ = false;
  bool closing_ = false;
  uint32_t background_ = 0;  // flusher, preparer, writes and reclaims running
  uint64_t last_active_seq_ = 0;

  using WaiterHook =
      boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

 public:
  struct Waiter : WaiterHook {
    Position pos = 0;
    runtime::Schedulable sched;
    bool cancelled = false;
  };

 private:
  // Sorted by position. Positions are handed out in increasing order and
  // usually awaited in that order, so insertion walks back O(1) steps.
  boost::intrusive::list<Waiter, boost::intrusive::constant_time_size<false>> waiters_;
  void add_waiter(Waiter& w);
  friend class DurableAwaitable;
};

class Wal::DurableAwaitable : private runtime::Cancellable {
 public:
  DurableAwaitable(Wal& wal, Position pos) : wal_(wal) { w_.pos = pos; }
  DurableAwaitable(const DurableAwaitable&) = delete;
  DurableAwaitable& operator=(const DurableAwaitable&) = delete;
  bool await_ready() const { return wal_.durable_position() >= w_.pos; }
  template <typename P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if constexpr (runtime::detail::ScopedPromise<P>) {
      runtime::CancelScope* s = h.promise().scope_;
      if (s != nullptr && !s->add(*this)) {
        w_.cancelled = true;
        return false;
      }
    }
    w_.sched.handle = h;
    wal_.add_waiter(w_);
    return true;
  }
  base::Status await_resume() {
    Cancellable::unlink();
    if (w_.cancelled)
      return base::Error(base::ErrorKind::kCancelled, "wait for durability cancelled");
    return {};
  }

 private:
  void cancel() override {
    if (!w_.is_linked()) return;
    w_.unlink();
    w_.cancelled = true;
    runtime::Reactor::here().schedule(w_.sched);
  }
  Wal& wal_;
  Waiter w_;
};

inline Wal::DurableAwaitable Wal::wait_durable(Position pos) {
  return DurableAwaitable(*this, pos);
}

}  // namespace nori::wal
