// Frame codec: the 16-byte frame header of docs/wire-format.md §1, pure code, no I/O.
//
//   uint8_t hdr[kFrameHeaderSize];
//   EncodeFrameHeader({.type = FrameType::kPing}, hdr);
//   Result<FrameHeader> h = DecodeFrameHeader(hdr);   // checks magic, type, limits
//
// Byte layout (all integers little-endian):
//
//   offset size field
//   0      2    magic      0x45 0x4D ("EM")
//   2      1    version    1
//   3      1    type       FrameType
//   4      2    flags      bit 0 END (last frame of a message), other bits 0
//   6      2    reserved   0
//   8      4    stream_id  0 for connection-level frames (HELLO, PING, PONG, GOAWAY)
//   12     4    length     payload bytes that follow the header
//   16     ...  payload
//
// Thread-safety: stateless functions and value types.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ember::wire {

inline constexpr uint8_t kMagic0 = 0x45;  // 'E'
inline constexpr uint8_t kMagic1 = 0x4D;  // 'M'
inline constexpr uint8_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderSize = 16;
inline constexpr uint32_t kMaxHeaderBytes = 1u << 20;    // HEAD, HELLO, ABORT, GOAWAY
inline constexpr uint32_t kMaxFramePayload = 16u << 20;  // DATA
inline constexpr uint16_t kFlagEnd = 0x0001;
// Flow-control window a receiver grants each incoming stream when its HELLO names none
// (docs/wire-format.md §8; the streaming_window_size default).
inline constexpr uint64_t kDefaultWindow = 16u << 20;

enum class FrameType : uint8_t {
  kHello = 1,
  kHead = 2,
  kData = 3,
  kAbort = 4,
  kPing = 5,
  kPong = 6,
  kCredit = 7,
  kGoaway = 8,
};

std::string_view FrameTypeName(FrameType type);

struct FrameHeader {
  FrameType type = FrameType::kPing;
  uint16_t flags = 0;
  uint32_t stream_id = 0;
  uint32_t length = 0;

  bool end() const { return (flags & kFlagEnd) != 0; }
};

// Largest payload a frame of `type` may carry.
uint32_t MaxPayload(FrameType type);

// Writes the 16 header bytes. REQUIRES: out.size() >= kFrameHeaderSize.
void EncodeFrameHeader(const FrameHeader& header, std::span<uint8_t> out);

// Parses and validates 16 header bytes: magic, version, type, flags, reserved, the
// stream id rule and the payload limit. The error names the reason, e.g.
// "InvalidArgument: frame length 20000000 exceeds the DATA limit 16777216".
Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> in);

// Header + payload as one byte string; for small frames (control, HEAD).
std::string EncodeFrame(FrameType type, uint16_t flags, uint32_t stream_id,
                        std::string_view payload);

// CREDIT payload: u64 LE, the extra body bytes the receiver allows on the stream (§8).
std::string EncodeCredit(uint64_t bytes);
Result<uint64_t> DecodeCredit(std::string_view payload);

// A decoded frame with its payload.
struct Frame {
  FrameHeader header;
  std::string payload;
};

}  // namespace ember::wire
