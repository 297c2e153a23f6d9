#include "wire/frame.h"

#include <cstring>
#include <fmt/format.h>

namespace ember::wire {
namespace {

void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool IsKnownType(uint8_t t) { return t >= 1 && t <= 8; }

bool IsConnectionLevel(FrameType t) {
  return t == FrameType::kHello || t == FrameType::kPing || t == FrameType::kPong ||
         t == FrameType::kGoaway;
}

bool NeedsStream(FrameType t) {
  return t == FrameType::kHead || t == FrameType::kData || t == FrameType::kAbort ||
         t == FrameType::kCredit;
}

Status CheckStreamAndLength(const FrameHeader& h) {
  if (IsConnectionLevel(h.type) && h.stream_id != 0) {
    return Status::InvalidArgument(fmt::format("{} frame on stream {}, expected stream 0",
                                               FrameTypeName(h.type), h.stream_id));
  }
  if (NeedsStream(h.type) && h.stream_id == 0) {
    return Status::InvalidArgument(fmt::format("{} frame on stream 0", FrameTypeName(h.type)));
  }
  if (h.length > MaxPayload(h.type)) {
    return Status::InvalidArgument(fmt::format("frame length {} exceeds the {} limit {}",
                                               h.length, FrameTypeName(h.type),
                                               MaxPayload(h.type)));
  }
  if (h.type == FrameType::kCredit && h.length != 8) {
    return Status::InvalidArgument(fmt::format("CREDIT frame length {}, expected 8", h.length));
  }
  return Status::Ok();
}

}  // namespace

std::string_view FrameTypeName(FrameType type) {
  switch (type) {
    case FrameType::kHello: return "HELLO";
    case FrameType::kHead: return "HEAD";
    case FrameType::kData: return "DATA";
    case FrameType::kAbort: return "ABORT";
    case FrameType::kPing: return "PING";
    case FrameType::kPong: return "PONG";
    case FrameType::kCredit: return "CREDIT";
    case FrameType::kGoaway: return "GOAWAY";
  }
  return "UNKNOWN";
}

uint32_t MaxPayload(FrameType type) {
  switch (type) {
    case FrameType::kData: return kMaxFramePayload;
    case FrameType::kPing:
    case FrameType::kPong: return 0;
    case FrameType::kCredit: return 8;
    default: return kMaxHeaderBytes;
  }
}

void EncodeFrameHeader(const FrameHeader& header, std::span<uint8_t> out) {
  uint8_t* p = out.data();
  p[0] = kMagic0;
  p[1] = kMagic1;
  p[2] = kProtocolVersion;
  p[3] = static_cast<uint8_t>(header.type);
  PutU16(p + 4, header.flags);
  PutU16(p + 6, 0);
  PutU32(p + 8, header.stream_id);
  PutU32(p + 12, header.length);
}

Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> in) {
  if (in.size() < kFrameHeaderSize) {
    return Status::DataLoss(fmt::format("frame header truncated: {} of {} bytes", in.size(),
                                        kFrameHeaderSize));
  }
  const uint8_t* p = in.data();
  if (p[0] != kMagic0 || p[1] != kMagic1) {
    return Status::InvalidArgument(fmt::format("bad frame magic {:02x} {:02x}, expected 45 4d",
                                               p[0], p[1]));
  }
  if (p[2] != kProtocolVersion) {
    return Status::InvalidArgument(fmt::format("unknown protocol version {}", p[2]));
  }
  if (!IsKnownType(p[3])) return Status::InvalidArgument(fmt::format("unknown frame type {}", p[3]));
  FrameHeader h{.type = static_cast<FrameType>(p[3]), .flags = GetU16(p + 4),
                .stream_id = GetU32(p + 8), .length = GetU32(p + 12)};
  if ((h.flags & ~kFlagEnd) != 0) {
    return Status::InvalidArgument(fmt::format("unknown frame flags 0x{:04x}", h.flags));
  }
  if (GetU16(p + 6) != 0) {
    return Status::InvalidArgument(fmt::format("non-zero reserved field 0x{:04x}", GetU16(p + 6)));
  }
  EMBER_RETURN_IF_ERROR(CheckStreamAndLength(h));
  return h;
}

std::string EncodeCredit(uint64_t bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(bytes >> (8 * i));
  return out;
}

Result<uint64_t> DecodeCredit(std::string_view payload) {
  if (payload.size() != 8) {
    return Status::InvalidArgument(fmt::format("CREDIT payload of {} bytes, expected 8", payload.size()));
  }
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(payload[i]);
  return v;
}

std::string EncodeFrame(FrameType type, uint16_t flags, uint32_t stream_id,
                        std::string_view payload) {
  std::string out(kFrameHeaderSize + payload.size(), '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  EncodeFrameHeader({.type = type, .flags = flags, .stream_id = stream_id,
                     .length = static_cast<uint32_t>(payload.size())},
                    std::span<uint8_t>(p, kFrameHeaderSize));
  if (!payload.empty()) std::memcpy(p + kFrameHeaderSize, payload.data(), payload.size());
  return out;
}

}  // namespace ember::wire
