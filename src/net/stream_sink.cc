#include "net/stream_sink.h"

#include <fmt/format.h>

#include <sys/mman.h>

#include <cstring>

namespace ember::net {
namespace {

// Address space for a body, reserved but not committed: pages become memory only as DATA
// is written into them, so a HEAD that claims a huge body costs nothing until the bytes
// really arrive (and a truncated stream never holds more than what it sent).
class ReservedBuffer {
 public:
  static Result<std::unique_ptr<ReservedBuffer>> Reserve(uint64_t size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return Status::ResourceExhausted(fmt::format("cannot reserve {} bytes for a body", size));
    return std::unique_ptr<ReservedBuffer>(new ReservedBuffer(static_cast<uint8_t*>(p), size));
  }
  ~ReservedBuffer() { ::munmap(data_, size_); }
  uint8_t* data() const { return data_; }

 private:
  ReservedBuffer(uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  uint8_t* data_;
  uint64_t size_;
};

class ReservedBody final : public wire::ContiguousBody {
 public:
  ReservedBody(std::unique_ptr<ReservedBuffer> buf, uint64_t size) : buf_(std::move(buf)), size_(size) {}
  uint64_t size() const override { return size_; }
  const uint8_t* contiguous() const override { return buf_->data(); }

 private:
  std::unique_ptr<ReservedBuffer> buf_;
  uint64_t size_;
};

class BufferingSink final : public StreamSink {
 public:
  BufferingSink(std::unique_ptr<ReservedBuffer> data, uint64_t size) : data_(std::move(data)), size_(size) {}

  Status Write(std::span<const uint8_t> chunk) override {
    if (chunk.size() > size_ - filled_) {
      return Status::OutOfRange(fmt::format("body overflows its {} bytes", size_));
    }
    if (chunk.empty()) return Status::Ok();  // an empty body has no buffer at all
    std::memcpy(data_->data() + filled_, chunk.data(), chunk.size());
    filled_ += chunk.size();
    return Status::Ok();
  }

  Result<std::shared_ptr<wire::BodySource>> Finish() override {
    if (filled_ != size_) {
      return Status::DataLoss(fmt::format("body has {} of {} bytes", filled_, size_));
    }
    if (size_ == 0) return std::shared_ptr<wire::BodySource>();  // empty body reads as none
    return std::shared_ptr<wire::BodySource>(std::make_shared<ReservedBody>(std::move(data_), size_));
  }

  void Cancel(const Status&) override { data_.reset(); }
  CreditPolicy credit_policy() const override { return CreditPolicy::kWholeBody; }

 private:
  std::unique_ptr<ReservedBuffer> data_;
  uint64_t size_;
  uint64_t filled_ = 0;
};

}  // namespace

Result<std::unique_ptr<StreamSink>> MakeBufferingSink(uint64_t body_size) {
  std::unique_ptr<ReservedBuffer> data;
  if (body_size > 0) {
    EMBER_ASSIGN_OR_RETURN(data, ReservedBuffer::Reserve(body_size));
  }
  return std::unique_ptr<StreamSink>(std::make_unique<BufferingSink>(std::move(data), body_size));
}

}  // namespace ember::net
