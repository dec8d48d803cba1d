#include "raft/config.h"

#include <gtest/gtest.h>

namespace nori::raft {
namespace {

using namespace std::chrono_literals;

Config valid() {
  Config c;
  c.id = 1;
  c.voters = {1, 2, 3};
  return c;
}

TEST(RaftConfig, DefaultPromiseWindowCoversTheLeaseUnderMaximumDrift) {
  Config c = valid();
  // W = 2000 ms x (1 + 0.001) / (1 - 0.001) + 100 ms, rounded up to the ns.
  EXPECT_EQ(c.promise_window().count(), 2'104'004'005);
  // The follower's W, at its slowest real rate, outlasts the leader's lease
  // at the leader's fastest: W / (1 + rho) >= L / (1 - rho).
  double rho = c.max_clock_drift_ppm / 1e6;
  EXPECT_GE(c.promise_window().count() / (1 + rho), 2e9 / (1 - rho));
}

TEST(RaftConfig, WideningForDriftRoundsUp) {
  Config c = valid();
  EXPECT_EQ(c.widen_for_drift(1s).count(), 1'002'002'003);
  EXPECT_EQ(c.widen_for_drift(Duration(0)).count(), 0);
  EXPECT_EQ(c.widen_for_drift(Duration(-5)).count(), 0);
  c.max_clock_drift_ppm = 0;
  EXPECT_EQ(c.widen_for_drift(1s), 1s);
}

TEST(RaftConfig, ValidateRejectsUnsafeOrUselessSettings) {
  EXPECT_TRUE(valid().validate().ok());
  Config c = valid();
  c.id = kNoNode;
  EXPECT_FALSE(c.validate().ok());
  c = valid();
  c.election_timeout_min_ms = c.heartbeat_ms;
  EXPECT_FALSE(c.validate().ok());
  c = valid();
  c.election_timeout_max_ms = c.election_timeout_min_ms;
  EXPECT_FALSE(c.validate().ok());
  c = valid();
  c.max_clock_drift_ppm = 100'000;
  EXPECT_FALSE(c.validate().ok());
  c = valid();
  c.inflight_msgs_max = 0;
  EXPECT_FALSE(c.validate().ok());
  c = valid();
  c.voters.push_back(kNoNode);
  EXPECT_FALSE(c.validate().ok());
  c = valid();
  c.heartbeat_ms = 2;  // shorter than the default append hold: the hold is capped, not refused
  c.election_timeout_min_ms = 10;
  c.election_timeout_max_ms = 20;
  c.lease_ms = 2;
  EXPECT_TRUE(c.validate().ok()) << c.validate().error().to_string();
}

}  // namespace
}  // namespace nori::raft
