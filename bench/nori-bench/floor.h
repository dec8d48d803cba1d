// The floor nori-bench measures in the same run as the cluster: what one
// commit cannot beat on this machine.
//   - loopback round trip: a 64-byte ping-pong over TCP (TCP_NODELAY) between
//     two threads, the same path peer messages take;
//   - durable 4 KiB write latency on the data directory's device, O_DIRECT,
//     queue depth 1: with O_DSYNC, and as write + fdatasync; measured by as
//     many writers at once as the cluster has nodes (each node writes its own
//     WAL), and by one writer alone. On this project's VM the two differ by
//     30x (about 0.12 ms with three writers, 4 ms alone: an idle guest waits
//     a timer tick for the completion), so the floor uses the concurrent
//     figure, which is the condition the cluster runs in and the lower one.
// Commit floor = round trip + the faster of the two writes (the leader's write
// runs in parallel with the followers', so one of each is on the path).
// sched_slice_us > 0: every floor thread asks for the EEVDF slice the node
// reactors get (runtime::RuntimeConfig::sched_slice_us), so the floor and the
// cluster wait for the scheduler on the same terms (docs/bench.md,
// "Scheduler wake-up latency"); 0 = the kernel's default.
#pragma once

#include <string>

#include "runtime/base/result.h"
#include "runtime/metrics.h"

namespace nori::bench {

struct FloorResult {
  runtime::metrics::HistogramSnapshot rtt;
  runtime::metrics::HistogramSnapshot dsync;
  runtime::metrics::HistogramSnapshot fdatasync;
  runtime::metrics::HistogramSnapshot dsync_alone;
  runtime::metrics::HistogramSnapshot fdatasync_alone;
  uint64_t floor_ns() const;
};

base::Result<FloorResult> measure_floor(const std::string& dir, int rtt_rounds, int disk_writes,
                                        unsigned writers, uint32_t sched_slice_us);

}  // namespace nori::bench
