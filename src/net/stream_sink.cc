#include "net/stream_sink.h"

#include <fmt/format.h>

#include <cstring>
#include <new>

namespace ember::net {
namespace {

class BufferingSink final : public StreamSink {
 public:
  BufferingSink(std::unique_ptr<uint8_t[]> data, uint64_t size) : data_(std::move(data)), size_(size) {}

  Status Write(std::span<const uint8_t> chunk) override {
    if (chunk.size() > size_ - filled_) {
      return Status::OutOfRange(fmt::format("body overflows its {} bytes", size_));
    }
    std::memcpy(data_.get() + filled_, chunk.data(), chunk.size());
    filled_ += chunk.size();
    return Status::Ok();
  }

  Result<std::shared_ptr<wire::BodySource>> Finish() override {
    if (filled_ != size_) {
      return Status::DataLoss(fmt::format("body has {} of {} bytes", filled_, size_));
    }
    if (size_ == 0) return std::shared_ptr<wire::BodySource>();  // empty body reads as none
    return wire::BufferBody(std::move(data_), size_);
  }

  void Cancel(const Status&) override { data_.reset(); }

 private:
  std::unique_ptr<uint8_t[]> data_;
  uint64_t size_;
  uint64_t filled_ = 0;
};

}  // namespace

Result<std::unique_ptr<StreamSink>> MakeBufferingSink(uint64_t body_size) {
  std::unique_ptr<uint8_t[]> data;
  if (body_size > 0) {
    data.reset(new (std::nothrow) uint8_t[body_size]);  // uninitialised: DATA overwrites it
    if (!data) {
      return Status::ResourceExhausted(fmt::format("cannot allocate {} bytes for a body", body_size));
    }
  }
  return std::unique_ptr<StreamSink>(std::make_unique<BufferingSink>(std::move(data), body_size));
}

}  // namespace ember::net
