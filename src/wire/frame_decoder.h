// FrameDecoder: turns a byte stream, fed in chunks of any size, into frames.
//
//   FrameDecoder decoder;
//   std::vector<Frame> frames;
//   EMBER_RETURN_IF_ERROR(decoder.Feed(bytes_from_socket, &frames));
//
// Every header is validated (DecodeFrameHeader) before any payload byte is buffered, so
// an oversized length is rejected without allocating for it. After the first error the
// decoder stays failed and returns that error again.
//
// Thread-safety: not thread-safe; owned by one connection.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/status.h"
#include "wire/frame.h"

namespace ember::wire {

class FrameDecoder {
 public:
  // Consumes all of `bytes`, appending each completed frame to `out`.
  Status Feed(std::span<const uint8_t> bytes, std::vector<Frame>* out);

  // OK if the stream may end here (no partial frame buffered), else DataLoss naming
  // how much of the frame in progress was received.
  Status Finish() const;

  // Bytes buffered for the frame in progress (header and payload).
  size_t buffered_bytes() const;

 private:
  size_t FeedHeader(std::span<const uint8_t> bytes);
  size_t FeedPayload(std::span<const uint8_t> bytes);

  std::array<uint8_t, kFrameHeaderSize> header_bytes_{};
  size_t header_have_ = 0;
  std::optional<Frame> current_;  // set once its header decoded
  Status error_;
};

}  // namespace ember::wire
