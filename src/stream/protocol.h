// The pull-download and push protocol between cells (docs/streaming.md §1): topics and
// header keys, in one place. Everything travels as ordinary cell messages; chunk bytes
// are the body of a reply, never JSON.
//
//   receiver -> owner  req   "<prefix>.chunk"  h {ref, offset, max_len}
//   owner -> receiver  reply                   h {size, offset}          body = chunk
//   receiver -> owner  fire  "<prefix>.done"   h {ref, ok, error, bytes}
//   sender -> receiver req   "<topic>"         h {..app.., push: {id, size}}  body = blob
//   sender -> receiver fire  "<topic>.progress" h {push_id, bytes, size}
//
// Thread-safety: constants only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cell/message.h"

namespace ember::stream::protocol {

inline constexpr std::string_view kDefaultTopicPrefix = "dl";
inline constexpr std::string_view kChunkSuffix = ".chunk";
inline constexpr std::string_view kDoneSuffix = ".done";
inline constexpr std::string_view kProgressSuffix = ".progress";

// Chunk request and reply ("h").
inline constexpr const char* kRef = "ref";          // str: the object's RefId
inline constexpr const char* kOffset = "offset";    // u64: first byte wanted / sent
inline constexpr const char* kMaxLen = "max_len";   // u64: at most this many bytes
inline constexpr const char* kSize = "size";        // u64: the whole object's size
// Done report ("h").
inline constexpr const char* kOk = "ok";            // bool: the receiver got every byte
inline constexpr const char* kError = "error";      // str: why not, if !ok
inline constexpr const char* kBytes = "bytes";      // u64: bytes the receiver took
// Push ("h").
inline constexpr const char* kPush = "push";        // object {id, size} on the push request
inline constexpr const char* kPushId = "push_id";   // str, on progress fires
inline constexpr const char* kId = "id";

inline std::string ChunkTopic(std::string_view prefix) { return std::string(prefix) + std::string(kChunkSuffix); }
inline std::string DoneTopic(std::string_view prefix) { return std::string(prefix) + std::string(kDoneSuffix); }
inline std::string ProgressTopic(std::string_view push_topic) {
  return std::string(push_topic) + std::string(kProgressSuffix);
}

// Typed reads of header fields that never throw: a missing or mistyped field reads as
// nullopt / empty / the default.
inline std::optional<uint64_t> GetU64(const cell::Json& h, const char* key) {
  auto it = h.find(key);
  if (it == h.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<uint64_t>();
}
inline std::string GetString(const cell::Json& h, const char* key) {
  auto it = h.find(key);
  return it != h.end() && it->is_string() ? it->get<std::string>() : std::string();
}
inline bool GetBool(const cell::Json& h, const char* key, bool otherwise) {
  auto it = h.find(key);
  return it != h.end() && it->is_boolean() ? it->get<bool>() : otherwise;
}

}  // namespace ember::stream::protocol
