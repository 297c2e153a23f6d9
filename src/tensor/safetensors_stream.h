// Parses a safetensors image that arrives in chunks of any size (e.g. message body
// pieces): buffers only the header (at most 8 + 100 MiB, and only after its size was
// checked against `total_size`), then hands each piece of tensor data to `on_data` as
// it arrives. Pieces may split tensors and elements anywhere.
//
//   SafetensorsStreamParser parser(body_size);
//   parser.on_data = [&](const TensorInfo& t, uint64_t offset, std::span<const uint8_t> b) {
//     return sum.AddPiece(t, offset, b, weight); };
//   for (auto chunk : chunks) EMBER_RETURN_IF_ERROR(parser.Feed(chunk));
//   EMBER_RETURN_IF_ERROR(parser.Finish());
//
// Delivery contract: per tensor, pieces come in byte order, contiguous, and exactly one
// piece has offset_in_tensor == 0 (an empty tensor gets one empty piece at offset 0).
// Bytes outside every tensor (gaps) are skipped. Tensors come in data-offset order.
// Errors are sticky: after a failed Feed every later Feed returns the same status. An
// error from on_data is returned by Feed.
// Thread-safety: not thread-safe; one owner feeds it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "base/status.h"
#include "tensor/safetensors_header.h"
#include "tensor/tensor.h"

namespace ember::tensor {

class SafetensorsStreamParser {
 public:
  using DataCallback = std::function<Status(const TensorInfo& tensor, uint64_t offset_in_tensor,
                                            std::span<const uint8_t> bytes)>;

  explicit SafetensorsStreamParser(uint64_t total_size) : total_size_(total_size) {}

  // Consumes the next bytes. DataLoss if they go past total_size or the header is bad.
  Status Feed(std::span<const uint8_t> chunk);
  // Call at end of input: DataLoss "stream ended after X of Y bytes" unless done().
  Status Finish() const;

  bool header_ready() const { return header_.has_value(); }
  // REQUIRES: header_ready().
  const SafetensorsHeader& header() const { return *header_; }
  uint64_t bytes_received() const { return received_; }
  bool done() const { return status_.ok() && header_ready() && received_ == total_size_; }

  DataCallback on_data;  // may be empty: data is then only counted

 private:
  // Takes header bytes from the front of `chunk`; returns how many it took.
  Result<size_t> FeedHeader(std::span<const uint8_t> chunk);
  Status ParseHeaderIfComplete();
  // `bytes` start at offset `start` of the data section.
  Status EmitData(uint64_t start, std::span<const uint8_t> bytes);
  Status Emit(const TensorInfo& tensor, uint64_t offset, std::span<const uint8_t> bytes);
  Status Fail(Status status);

  const uint64_t total_size_;
  uint64_t received_ = 0;
  uint64_t header_size_ = 0;         // known once 8 bytes arrived
  std::vector<uint8_t> header_buf_;  // freed once the header is parsed
  std::optional<SafetensorsHeader> header_;
  size_t next_tensor_ = 0;  // first tensor not yet fully delivered
  Status status_;
};

}  // namespace ember::tensor
