#include "wire/message_header.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <utility>

namespace ember::wire {
namespace {

Status TypeError(std::string_view field, std::string_view want) {
  return Status::InvalidArgument(fmt::format("header field '{}' must be {}", field, want));
}

Status ReadString(const Json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return TypeError(key, "a string");
  *out = it->get<std::string>();
  return Status::Ok();
}

Status ReadU64(const Json& j, const char* key, uint64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  bool non_negative = it->is_number_unsigned() ||
                      (it->is_number_integer() && it->get<int64_t>() >= 0);
  if (!non_negative) return TypeError(key, "an unsigned integer");
  *out = it->get<uint64_t>();
  return Status::Ok();
}

Status ReadKind(const Json& j, MessageKind* out) {
  std::string kind;
  EMBER_RETURN_IF_ERROR(ReadString(j, "kind", &kind));
  if (kind == "req") *out = MessageKind::kRequest;
  else if (kind == "reply") *out = MessageKind::kReply;
  else if (kind == "fire") *out = MessageKind::kFire;
  else return Status::InvalidArgument(fmt::format("unknown message kind '{}'", kind));
  return Status::Ok();
}

bool IsFqcnChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-';
}

constexpr std::array<std::pair<StatusCode, std::string_view>, 13> kWireNames{{
    {StatusCode::kOk, "ok"},
    {StatusCode::kDeadlineExceeded, "timeout"},
    {StatusCode::kUnimplemented, "no_handler"},
    {StatusCode::kInvalidArgument, "invalid_request"},
    {StatusCode::kAborted, "aborted"},
    {StatusCode::kInternal, "internal"},
    {StatusCode::kUnavailable, "unavailable"},
    {StatusCode::kNotFound, "not_found"},
    {StatusCode::kAlreadyExists, "already_exists"},
    {StatusCode::kFailedPrecondition, "failed_precondition"},
    {StatusCode::kOutOfRange, "out_of_range"},
    {StatusCode::kDataLoss, "data_loss"},
    {StatusCode::kResourceExhausted, "resource_exhausted"},
}};

}  // namespace

std::string_view MessageKindName(MessageKind kind) {
  switch (kind) {
    case MessageKind::kRequest: return "req";
    case MessageKind::kReply: return "reply";
    case MessageKind::kFire: return "fire";
  }
  return "fire";
}

namespace {

// Deepest [ / { nesting outside strings. Dumping or copying a parsed value recurses once
// per level, so a deeply nested header from a peer must be refused before it is parsed.
size_t NestingDepth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

constexpr size_t kMaxJsonDepth = 64;

}  // namespace

Result<Json> ParseJsonObject(std::string_view payload, std::string_view what) {
  if (NestingDepth(payload) > kMaxJsonDepth) {
    return Status::InvalidArgument(fmt::format("{} payload nests deeper than {} levels", what, kMaxJsonDepth));
  }
  Json j = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument(fmt::format("{} payload is not valid JSON", what));
  if (!j.is_object()) return Status::InvalidArgument(fmt::format("{} payload is not a JSON object", what));
  return j;
}

std::string DumpJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<MessageFields> ReadMessageFields(const Json& head) {
  MessageFields f;
  EMBER_RETURN_IF_ERROR(ReadKind(head, &f.kind));
  EMBER_RETURN_IF_ERROR(ReadString(head, "topic", &f.topic));
  EMBER_RETURN_IF_ERROR(ReadString(head, "src", &f.src));
  EMBER_RETURN_IF_ERROR(ReadString(head, "dst", &f.dst));
  EMBER_RETURN_IF_ERROR(ReadU64(head, "req_id", &f.req_id));
  EMBER_RETURN_IF_ERROR(ReadU64(head, "body_size", &f.body_size));
  uint64_t hops = 0;
  EMBER_RETURN_IF_ERROR(ReadU64(head, "hops", &hops));
  if (hops > UINT32_MAX) return TypeError("hops", "a u32");
  f.hops = static_cast<uint32_t>(hops);
  return f;
}

Result<uint64_t> ReadBodySize(const Json& head) {
  uint64_t n = 0;
  EMBER_RETURN_IF_ERROR(ReadU64(head, "body_size", &n));
  return n;
}

std::string EncodeHello(const Hello& hello) {
  Json j = {{"name", hello.name}, {"version", hello.version}};
  if (!hello.token.empty()) j["token"] = hello.token;
  if (hello.window != 0) j["window"] = hello.window;
  if (hello.answers_ping) j["answers_ping"] = true;
  return DumpJson(j);
}

Result<Hello> DecodeHello(std::string_view payload) {
  EMBER_ASSIGN_OR_RETURN(Json j, ParseJsonObject(payload, "HELLO"));
  Hello hello;
  EMBER_RETURN_IF_ERROR(ReadString(j, "name", &hello.name));
  EMBER_RETURN_IF_ERROR(ReadString(j, "token", &hello.token));
  uint64_t version = 0;
  EMBER_RETURN_IF_ERROR(ReadU64(j, "version", &version));
  if (version != 1) return Status::InvalidArgument(fmt::format("HELLO version {} is not 1", version));
  EMBER_RETURN_IF_ERROR(ReadU64(j, "window", &hello.window));
  if (auto it = j.find("answers_ping"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return TypeError("answers_ping", "a boolean");
    hello.answers_ping = it->get<bool>();
  }
  if (!IsValidFqcn(hello.name)) {
    return Status::InvalidArgument(fmt::format("HELLO name '{}' is not a valid FQCN", hello.name));
  }
  return hello;
}

std::string EncodeGoaway(std::string_view reason) { return DumpJson({{"reason", reason}}); }

Result<std::string> DecodeGoaway(std::string_view payload) {
  EMBER_ASSIGN_OR_RETURN(Json j, ParseJsonObject(payload, "GOAWAY"));
  std::string reason;
  EMBER_RETURN_IF_ERROR(ReadString(j, "reason", &reason));
  return reason;
}

std::string EncodeAbort(const AbortInfo& abort) {
  return DumpJson({{"code", abort.code}, {"message", abort.message}});
}

Result<AbortInfo> DecodeAbort(std::string_view payload) {
  EMBER_ASSIGN_OR_RETURN(Json j, ParseJsonObject(payload, "ABORT"));
  AbortInfo a;
  EMBER_RETURN_IF_ERROR(ReadString(j, "code", &a.code));
  EMBER_RETURN_IF_ERROR(ReadString(j, "message", &a.message));
  return a;
}

bool IsValidFqcn(std::string_view name) {
  if (name.empty() || name.front() == '.' || name.back() == '.') return false;
  char prev = '.';
  for (char c : name) {
    if (c == '.' && prev == '.') return false;
    if (c != '.' && !IsFqcnChar(c)) return false;
    prev = c;
  }
  return true;
}

bool IsSameOrUnder(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return false;
  return name.size() == prefix.size() || name[prefix.size()] == '.';
}

bool TokensEqual(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ (i < b.size() ? b[i] : 0);
  return diff == 0;
}

std::string_view WireStatusName(StatusCode code) {
  for (const auto& [c, name] : kWireNames) {
    if (c == code) return name;
  }
  return "internal";
}

StatusCode StatusCodeFromWire(std::string_view name) {
  if (name == kStatusUnreachable || name == kStatusClosed) return StatusCode::kUnavailable;
  for (const auto& [c, n] : kWireNames) {
    if (n == name) return c;
  }
  return StatusCode::kInternal;
}

}  // namespace ember::wire
