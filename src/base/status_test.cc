#include "base/status.h"

#include <gtest/gtest.h>

namespace ember {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd number " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  EMBER_ASSIGN_OR_RETURN(int h, Half(x));
  EMBER_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(Status, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(Status, CarriesCodeAndMessageWithContext) {
  Status s = Status::DataLoss("truncated").WithContext("model.safetensors");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.ToString(), "DataLoss: model.safetensors: truncated");
  EXPECT_FALSE(s.IsRetryable());
  EXPECT_TRUE(Status::Unavailable("x").IsRetryable());
}

TEST(Result, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "odd number 3");
}

Result<int> PassesOn(Result<int> r) {
  EMBER_ASSIGN_OR_RETURN(int v, std::move(r));
  return v + 1;
}

TEST(Result, BuiltFromAnOkStatusHoldsAnInternalError) {
  Result<int> r = Status::Ok();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  EXPECT_EQ(r.status().message(), "Result constructed from an OK status");
}

TEST(Result, AssignOrReturnNeverPassesAnOkStatusOnAsSuccess) {
  Result<int> r = PassesOn(Status());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(Result, KeepsANonOkStatusAsGiven) {
  Result<std::string> r = Status::NotFound("no such job");
  EXPECT_EQ(r.status().ToString(), "NotFound: no such job");
}

TEST(ResultDeathTest, ValueOnAnErrorAbortsNamingTheStatus) {
  Result<int> r = Status::DataLoss("crc mismatch");
  EXPECT_DEATH((void)r.value(), "Result::value\\(\\) on an error: DataLoss: crc mismatch");
}

TEST(ResultDeathTest, DereferenceOnAnErrorAbortsNamingTheStatus) {
  Result<std::string> r = Status::Unavailable("peer gone");
  EXPECT_DEATH((void)r->size(), "on an error: Unavailable: peer gone");
  EXPECT_DEATH((void)*r, "on an error: Unavailable: peer gone");
}

TEST(ResultDeathTest, MovedValueOnAnErrorAbortsNamingTheStatus) {
  EXPECT_DEATH((void)Result<int>(Status::Aborted("stop")).value(), "on an error: Aborted: stop");
}

}  // namespace
}  // namespace ember
