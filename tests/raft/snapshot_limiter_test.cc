// Global flow control of snapshot transfers (synthetic times: no clock).
#include "raft/snapshot/limiter.h"

#include <gtest/gtest.h>

namespace nori::raft::snapshot {
namespace {

using namespace std::chrono_literals;

const TimePoint kT0 = base::time_from_ns(1'000'000'000);

TEST(TransferLimiter, ConcurrentTransfersAreBounded) {
  TransferLimiter l(2, 1 << 20, 1 << 20, kT0);
  EXPECT_TRUE(l.try_start({1, 2, 100, 3}));
  EXPECT_TRUE(l.try_start({1, 3, 100, 3}));
  EXPECT_FALSE(l.try_start({2, 2, 50, 1})) << "a third concurrent transfer was admitted";
  EXPECT_TRUE(l.try_start({1, 2, 100, 3})) << "a running transfer asking again";
  EXPECT_EQ(l.running(), 2u);
  l.finish({1, 3, 100, 3});
  EXPECT_TRUE(l.try_start({2, 2, 50, 1}));
}

TEST(TransferLimiter, ByteRateIsSharedAndEnforced) {
  // 1 MB/s, 100 kB burst.
  TransferLimiter l(8, 1'000'000, 100'000, kT0);
  EXPECT_EQ(l.reserve(100'000, kT0), kT0) << "the burst is available at once";
  // The next 100 kB (from any transfer) wait 100 ms of refill.
  EXPECT_EQ(l.reserve(100'000, kT0), kT0 + 100ms);
  // And the one after queues behind it.
  EXPECT_EQ(l.reserve(100'000, kT0), kT0 + 200ms);
  // Over 10 simulated seconds, no more than rate x time + burst is granted.
  TimePoint t = kT0 + 200ms;
  uint64_t sent = 0;
  while (t < kT0 + 10s) {
    TimePoint at = l.reserve(50'000, t);
    t = std::max(t, at);
    sent += 50'000;
  }
  EXPECT_LE(sent, 10'000'000u + 100'000u);
  EXPECT_GE(sent, 9'000'000u) << "the limiter starved the sender";
}

TEST(TransferLimiter, IdleTimeRefillsOnlyUpToTheBurst) {
  TransferLimiter l(1, 1'000'000, 10'000, kT0);
  (void)l.reserve(10'000, kT0);
  // An hour idle does not bank an hour of bytes.
  TimePoint later = kT0 + 3600s;
  EXPECT_EQ(l.reserve(10'000, later), later);
  EXPECT_GT(l.reserve(10'000, later), later);
}

}  // namespace
}  // namespace nori::raft::snapshot
