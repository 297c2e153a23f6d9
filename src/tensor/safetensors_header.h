// The safetensors header: parsing (validating every claimed size before anything is
// allocated from it) and encoding. Byte layout (docs/wire-format.md §5):
//
//   +-----------------+---------------------------------+---------------------------+
//   | N: u64 LE       | N bytes: JSON object, padded     | data section:             |
//   |                 | with spaces; Ember pads N to a   | tensor bytes at           |
//   |                 | multiple of 8                    | [8+N+begin, 8+N+end)      |
//   +-----------------+---------------------------------+---------------------------+
//   JSON: {"__metadata__": {"k": "v"},            (optional, str -> str)
//          "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
//
//   EMBER_ASSIGN_OR_RETURN(SafetensorsHeader h, ParseSafetensorsHeader(prefix, file_size));
//   for (const TensorInfo& t : h.tensors) Use(t.name, bytes.subspan(h.data_offset + t.begin));
//   std::string head = EncodeSafetensorsHeader(infos, {{"round", "3"}});
//
// Errors: truncation and inconsistent sizes/offsets are DataLoss; an unknown dtype is
// InvalidArgument. Messages name the tensor: "tensor 'w': data_offsets [0, 4096] exceed
// data section of 100 bytes".
// Thread-safety: pure functions; SafetensorsHeader is a value type.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tensor/tensor.h"

namespace ember::tensor {

inline constexpr uint64_t kMaxSafetensorsHeaderSize = 100 << 20;  // 100 MiB, as safetensors
inline constexpr std::string_view kSafetensorsMetadataKey = "__metadata__";

struct SafetensorsHeader {
  uint64_t header_size = 0;  // N, the JSON length
  uint64_t data_offset = 8;  // 8 + N: where the data section starts in the file
  uint64_t data_size = 0;    // total_size - data_offset
  std::vector<TensorInfo> tensors;  // sorted by data offset (ties keep header order)
  std::map<std::string, std::string> metadata;

  // nullptr if there is no tensor named `name`.
  const TensorInfo* Find(std::string_view name) const;

 private:
  friend Result<SafetensorsHeader> ParseSafetensorsHeader(std::span<const uint8_t>, uint64_t);
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors
};

// Reads N from the first 8 bytes and checks it against the 100 MiB limit and against a
// file of `total_size` bytes. REQUIRES: first8.size() >= 8 unless total_size < 8.
Result<uint64_t> ParseSafetensorsHeaderSize(std::span<const uint8_t> first8, uint64_t total_size);

// Parses and validates the header of a file of `total_size` bytes whose first bytes are
// `prefix`. `prefix` must hold at least the 8 + N header bytes (more is fine; only the
// header is read). Validates: N; JSON object; no duplicate names; every dtype known;
// shape dims non-negative; end - begin == numel * dtype size; offsets within the data
// section; no two non-empty tensors overlap. Gaps between tensors are allowed.
Result<SafetensorsHeader> ParseSafetensorsHeader(std::span<const uint8_t> prefix,
                                                 uint64_t total_size);

// Returns the 8-byte size plus the JSON header, padded with spaces to a multiple of 8.
// Assigns contiguous data_offsets in the given order (the `begin`/`end` of the inputs
// are ignored) and writes the keys in that order, "__metadata__" first when non-empty.
// REQUIRES: names unique, valid UTF-8 and not "__metadata__"; shapes pass CountBytes
// (WriteSafetensors checks all of this). An empty model gives "\x08\0\0\0\0\0\0\0{}      ".
std::string EncodeSafetensorsHeader(const std::vector<TensorInfo>& tensors_in_order,
                                    const std::map<std::string, std::string>& metadata);

}  // namespace ember::tensor
