#include "raft/config.h"

#include <algorithm>

namespace nori::raft {

namespace {
constexpr uint32_t kDriftPpmMax = 100'000;  // 10%: beyond that a lease is meaningless
constexpr int64_t kPpm = 1'000'000;
}  // namespace

base::Status Config::validate() const {
  using base::ErrorKind;
  if (id == kNoNode) return base::err(ErrorKind::kInvalidArgument, "config: id must be non-zero");
  if (std::find(voters.begin(), voters.end(), kNoNode) != voters.end()) {
    return base::err(ErrorKind::kInvalidArgument, "config: voter id 0");
  }
  for (NodeId l : learners) {
    if (l == kNoNode || std::find(voters.begin(), voters.end(), l) != voters.end()) {
      return base::err(ErrorKind::kInvalidArgument, "config: learner {} is id 0 or a voter", l);
    }
  }
  if (heartbeat_ms == 0) return base::err(ErrorKind::kInvalidArgument, "config: heartbeat_ms 0");
  if (election_timeout_min_ms <= heartbeat_ms) {
    return base::err(ErrorKind::kInvalidArgument,
                     "config: election_timeout_min_ms {} must exceed heartbeat_ms {}",
                     election_timeout_min_ms, heartbeat_ms);
  }
  if (election_timeout_max_ms <= election_timeout_min_ms) {
    return base::err(ErrorKind::kInvalidArgument,
                     "config: election_timeout_max_ms {} must exceed election_timeout_min_ms {}",
                     election_timeout_max_ms, election_timeout_min_ms);
  }
  if (max_clock_drift_ppm >= kDriftPpmMax) {
    return base::err(ErrorKind::kInvalidArgument, "config: max_clock_drift_ppm {} >= {}",
                     max_clock_drift_ppm, kDriftPpmMax);
  }
  if (lease_ms < heartbeat_ms) {
    // A lease shorter than the heartbeat interval would lapse between rounds:
    // not unsafe, just useless; reject it as a likely mistake.
    return base::err(ErrorKind::kInvalidArgument, "config: lease_ms {} < heartbeat_ms {}", lease_ms,
                     heartbeat_ms);
  }
  if (inflight_msgs_max == 0 || inflight_bytes_max == 0 || append_bytes_max == 0 ||
      append_entries_max == 0 || uncommitted_bytes_max == 0 || proposals_pending_max == 0 ||
      reads_pending_max == 0 || apply_batch_bytes_max == 0) {
    return base::err(ErrorKind::kInvalidArgument, "config: a flow-control bound is 0");
  }
  return {};
}

Duration Config::widen_for_drift(Duration remote) const {
  // Waiting d on this clock lasts at least d/(1+rho) real time; the remote
  // duration r lasts at most r/(1-rho) real time. d = r (1+rho)/(1-rho),
  // rounded up.
  if (remote.count() <= 0) return Duration(0);
  __int128 num = static_cast<__int128>(remote.count()) * (kPpm + max_clock_drift_ppm);
  __int128 den = kPpm - max_clock_drift_ppm;
  return Duration(static_cast<int64_t>((num + den - 1) / den));
}

Duration Config::promise_window() const {
  return widen_for_drift(std::chrono::milliseconds(lease_ms)) +
         std::chrono::milliseconds(lease_margin_ms);
}

Duration Config::check_quorum_window() const {
  return std::chrono::milliseconds(check_quorum_ms != 0 ? check_quorum_ms
                                                        : election_timeout_max_ms);
}

}  // namespace nori::raft
