// Target 2: the JSON payload codecs of HEAD, HELLO, GOAWAY and ABORT frames.
#include <string>

#include "wire/fuzz/fuzz_targets.h"
#include "wire/message_header.h"

namespace ember::fuzz {
namespace {

using wire::Json;

// A relay re-serializes every HEAD it forwards (Connection::Send), so whatever parses
// must dump, and dump to the same value.
void CheckHead(std::string_view payload) {
  Result<Json> head = wire::ParseJsonObject(payload, "HEAD");
  if (!head.ok()) {
    EMBER_FUZZ_CHECK(!head.status().message().empty(), "rejected HEAD without a reason");
    return;
  }
  std::string dumped = wire::DumpJson(*head);
  Result<Json> again = wire::ParseJsonObject(dumped, "HEAD");
  EMBER_FUZZ_CHECK(again.ok(), "dumped HEAD does not parse: {}", again.status().ToString());
  EMBER_FUZZ_CHECK(wire::DumpJson(*again) == dumped, "HEAD dump is not stable");

  Result<wire::MessageFields> fields = wire::ReadMessageFields(*head);
  Result<uint64_t> body_size = wire::ReadBodySize(*head);
  if (fields.ok()) {
    EMBER_FUZZ_CHECK(body_size.ok() && *body_size == fields->body_size, "body_size disagrees");
    wire::MessageKindName(fields->kind);
    wire::IsValidFqcn(fields->dst);
    wire::IsSameOrUnder(fields->dst, fields->src);
  }
}

void CheckHello(std::string_view payload) {
  Result<wire::Hello> hello = wire::DecodeHello(payload);
  if (!hello.ok()) return;
  EMBER_FUZZ_CHECK(wire::IsValidFqcn(hello->name), "HELLO accepted name '{}'", hello->name);
  EMBER_FUZZ_CHECK(hello->version == 1, "HELLO accepted version {}", hello->version);
  Result<wire::Hello> again = wire::DecodeHello(wire::EncodeHello(*hello));
  EMBER_FUZZ_CHECK(again.ok() && again->name == hello->name && again->token == hello->token,
                   "HELLO does not round-trip");
  EMBER_FUZZ_CHECK(wire::TokensEqual(again->token, hello->token), "TokensEqual(x, x) is false");
}

void CheckGoawayAndAbort(std::string_view payload) {
  if (Result<std::string> reason = wire::DecodeGoaway(payload); reason.ok()) {
    Result<std::string> again = wire::DecodeGoaway(wire::EncodeGoaway(*reason));
    EMBER_FUZZ_CHECK(again.ok() && *again == *reason, "GOAWAY reason does not round-trip");
  }
  if (Result<wire::AbortInfo> abort = wire::DecodeAbort(payload); abort.ok()) {
    Result<wire::AbortInfo> again = wire::DecodeAbort(wire::EncodeAbort(*abort));
    EMBER_FUZZ_CHECK(again.ok() && again->code == abort->code && again->message == abort->message,
                     "ABORT does not round-trip");
    wire::StatusCodeFromWire(abort->code);
  }
}

// The string helpers on raw bytes: FQCN rules, prefix matching, token compare, status map.
void CheckStrings(std::string_view s) {
  if (wire::IsValidFqcn(s)) {
    EMBER_FUZZ_CHECK(wire::IsSameOrUnder(s, s), "'{}' is not under itself", s);
    EMBER_FUZZ_CHECK(s.find("..") == std::string_view::npos && s.front() != '.' && s.back() != '.',
                     "'{}' accepted as a FQCN", s);
  }
  size_t half = s.size() / 2;
  std::string_view a = s.substr(0, half), b = s.substr(half);
  EMBER_FUZZ_CHECK(wire::TokensEqual(a, b) == (a == b), "TokensEqual disagrees with ==");
  StatusCode code = wire::StatusCodeFromWire(s);
  EMBER_FUZZ_CHECK(wire::StatusCodeFromWire(wire::WireStatusName(code)) == code,
                   "status name of {} does not map back", static_cast<int>(code));
}

}  // namespace

void FuzzMessageHeader(std::span<const uint8_t> data) {
  std::string_view payload(reinterpret_cast<const char*>(data.data()), data.size());
  CheckHead(payload);
  CheckHello(payload);
  CheckGoawayAndAbort(payload);
  CheckStrings(payload);
}

}  // namespace ember::fuzz
