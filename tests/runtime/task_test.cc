#include <gtest/gtest.h>

#include "runtime/runtime.h"

namespace nori::runtime {
namespace {

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

TEST(Task, SleepForResumesAfterTimer) {
  Runtime rt({.cores = 1});
  auto st = rt.block_on(0, []() -> Task<base::Status> {
    co_return co_await sleep_for(std::chrono::milliseconds(2));
  });
  EXPECT_TRUE(st.ok());
}

TEST(Task, SubmitToRunsOnTargetCore) {
  Runtime rt({.cores = 2});
  unsigned c = rt.block_on(
      0, []() -> Task<unsigned> { co_return co_await submit_to(1, [] { return this_core(); }); });
  EXPECT_EQ(c, 1u);
}

}  // namespace
}  // namespace nori::runtime
