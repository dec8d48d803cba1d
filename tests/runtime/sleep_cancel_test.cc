// A sleep whose timer has fired but whose coroutine has not resumed yet can
// still see its scope cancelled in between (another timer callback of the same
// round, or a ready coroutine ahead of it). The sleep must then complete
// exactly once.
#include <gtest/gtest.h>

#include <thread>

#include "runtime/combinators.h"
#include "runtime/runtime.h"

namespace nori::runtime {
namespace {

using namespace std::chrono_literals;

TEST(Sleep, CancelAfterTimerFiredBeforeResumeSchedulesOnce) {
  Runtime rt({.cores = 1});
  int resumed = 0;
  rt.block_on(0, [&]() -> Task<void> {
    CancelScope scope(nullptr);
    auto sleeper = [&]() -> Task<void> {
      auto st = co_await sleep_for(1ms);
      (void)st;
      ++resumed;
    };
    Task<void> t = sleeper();
    detail::start_child(t, &scope);
    co_await yield();  // the sleeper is now suspended on its 1 ms timer
    // Fires in the same timer step as the sleep, just after it: the sleeper
    // is then scheduled but not yet resumed when its scope is cancelled.
    Timer canceller([&] { scope.cancel(); });
    canceller.arm_in(1ms + 1us);
    // Block the reactor thread past both deadlines so that one timer step
    // sees both expired.
    std::this_thread::sleep_for(5ms);
    while (!t.done())
      (void)co_await sleep_for(1ms);
  });
  EXPECT_EQ(resumed, 1);
}

}  // namespace
}  // namespace nori::runtime
