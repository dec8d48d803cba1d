// reactor-ok-file: the event writer thread itself (never a reactor); reactors only push a
// line under a lock held for the push
#include "raft/node/event_log.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace nori::raft {

base::Result<std::unique_ptr<EventLog>> EventLog::open(const std::string& path, size_t lines_max) {
  NORI_ASSERT(lines_max > 0);
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    return base::err(base::ErrorKind::kIo, "open {}: {}", path, std::strerror(errno));
  }
  return std::unique_ptr<EventLog>(new EventLog(f, path, lines_max));
}

EventLog::EventLog(std::FILE* f, std::string path, size_t lines_max)
    : file_(f), path_(std::move(path)), lines_max_(lines_max), thread_([this] { main(); }) {}

EventLog::~EventLog() {
  stop();
}

bool EventLog::append(std::string line) {
  {
    std::lock_guard lk(mu_);
    if (stopping_ || queue_.size() >= lines_max_) {
      ++unreported_drops_;
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    queue_.push_back(std::move(line));
  }
  cv_.notify_one();
  return true;
}

void EventLog::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (file_ != nullptr) {
    std::fclose(file_);
    file_ = nullptr;
  }
}

void EventLog::main() {
  std::vector<std::string> batch;
  bool told = false;  // a write error is reported once
  while (true) {
    uint64_t drops = 0;
    bool last = false;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      batch.swap(queue_);  // queue_ takes batch's (empty) buffer: no allocation in steady state
      drops = std::exchange(unreported_drops_, 0);
      last = stopping_;
    }
    // The gap is written where it happened: after the lines queued before
    // the drops (drops happen only while the queue is full, i.e. after them).
    for (const std::string& line : batch) {
      std::fputs(line.c_str(), file_);
      std::fputc('\n', file_);
    }
    if (drops > 0) fmt::print(file_, "{{\"event\":\"EventsDropped\",\"count\":{}}}\n", drops);
    batch.clear();
    if (std::fflush(file_) != 0 && !told) {
      told = true;
      fmt::print(stderr, "nori: writing events to {}: {}\n", path_, std::strerror(errno));
    }
    if (last) {
      std::lock_guard lk(mu_);
      if (queue_.empty()) return;  // drained (append refuses once stopping_)
    }
  }
}

}  // namespace nori::raft
