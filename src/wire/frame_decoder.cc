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

size_t FrameDecoder::FeedHeader(std::span<const uint8_t> bytes) {
  size_t n = std::min(bytes.size(), kFrameHeaderSize - header_have_);
  std::memcpy(header_bytes_.data() + header_have_, bytes.data(), n);
  header_have_ += n;
  if (header_have_ < kFrameHeaderSize) return n;
  header_have_ = 0;
  Result<FrameHeader> header = DecodeFrameHeader(header_bytes_);
  if (!header.ok()) {
    error_ = header.status();
    return n;
  }
  current_.emplace();
  current_->header = *header;
  current_->payload.reserve(header->length);  // bounded by DecodeFrameHeader
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
  return Status::Ok();
}

size_t FrameDecoder::buffered_bytes() const {
  return header_have_ + (current_ ? kFrameHeaderSize + current_->payload.size() : 0);
}

}  // namespace ember::wire
