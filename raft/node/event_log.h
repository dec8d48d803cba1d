// reactor-ok-file: the event writer thread and its queue; reactors only push a line under
// a lock held for the push (EventLog::append)
// EventLog: node events written as JSON lines to a file by a thread of its
// own, so that no reactor ever waits for the file (internal to raft::Node;
// RaftConfig::events_jsonl_path).
//
// What it is for: events are published on the group's core inside its round
// (core_host.cc); a blocking write and fflush there per event would stall
// every group of that core behind the disk (or behind a slow pipe: the file
// may be a FIFO read by a tool). Here a reactor only appends the line to a
// bounded queue under a lock held for that push; the writer thread takes
// everything queued, writes it and flushes once per batch.
//
// Bounded: at most lines_max lines wait. When the queue is full a line is
// dropped (never a wait on a reactor) and counted; the file then gets one
// {"event":"EventsDropped","count":N} line once there is room, so a reader
// knows the stream has a gap. Subscribers (NodeCallbacks::on_event) are not
// affected: they are called directly.
//
// Durability: none promised. Lines reach the OS after each batch (fflush),
// not the disk (no fsync); a crash may lose the last ones.
//
// Threading: append() and dropped() from any thread; stop() (and the
// destructor) from a thread that is not a reactor: it drains the queue,
// flushes, closes the file and joins the writer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/base/result.h"

namespace nori::raft {

class EventLog {
 public:
  static constexpr size_t kLinesMaxDefault = 65536;

  // Opens (appends to) path. kIo if it cannot be opened.
  static base::Result<std::unique_ptr<EventLog>> open(const std::string& path,
                                                      size_t lines_max = kLinesMaxDefault);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Queues one line (without its newline). false: the queue was full and
  // the line was dropped (counted).
  bool append(std::string line);
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  // Writes everything queued, closes the file, joins the writer. Idempotent.
  void stop();

 private:
  EventLog(std::FILE* f, std::string path, size_t lines_max);
  void main();

  std::FILE* file_;
  const std::string path_;
  const size_t lines_max_;
  std::mutex mu_;  // reactor-ok: held only to push or swap the queue, never across I/O
  std::condition_variable cv_;
  std::vector<std::string> queue_;  // bounded: lines_max_
  uint64_t unreported_drops_ = 0;   // dropped since the last EventsDropped line (under mu_)
  bool stopping_ = false;
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace nori::raft
