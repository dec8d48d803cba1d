// reactor-ok-file: the snapshot worker thread itself (never a reactor); the reactor only
// pushes a job under a lock held for the push
#include "raft/node/snapshot_worker.h"

namespace nori::raft {

SnapshotWorker::SnapshotWorker(runtime::Reactor& home, size_t jobs_max)
    : home_(home), jobs_max_(jobs_max), thread_([this] { main(); }) {}

SnapshotWorker::~SnapshotWorker() {
  stop();
}

size_t SnapshotWorker::queued() const {
  std::lock_guard lk(mu_);
  return jobs_.size();
}

bool SnapshotWorker::submit(std::function<void()> job) {
  {
    std::lock_guard lk(mu_);
    if (stopping_ || jobs_.size() >= jobs_max_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void SnapshotWorker::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cancelled_.store(true, std::memory_order_relaxed);
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void SnapshotWorker::main() {
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
      // Drain before exiting: every accepted job's `done` must run.
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace nori::raft
