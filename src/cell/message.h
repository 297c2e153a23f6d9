// Message: what a cell sends and receives. A JSON header (docs/wire-format.md §2) plus
// an optional body that may live in memory, in an mmap'ed file, or be produced lazily.
//
//   Message m = Message::Make("fl.get_task", {{"site", "site-1"}});
//   m.body = BytesBody(std::move(bytes));
//   const uint8_t* p = m.body ? m.body->contiguous() : nullptr;
//
// Thread-safety: a Message is a value; BodySource implementations are immutable after
// construction and may be read from several threads at once (one download per client).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"
#include "wire/body.h"

namespace ember::cell {

using Json = nlohmann::json;

// Read-only bytes of a message body (defined in wire/ so the transport can stream any
// body chunk by chunk without depending on this layer).
using BodySource = wire::BodySource;

// A body held in memory.
std::shared_ptr<BodySource> BytesBody(std::string bytes);
// A body that is the content of `path`, mapped read-only (the file must not change).
Result<std::shared_ptr<BodySource>> FileBody(const std::string& path);

struct Message {
  Json header = Json::object();        // kind, topic, src, dst, req_id, status, error, h
  std::shared_ptr<BodySource> body;    // null means empty

  static Message Make(std::string topic, Json h = Json::object(),
                      std::shared_ptr<BodySource> body = nullptr);

  std::string topic() const { return header.value("topic", ""); }
  std::string src() const { return header.value("src", ""); }
  // Application headers ("h").
  const Json& h() const;
  Json& h();
  uint64_t body_size() const { return body ? body->size() : 0; }
  // For replies: OK, or the status carried in "status"/"error" mapped to a StatusCode
  // (docs/wire-format.md §4: "timeout" -> kDeadlineExceeded, "unreachable"/"closed" ->
  // kUnavailable, "no_handler" -> kUnimplemented, ...).
  Status status() const;
};

}  // namespace ember::cell
