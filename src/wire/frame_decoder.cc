#include "wire/frame_decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace ember::wire {

Status FrameDecoder::Feed(std::span<const uint8_t> bytes, std::vector<Frame>* out) {
  if (!error_.ok()) return error_;
  while (!bytes.empty()) {
    if (!current_) {
      size_t used = FeedHeader(bytes);
      bytes = bytes.subspan(used);
      if (!error_.ok()) return error_;
      if (!current_) break;  // header still incomplete
    }
    bytes = bytes.subspan(FeedPayload(bytes));
    if (current_->payload.size() == current_->header.length) {
      out->push_back(std::move(*current_));
      current_.reset();
    }
  }
  return Status::Ok();
}

size_t FrameDecoder::TakeHeader(std::span<const uint8_t> bytes, std::optional<FrameHeader>* header) {
  size_t n = std::min(bytes.size(), kFrameHeaderSize - header_have_);
  std::memcpy(header_bytes_.data() + header_have_, bytes.data(), n);
  header_have_ += n;
  if (header_have_ < kFrameHeaderSize) return n;
  header_have_ = 0;
  Result<FrameHeader> decoded = DecodeFrameHeader(header_bytes_);
  if (decoded.ok()) header->emplace(*decoded);
  else error_ = decoded.status();
  return n;
}

size_t FrameDecoder::FeedHeader(std::span<const uint8_t> bytes) {
  std::optional<FrameHeader> header;
  size_t n = TakeHeader(bytes, &header);
  if (!header) return n;
  current_.emplace();
  current_->header = *header;
  current_->payload.reserve(std::min<size_t>(header->length, 64 << 10));  // grows as bytes arrive
  return n;
}

void FrameDecoder::Fail(Status s) {
  if (!s.ok() && error_.ok()) error_ = std::move(s);
}

Status FrameDecoder::Feed(std::span<const uint8_t> bytes, Visitor& visitor) {
  while (error_.ok() && !bytes.empty()) {
    if (data_) {
      bytes = bytes.subspan(FeedData(bytes, visitor));
    } else if (current_) {
      bytes = bytes.subspan(FeedPayload(bytes));
      if (current_->payload.size() < current_->header.length) continue;
      Frame frame = std::move(*current_);
      current_.reset();
      Fail(visitor.OnFrame(std::move(frame)));
    } else {
      std::optional<FrameHeader> header;
      bytes = bytes.subspan(TakeHeader(bytes, &header));
      if (header) StartFrame(*header, visitor);
    }
  }
  return error_;
}

// DATA is passed on as it comes; other frames are collected whole (at most 1 MiB).
void FrameDecoder::StartFrame(const FrameHeader& header, Visitor& visitor) {
  if (header.type != FrameType::kData) {
    current_.emplace();
    current_->header = header;
    // Grows as bytes arrive: a bare header must not pin its claimed length (≤ 1 MiB).
    current_->payload.reserve(std::min<size_t>(header.length, 64 << 10));
    if (header.length == 0) {
      Frame frame = std::move(*current_);
      current_.reset();
      Fail(visitor.OnFrame(std::move(frame)));
    }
    return;
  }
  Fail(visitor.OnDataBegin(header));
  if (!error_.ok()) return;
  if (header.length == 0) return Fail(visitor.OnDataEnd(header));
  data_ = header;
  data_left_ = header.length;
}

size_t FrameDecoder::FeedData(std::span<const uint8_t> bytes, Visitor& visitor) {
  size_t n = std::min<size_t>(bytes.size(), data_left_);
  FrameHeader header = *data_;
  data_left_ -= static_cast<uint32_t>(n);
  if (data_left_ == 0) data_.reset();
  Fail(visitor.OnDataPiece(header, bytes.first(n)));
  if (error_.ok() && !data_) Fail(visitor.OnDataEnd(header));
  return n;
}

size_t FrameDecoder::FeedPayload(std::span<const uint8_t> bytes) {
  std::string& payload = current_->payload;
  size_t n = std::min<size_t>(bytes.size(), current_->header.length - payload.size());
  payload.append(reinterpret_cast<const char*>(bytes.data()), n);
  return n;
}

Status FrameDecoder::Finish() const {
  if (!error_.ok()) return error_;
  if (header_have_ > 0) {
    return Status::DataLoss(
        fmt::format("stream ended inside a frame header: {} of {} bytes", header_have_,
                    kFrameHeaderSize));
  }
  if (current_) {
    return Status::DataLoss(fmt::format("stream ended inside a {} frame: {} of {} payload bytes",
                                        FrameTypeName(current_->header.type),
                                        current_->payload.size(), current_->header.length));
  }
  if (data_) {
    return Status::DataLoss(fmt::format("stream ended inside a DATA frame: {} of {} payload bytes",
                                        data_->length - data_left_, data_->length));
  }
  return Status::Ok();
}

size_t FrameDecoder::buffered_bytes() const {
  if (data_) return kFrameHeaderSize + (data_->length - data_left_);
  return header_have_ + (current_ ? kFrameHeaderSize + current_->payload.size() : 0);
}

}  // namespace ember::wire
