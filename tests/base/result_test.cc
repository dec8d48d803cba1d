#include "runtime/base/result.h"

#include <gtest/gtest.h>

namespace nori::base {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return err(ErrorKind::kInvalidArgument, "{} is not positive", v);
  return v;
}

Result<int> doubled(int v) {
  NORI_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return 2 * x;
}

Status check(int v) {
  NORI_TRY(parse_positive(v));
  return {};
}

TEST(ResultTest, ErrorPropagatesThroughAssignOrReturn) {
  EXPECT_EQ(*doubled(4), 8);
  auto r = doubled(-1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(r.error().to_string(), "invalid argument: -1 is not positive");
}

TEST(ResultTest, StatusCarriesTheFirstError) {
  EXPECT_TRUE(check(1).ok());
  EXPECT_EQ(check(0).error().kind(), ErrorKind::kInvalidArgument);
}

TEST(ResultTest, OnlyOutcomeUnknownMayHaveTakenEffect) {
  EXPECT_TRUE(Error(ErrorKind::kOutcomeUnknown, "").may_have_taken_effect());
  EXPECT_FALSE(Error(ErrorKind::kTimedOut, "").may_have_taken_effect());
  EXPECT_FALSE(Error(ErrorKind::kNotLeader, "", 3).may_have_taken_effect());
  EXPECT_EQ(Error(ErrorKind::kNotLeader, "", 3).hint(), 3u);
}

TEST(ResultDeathTest, ValueOfAnErrorStopsTheProcess) {
  Result<int> r = err(ErrorKind::kBusy, "full");
  EXPECT_DEATH((void)r.value(), "value\\(\\) of an error result: busy: full");
}

}  // namespace
}  // namespace nori::base
