// JSON payload helpers for HEAD, HELLO, ABORT and GOAWAY frames (docs/wire-format.md
// §2-§4), FQCN validation and the status strings carried by replies.
//
//   EMBER_ASSIGN_OR_RETURN(Json head, ParseJsonObject(frame.payload, "HEAD"));
//   EMBER_ASSIGN_OR_RETURN(MessageFields f, ReadMessageFields(head));
//   if (f.hops > kMaxHops) ...
//
// Thread-safety: stateless functions and value types.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ember::wire {

using Json = nlohmann::json;

inline constexpr uint32_t kMaxHops = 16;

enum class MessageKind { kRequest, kReply, kFire };
std::string_view MessageKindName(MessageKind kind);  // "req", "reply", "fire"

// Parses `payload` as a JSON object; `what` names the frame in the error.
Result<Json> ParseJsonObject(std::string_view payload, std::string_view what);
// Compact JSON; invalid UTF-8 is replaced rather than throwing.
std::string DumpJson(const Json& value);

// The HEAD fields the transport and the router rely on, type-checked. Missing optional
// fields read as empty/0; a present field of the wrong type is an error.
struct MessageFields {
  MessageKind kind = MessageKind::kFire;
  std::string topic;
  std::string src;
  std::string dst;
  uint64_t req_id = 0;
  uint64_t body_size = 0;
  uint32_t hops = 0;
};
Result<MessageFields> ReadMessageFields(const Json& head);
// Just body_size (the transport needs nothing else). Missing reads as 0.
Result<uint64_t> ReadBodySize(const Json& head);

struct Hello {
  std::string name;
  int version = 1;
  std::string token;  // empty: not sent
  // Initial flow-control credit the sender of this HELLO grants each stream it receives
  // (§8); 0: not sent, which means kDefaultWindow.
  uint64_t window = 0;
  // The sender of this HELLO answers PING at any time, so its silence means it is gone
  // (§8 liveness). A blocking peer (the Python link) leaves it false.
  bool answers_ping = false;
};
std::string EncodeHello(const Hello& hello);
Result<Hello> DecodeHello(std::string_view payload);

std::string EncodeGoaway(std::string_view reason);
Result<std::string> DecodeGoaway(std::string_view payload);  // the reason

struct AbortInfo {
  std::string code;     // a §4 status string
  std::string message;
};
std::string EncodeAbort(const AbortInfo& abort);
Result<AbortInfo> DecodeAbort(std::string_view payload);

// A dot-joined path of non-empty parts of [A-Za-z0-9_-].
bool IsValidFqcn(std::string_view name);
// True if `name` is `prefix` or starts with `prefix` + ".".
bool IsSameOrUnder(std::string_view name, std::string_view prefix);
// Constant-time equality for tokens.
bool TokensEqual(std::string_view a, std::string_view b);

// Reply status strings (§4). "unreachable" and "closed" are sent by the router/transport
// when no route exists or a connection dropped; both read back as kUnavailable.
inline constexpr std::string_view kStatusOk = "ok";
inline constexpr std::string_view kStatusUnreachable = "unreachable";
inline constexpr std::string_view kStatusClosed = "closed";
inline constexpr std::string_view kStatusNoHandler = "no_handler";
inline constexpr std::string_view kStatusTimeout = "timeout";

// kOk "ok", kDeadlineExceeded "timeout", kUnimplemented "no_handler", kInvalidArgument
// "invalid_request", kAborted "aborted", kInternal "internal", kUnavailable
// "unavailable"; other codes use their snake_case name ("not_found", "data_loss", ...).
std::string_view WireStatusName(StatusCode code);
// Inverse of WireStatusName, plus "unreachable"/"closed" -> kUnavailable. Unknown
// strings read as kInternal.
StatusCode StatusCodeFromWire(std::string_view name);

}  // namespace ember::wire
