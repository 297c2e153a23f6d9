// Status and Result<T>: the error type of every Ember layer (leveldb/abseil style).
//
//   Result<int> ParsePort(std::string_view s);
//   EMBER_ASSIGN_OR_RETURN(int port, ParsePort(arg));
//   if (port == 0) return Status::InvalidArgument("port 0 is not allowed");
//
// Result<T> holds a T or a non-OK Status, never both and never an OK status:
// - built from an OK Status it holds Internal("Result constructed from an OK status")
//   (abseil's StatusOr rule), in every build type, so EMBER_ASSIGN_OR_RETURN can
//   never return OK with its output unset;
// - value(), operator* and operator-> on an error are a programming error: they print
//   "Result::value() on an error: <status>" to stderr and call std::abort(), in every
//   build type. Aborting rather than throwing keeps exceptions from crossing module
//   boundaries (house style) and names the status in the crash instead of an
//   anonymous std::bad_variant_access. Check ok() first, or use EMBER_ASSIGN_OR_RETURN.
//
// Thread-safety: value types; a const Status may be read from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ember {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kOutOfRange,
  kUnavailable,       // retryable: peer gone, connection closed
  kDeadlineExceeded,  // retryable: timed out
  kAborted,
  kDataLoss,          // corrupt or truncated data
  kResourceExhausted,
  kInternal,
  kUnimplemented,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
  static Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
  static Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsRetryable() const {
    return code_ == StatusCode::kUnavailable || code_ == StatusCode::kDeadlineExceeded;
  }
  // "DataLoss: header claims 900 bytes, file holds 10"
  std::string ToString() const;
  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

namespace internal {
// The status a Result holds when it was given an OK one.
Status OkStatusGivenToResult();
// Prints "Result::value() on an error: <status>" to stderr and aborts.
[[noreturn]] void DieOfValueOnError(const Status& status);
}  // namespace internal

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                 // NOLINT: implicit by design
  // An OK status becomes Internal (see the file comment).
  Result(Status status)                                     // NOLINT
      : v_(status.ok() ? internal::OkStatusGivenToResult() : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  // REQUIRES: ok(); otherwise aborts naming the status (see the file comment).
  T& value() & { CheckOk(); return std::get<T>(v_); }
  const T& value() const& { CheckOk(); return std::get<T>(v_); }
  T&& value() && { CheckOk(); return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void CheckOk() const {
    if (!ok()) internal::DieOfValueOnError(std::get<Status>(v_));
  }

  std::variant<Status, T> v_;
};

}  // namespace ember

#define EMBER_CONCAT_INNER_(a, b) a##b
#define EMBER_CONCAT_(a, b) EMBER_CONCAT_INNER_(a, b)

#define EMBER_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    ::ember::Status ember_status_ = (expr);         \
    if (!ember_status_.ok()) return ember_status_;  \
  } while (0)

#define EMBER_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

#define EMBER_ASSIGN_OR_RETURN(lhs, expr) \
  EMBER_ASSIGN_OR_RETURN_IMPL_(EMBER_CONCAT_(ember_result_, __LINE__), lhs, expr)
