#include "tensor/safetensors_stream.h"

#include <algorithm>
#include <string>

namespace ember::tensor {

Status SafetensorsStreamParser::Feed(std::span<const uint8_t> chunk) {
  if (!status_.ok()) return status_;
  if (chunk.size() > total_size_ - received_) {
    return Fail(Status::DataLoss("stream carries more than the announced " +
                                 std::to_string(total_size_) + " bytes"));
  }
  if (!header_ready()) {
    Result<size_t> taken = FeedHeader(chunk);
    if (!taken.ok()) return Fail(taken.status());
    chunk = chunk.subspan(*taken);
    if (!header_ready()) return Status::Ok();
  }
  uint64_t start = received_ - header_->data_offset;
  received_ += chunk.size();
  Status status = EmitData(start, chunk);
  return status.ok() ? status : Fail(status);
}

Status SafetensorsStreamParser::Finish() const {
  if (!status_.ok()) return status_;
  if (done()) return Status::Ok();
  return Status::DataLoss("stream ended after " + std::to_string(received_) + " of " +
                          std::to_string(total_size_) + " bytes");
}

Result<size_t> SafetensorsStreamParser::FeedHeader(std::span<const uint8_t> chunk) {
  size_t taken = 0;
  if (header_buf_.size() < 8) {
    taken = std::min(chunk.size(), 8 - header_buf_.size());
    header_buf_.insert(header_buf_.end(), chunk.begin(), chunk.begin() + taken);
    if (header_buf_.size() < 8) {
      received_ += taken;
      // A stream shorter than 8 bytes can never grow a header.
      if (total_size_ < 8) return ParseSafetensorsHeaderSize({}, total_size_).status();
      return taken;
    }
    EMBER_ASSIGN_OR_RETURN(header_size_, ParseSafetensorsHeaderSize(header_buf_, total_size_));
    header_buf_.reserve(8 + header_size_);  // bounded: checked just above
  }
  size_t more = std::min<uint64_t>(chunk.size() - taken, 8 + header_size_ - header_buf_.size());
  header_buf_.insert(header_buf_.end(), chunk.begin() + taken, chunk.begin() + taken + more);
  received_ += taken + more;
  EMBER_RETURN_IF_ERROR(ParseHeaderIfComplete());
  return taken + more;
}

Status SafetensorsStreamParser::ParseHeaderIfComplete() {
  if (header_buf_.size() < 8 + header_size_) return Status::Ok();
  EMBER_ASSIGN_OR_RETURN(SafetensorsHeader header,
                         ParseSafetensorsHeader(header_buf_, total_size_));
  header_ = std::move(header);
  std::vector<uint8_t>().swap(header_buf_);
  return EmitData(0, {});  // delivers empty tensors at offset 0
}

Status SafetensorsStreamParser::EmitData(uint64_t start, std::span<const uint8_t> bytes) {
  const std::vector<TensorInfo>& tensors = header_->tensors;
  uint64_t stop = start + bytes.size();
  while (next_tensor_ < tensors.size()) {
    const TensorInfo& t = tensors[next_tensor_];
    if (t.begin == t.end) {  // empty: one empty piece once its position is reached
      if (t.begin > stop) break;
      EMBER_RETURN_IF_ERROR(Emit(t, 0, {}));
      ++next_tensor_;
      continue;
    }
    if (t.begin >= stop) break;  // not reached yet
    uint64_t lo = std::max(t.begin, start);
    uint64_t hi = std::min(t.end, stop);
    if (lo < hi) EMBER_RETURN_IF_ERROR(Emit(t, lo - t.begin, bytes.subspan(lo - start, hi - lo)));
    if (t.end > stop) break;  // the rest of t comes with later chunks
    ++next_tensor_;
  }
  return Status::Ok();
}

Status SafetensorsStreamParser::Emit(const TensorInfo& tensor, uint64_t offset,
                                     std::span<const uint8_t> bytes) {
  if (!on_data) return Status::Ok();
  return on_data(tensor, offset, bytes);
}

Status SafetensorsStreamParser::Fail(Status status) {
  status_ = status;
  return status;
}

}  // namespace ember::tensor
