// reactor-ok-file: the snapshot worker thread itself (never a reactor); the reactor only
// pushes a job under a lock held for the push
// SnapshotWorker: one background thread per core for the snapshot file work
// that must not block the reactor (internal to raft::Node).
//
// What runs here: writing a snapshot the state machine captured (the view's
// write() streams the whole state: seconds for a large one), finishing a
// received file (fdatasync, whole-file digest, rename, directory fsync), and
// copying a snapshot the application hands to install_snapshot. Per-chunk
// work of a transfer (a read or write of snapshot_chunk_bytes) stays on the
// reactor: it is small, and it is counted (docs/node.md, "Snapshots").
//
//   worker.run<base::Result<File>>(
//       [=] { return write_it(); },                 // on the worker thread
//       [=](base::Result<File> r) { use(r); });     // then on the home reactor
//
// Ordering: jobs run one at a time in submission order. Every accepted job's
// `done` runs exactly once on the home reactor (Reactor::inject), even after
// stop(): stop() sets cancelled() (long jobs poll it and give up with
// kShuttingDown), lets the queue drain, and joins the thread. The home
// reactor must still be running when stop() returns for the `done`s to run
// (CoreHost::close calls stop() before the runtime stops).
//
// Bounded: at most jobs_max queued jobs; run() returns false beyond that
// (the caller treats it as kBusy and retries later).
//
// Threading: run() and stop() on the home reactor only; the job bodies on
// the worker thread; they share nothing else with the reactor except what
// the job captured (which the job owns until it hands it back in `done`).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "runtime/reactor.h"

namespace nori::raft {

class SnapshotWorker {
 public:
  SnapshotWorker(runtime::Reactor& home, size_t jobs_max);
  ~SnapshotWorker();
  SnapshotWorker(const SnapshotWorker&) = delete;
  SnapshotWorker& operator=(const SnapshotWorker&) = delete;

  // Runs work() on the worker thread, then done(result) on the home reactor.
  // false if the queue is full or the worker is stopped (done never runs).
  template <typename R>
  bool run(std::function<R()> work, std::function<void(R)> done) {
    runtime::Reactor* home = &home_;
    return submit([home, work = std::move(work), done = std::move(done)] {
      auto r = std::make_shared<R>(work());
      home->inject([done, r] { done(std::move(*r)); });
    });
  }

  // Long jobs poll this and stop early (kShuttingDown).
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  size_t queued() const;

  // See the header comment. Idempotent.
  void stop();

 private:
  bool submit(std::function<void()> job);
  void main();

  runtime::Reactor& home_;
  const size_t jobs_max_;
  mutable std::mutex mu_;  // reactor-ok: held only to push/pop one job, never across I/O
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::atomic<bool> cancelled_{false};
  std::thread thread_;
};

}  // namespace nori::raft
