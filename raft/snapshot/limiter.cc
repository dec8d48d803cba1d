#include "raft/snapshot/limiter.h"

#include <algorithm>
#include <cmath>

#include "runtime/base/assert.h"

namespace nori::raft::snapshot {

TransferLimiter::TransferLimiter(uint32_t transfers_max, uint64_t bytes_per_s, uint64_t burst_bytes,
                                 TimePoint now)
    : transfers_max_(transfers_max),
      bytes_per_ns_(static_cast<double>(bytes_per_s) / 1e9),
      burst_(static_cast<double>(burst_bytes)),
      tokens_(static_cast<double>(burst_bytes)),
      last_(now) {
  NORI_ASSERT(transfers_max > 0 && bytes_per_s > 0 && burst_bytes > 0,
              "transfer limits must be positive");
}

bool TransferLimiter::try_start(const TransferKey& key) {
  if (running_.count(key)) return true;
  if (running_.size() >= transfers_max_) return false;
  running_.insert(key);
  return true;
}

void TransferLimiter::finish(const TransferKey& key) {
  running_.erase(key);
}

void TransferLimiter::refill(TimePoint now) {
  if (now <= last_) return;
  double add = static_cast<double>((now - last_).count()) * bytes_per_ns_;
  tokens_ = std::min(burst_, tokens_ + add);
  last_ = now;
}

TimePoint TransferLimiter::reserve(uint64_t bytes, TimePoint now) {
  refill(now);
  tokens_ -= static_cast<double>(bytes);
  if (tokens_ >= 0) return now;
  // The debt is paid back at the refill rate.
  auto wait_ns = static_cast<int64_t>(std::ceil(-tokens_ / bytes_per_ns_));
  return now + Duration(wait_ns);
}

}  // namespace nori::raft::snapshot
