// The one place where asio error codes become ember::Status (house rule: convert once,
// in net/).
//
//   if (ec) return StatusFromAsio(ec, "connect to 10.0.0.1:8002");
//
// Thread-safety: stateless.
#pragma once

#include <string_view>
#include <system_error>

#include "base/status.h"

namespace ember::net {

// Peer-gone and network errors map to kUnavailable (retryable), timeouts to
// kDeadlineExceeded, cancellation to kAborted, "address in use" to kAlreadyExists,
// an unknown host to kNotFound. The message is "<context>: <asio message>".
Status StatusFromAsio(const std::error_code& ec, std::string_view context);

}  // namespace ember::net
