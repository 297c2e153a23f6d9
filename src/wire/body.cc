#include "wire/body.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace ember::wire {
namespace {

class StringBody final : public ContiguousBody {
 public:
  explicit StringBody(std::string bytes) : bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }
  const uint8_t* contiguous() const override {
    return reinterpret_cast<const uint8_t*>(bytes_.data());
  }

 private:
  const std::string bytes_;
};

class OwnedBufferBody final : public ContiguousBody {
 public:
  OwnedBufferBody(std::unique_ptr<uint8_t[]> data, uint64_t size)
      : data_(std::move(data)), size_(size) {}
  uint64_t size() const override { return size_; }
  const uint8_t* contiguous() const override { return data_.get(); }

 private:
  const std::unique_ptr<uint8_t[]> data_;
  const uint64_t size_;
};

}  // namespace

Result<size_t> ContiguousBody::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size()) {
    return Status::OutOfRange(fmt::format("read at {} past the body end {}", offset, size()));
  }
  size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size() - offset));
  if (n > 0) std::memcpy(out.data(), contiguous() + offset, n);
  return n;
}

std::shared_ptr<BodySource> BytesBody(std::string bytes) {
  return std::make_shared<StringBody>(std::move(bytes));
}

std::shared_ptr<BodySource> BufferBody(std::unique_ptr<uint8_t[]> data, uint64_t size) {
  return std::make_shared<OwnedBufferBody>(std::move(data), size);
}

}  // namespace ember::wire
