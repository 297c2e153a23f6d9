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
// The Visitor form (what a Connection uses) does not buffer DATA payloads: they are
// passed on in pieces straight from the caller's bytes, so bulk data is never copied
// here. Use one form per decoder.
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
  // Receives what Feed finds, in stream order. An error from a method fails the decoder
  // with that error (the connection closes).
  class Visitor {
   public:
    virtual ~Visitor() = default;
    // A complete frame other than DATA (its payload is bounded by its type's limit).
    virtual Status OnFrame(Frame frame) = 0;
    // A DATA frame's header, before any of its payload.
    virtual Status OnDataBegin(const FrameHeader& header) = 0;
    // The next piece of that DATA frame's payload: never empty, valid during the call.
    virtual Status OnDataPiece(const FrameHeader& header, std::span<const uint8_t> piece) = 0;
    // All of that DATA frame's payload was passed on.
    virtual Status OnDataEnd(const FrameHeader& header) = 0;
  };

  // Consumes all of `bytes`, appending each completed frame to `out`.
  Status Feed(std::span<const uint8_t> bytes, std::vector<Frame>* out);
  // Consumes all of `bytes`, calling `visitor` as frames and DATA pieces complete.
  Status Feed(std::span<const uint8_t> bytes, Visitor& visitor);

  // OK if the stream may end here (no partial frame buffered), else DataLoss naming
  // how much of the frame in progress was received.
  Status Finish() const;

  // Bytes of the frame in progress taken so far: header and payload (a DATA payload in
  // the Visitor form is passed on, not held, but counts here).
  size_t buffered_bytes() const;

 private:
  // Takes header bytes; once 16 are in, decodes them into *header (or sets error_).
  size_t TakeHeader(std::span<const uint8_t> bytes, std::optional<FrameHeader>* header);
  size_t FeedHeader(std::span<const uint8_t> bytes);
  size_t FeedPayload(std::span<const uint8_t> bytes);
  size_t FeedData(std::span<const uint8_t> bytes, Visitor& visitor);
  void StartFrame(const FrameHeader& header, Visitor& visitor);
  void Fail(Status s);

  std::array<uint8_t, kFrameHeaderSize> header_bytes_{};
  size_t header_have_ = 0;
  std::optional<Frame> current_;  // set once its header decoded
  // Visitor form: the DATA frame being passed on and how much of its payload is left.
  std::optional<FrameHeader> data_;
  uint32_t data_left_ = 0;
  Status error_;
};

}  // namespace ember::wire
