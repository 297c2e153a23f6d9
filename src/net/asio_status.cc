#include "net/asio_status.h"

#include <asio/error.hpp>

#include <string>

namespace ember::net {
namespace {

StatusCode CodeFor(const std::error_code& ec) {
  if (ec == asio::error::operation_aborted) return StatusCode::kAborted;
  if (ec == asio::error::timed_out) return StatusCode::kDeadlineExceeded;
  if (ec == asio::error::address_in_use) return StatusCode::kAlreadyExists;
  if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again ||
      ec == asio::error::service_not_found) {
    return StatusCode::kNotFound;
  }
  if (ec == asio::error::invalid_argument) return StatusCode::kInvalidArgument;
  return StatusCode::kUnavailable;  // eof, reset, refused, unreachable, broken pipe, ...
}

}  // namespace

Status StatusFromAsio(const std::error_code& ec, std::string_view context) {
  if (!ec) return Status::Ok();
  std::string message(context);
  message += ": ";
  message += ec == asio::error::eof ? std::string("connection closed by peer") : ec.message();
  return Status(CodeFor(ec), std::move(message));
}

}  // namespace ember::net
