// Tasks, timers and the single-reactor basics.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <vector>

#include "runtime/combinators.h"
#include "runtime/runtime.h"
#include "tests/runtime/test_util.h"

#if defined(NORI_USE_MIMALLOC)
#include <mimalloc.h>
#endif

namespace nori::runtime {
namespace {

using namespace std::chrono_literals;

Task<int> leaf(int v) {
  co_return v + 1;
}
Task<int> middle(int v) {
  int a = co_await leaf(v);
  int b = co_await leaf(a);
  co_return b;
}

TEST(Task, NestedAwaitsReturnValues) {
  Runtime rt({.cores = 1});
  EXPECT_EQ(rt.block_on(0, [] { return middle(1); }), 3);
}

Task<int> deep(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await deep(n - 1);
}

TEST(Task, DeepAwaitChainDoesNotOverflowTheStack) {
  Runtime rt({.cores = 1});
  EXPECT_EQ(rt.block_on(0, [] { return deep(100000); }), 100000);
}

Task<base::Result<int>> fails() {
  co_return base::err(base::ErrorKind::kBusy, "full {}", 3);
}
Task<base::Result<int>> propagates() {
  NORI_CO_ASSIGN_OR_RETURN(int v, co_await fails());
  co_return v + 1;
}

TEST(Task, ErrorResultsPropagateThroughAwaits) {
  Runtime rt({.cores = 1});
  auto r = rt.block_on(0, [] { return propagates(); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kBusy);
  EXPECT_EQ(r.error().message(), "full 3");
}

Task<int> throws() {
  throw std::runtime_error("boom");
  co_return 1;
}

TEST(Task, ExceptionIsRethrownAtTheAwait) {
  Runtime rt({.cores = 1});
  EXPECT_THROW(rt.block_on(0, [] { return throws(); }), std::runtime_error);
}

TEST(Task, DestroyingASuspendedTaskNeverResumesIt) {
  Runtime rt({.cores = 1});
  bool resumed = false;
  rt.block_on(0, [&]() -> Task<void> {
    auto sleeper = [&]() -> Task<void> {
      auto st = co_await sleep_for(2ms);
      (void)st;
      resumed = true;
    };
    Task<void> t = sleeper();
    detail::start_child(t, nullptr);
    co_await yield();  // sleeper is now suspended on its timer
    CO_ASSERT_FALSE(t.done());
    t = Task<void>();  // destroy: the timer node unlinks itself
    EXPECT_TRUE((co_await sleep_for(10ms)).ok());
  });
  EXPECT_FALSE(resumed);
}

TEST(Task, UnstartedTaskIsDestroyedWithoutRunning) {
  bool ran = false;
  {
    auto t = [&]() -> Task<void> {
      ran = true;
      co_return;
    }();
    (void)t;
  }
  EXPECT_FALSE(ran);
}

TEST(Task, WhenAllWaitsForEveryChildAndKeepsOrder) {
  Runtime rt({.cores = 1});
  auto v = rt.block_on(0, []() -> Task<std::vector<int>> {
    std::vector<Task<int>> ts;
    for (int i = 0; i < 10; ++i) {
      ts.push_back([](int i) -> Task<int> {
        auto st = co_await sleep_for(std::chrono::microseconds(100 * (10 - i)));
        (void)st;
        co_return i;
      }(i));
    }
    co_return co_await when_all(std::move(ts));
  });
  ASSERT_EQ(v.size(), 10u);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(v[i], i);
}

TEST(Task, WithTimeoutReturnsValueWhenInTime) {
  Runtime rt({.cores = 1});
  auto r = rt.block_on(
      0, []() -> Task<base::Result<int>> { co_return co_await with_timeout(1s, leaf(1)); });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 2);
}

TEST(Task, WithTimeoutCancelsASleepPastTheDeadline) {
  Runtime rt({.cores = 1});
  auto st = rt.block_on(0, []() -> Task<base::Status> {
    co_return co_await with_timeout(
        1ms, []() -> Task<base::Status> { co_return co_await sleep_for(1h); }());
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind(), base::ErrorKind::kTimedOut);
}

TEST(Task, CancellingAParentScopeCancelsNestedTimeouts) {
  Runtime rt({.cores = 1});
  auto kind = rt.block_on(0, []() -> Task<base::ErrorKind> {
    CancelScope outer;
    auto inner = []() -> Task<base::Status> {
      co_return co_await with_timeout(
          1h, []() -> Task<base::Status> { co_return co_await sleep_for(1h); }());
    }();
    inner.set_scope(&outer);
    Timer t([&] { outer.cancel(); });
    t.arm_in(1ms);
    auto st = co_await std::move(inner);
    co_return st.ok() ? base::ErrorKind::kIo : st.error().kind();
  });
  EXPECT_EQ(kind, base::ErrorKind::kCancelled);
}

TEST(Task, DestroyingAWithTimeoutMidFlightNeverResumesIt) {
  Runtime rt({.cores = 1});
  bool resumed = false;
  rt.block_on(0, [&]() -> Task<void> {
    auto outer = [&]() -> Task<void> {
      auto st = co_await with_timeout(
          1h, [&]() -> Task<base::Status> { co_return co_await sleep_for(1h); }());
      (void)st;
      resumed = true;
    };
    Task<void> t = outer();
    detail::start_child(t, nullptr);
    co_await yield();
    CO_ASSERT_FALSE(t.done());
    // Tears down with_timeout's frame (scope and timer first, then the inner
    // task whose sleep is still registered in that scope).
    t = Task<void>();
    EXPECT_TRUE((co_await sleep_for(1ms)).ok());
  });
  EXPECT_FALSE(resumed);
}

// ---- timers ----

TEST(Timers, FireInDeadlineOrderNotArmingOrder) {
  Runtime rt({.cores = 1});
  auto order = rt.block_on(0, []() -> Task<std::vector<int>> {
    std::vector<int> order;
    const auto base_time = base::BootClock::now() + 2ms;
    std::vector<int> idx(50);
    for (int i = 0; i < 50; ++i)
      idx[i] = i;
    std::shuffle(idx.begin(), idx.end(), std::mt19937(7));
    std::vector<std::unique_ptr<Timer>> timers;
    for (int i : idx) {
      timers.push_back(std::make_unique<Timer>([&order, i] { order.push_back(i); }));
      timers.back()->arm_at(base_time + std::chrono::microseconds(10 * i));
    }
    // Wait for all of them without assuming how long arming took.
    while (order.size() < 50)
      EXPECT_TRUE((co_await sleep_for(1ms)).ok());
    co_return order;
  });
  ASSERT_EQ(order.size(), 50u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

TEST(Timers, CancelledTimerNeverFires) {
  Runtime rt({.cores = 1});
  int fired = rt.block_on(0, []() -> Task<int> {
    int fired = 0;
    Timer a([&] { ++fired; });
    Timer b([&] { fired += 10; });
    a.arm_in(1ms);
    b.arm_in(1ms);
    b.cancel();
    EXPECT_FALSE(b.armed());
    EXPECT_TRUE((co_await sleep_for(3ms)).ok());
    co_return fired;
  });
  EXPECT_EQ(fired, 1);
}

TEST(Timers, TenThousandTimersEachFireOnceInOrder) {
  Runtime rt({.cores = 1});
  auto ok = rt.block_on(0, []() -> Task<bool> {
    constexpr int kN = 10000;
    std::mt19937_64 rng(42);
    const auto t0 = base::BootClock::now();
    std::vector<base::TimePoint> deadlines(kN);
    std::vector<int> fired(kN, 0);
    std::vector<base::TimePoint> fire_deadlines;
    std::vector<std::unique_ptr<Timer>> timers;
    timers.reserve(kN);
    for (int i = 0; i < kN; ++i) {
      deadlines[i] = t0 + std::chrono::microseconds(rng() % 20000);
      timers.push_back(std::make_unique<Timer>([&, i] {
        ++fired[i];
        fire_deadlines.push_back(deadlines[i]);
      }));
      timers.back()->arm_at(deadlines[i]);
    }
    // Re-arming half of them moves them, it does not duplicate them.
    for (int i = 0; i < kN; i += 2)
      timers[i]->arm_at(deadlines[i]);
    // Wait until the last deadline has passed and one more loop round ran
    // (no assumption about how long arming 10 000 timers took).
    EXPECT_TRUE((co_await sleep_until(t0 + 20ms)).ok());
    EXPECT_TRUE((co_await sleep_for(1ms)).ok());
    bool all_once = std::all_of(fired.begin(), fired.end(), [](int f) { return f == 1; });
    co_return all_once&& std::is_sorted(fire_deadlines.begin(), fire_deadlines.end());
  });
  EXPECT_TRUE(ok);
}

// ---- allocator ----

#if defined(NORI_USE_MIMALLOC)
TEST(Allocator, MimallocServesEveryAllocation) {
  void* p = std::malloc(100);
  auto* q = new std::vector<int>(1000);
  EXPECT_TRUE(mi_is_in_heap_region(p));
  EXPECT_TRUE(mi_is_in_heap_region(q));
  EXPECT_TRUE(mi_is_in_heap_region(q->data()));
  delete q;
  std::free(p);
  // And coroutine frames on reactor threads.
  Runtime rt({.cores = 1});
  bool in_heap = rt.block_on(0, []() -> Task<bool> {
    auto* x = new int(3);
    bool r = mi_is_in_heap_region(x);
    delete x;
    co_return r;
  });
  EXPECT_TRUE(in_heap);
}
#endif

}  // namespace
}  // namespace nori::runtime
