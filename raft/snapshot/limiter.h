// TransferLimiter: the global flow control of outgoing snapshot transfers on
// one node (or one core): at most transfers_max concurrent transfers, and a
// byte rate shared by all of them (a token bucket of burst_bytes refilled at
// bytes_per_s), so that catching up a follower cannot starve the replication
// traffic of thousands of groups.
//
// The driver asks try_start() before the first chunk of a transfer (a
// refused transfer waits: the core re-drives it after its timeout), reserves
// every chunk's bytes with reserve(), sending only once the returned time
// has come, and calls finish() when the core ends the transfer
// (SnapshotSend::finished). Times are the caller's clock: no clock is read
// here. Not thread-safe: one per reactor.
#pragma once

#include <cstdint>
#include <set>
#include <tuple>

#include "raft/types.h"

namespace nori::raft::snapshot {

struct TransferKey {
  GroupId group = 0;
  NodeId to = kNoNode;
  Index index = 0;
  Term term = 0;
  auto operator<=>(const TransferKey&) const = default;
};

class TransferLimiter {
 public:
  TransferLimiter(uint32_t transfers_max, uint64_t bytes_per_s, uint64_t burst_bytes,
                  TimePoint now);

  // Admits a transfer; true if it is (or already was) running.
  bool try_start(const TransferKey& key);
  void finish(const TransferKey& key);
  size_t running() const { return running_.size(); }

  // Takes `bytes` from the bucket. Returns the time at which they may be
  // sent: `now` when the bucket had them, later otherwise (the bucket goes
  // into debt, so concurrent callers queue behind each other fairly).
  TimePoint reserve(uint64_t bytes, TimePoint now);

 private:
  void refill(TimePoint now);
  uint32_t transfers_max_;
  double bytes_per_ns_;
  double burst_;
  double tokens_;  // may be negative (debt)
  TimePoint last_;
  std::set<TransferKey> running_;
};

}  // namespace nori::raft::snapshot
