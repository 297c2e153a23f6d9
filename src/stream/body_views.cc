#include "stream/body_views.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace ember::stream {
namespace {

// A window onto a contiguous object; keeps the object alive while the reply is sent.
class ContiguousSlice final : public wire::ContiguousBody {
 public:
  ContiguousSlice(std::shared_ptr<const BodySource> object, uint64_t offset, uint64_t len)
      : object_(std::move(object)), data_(object_->contiguous() + offset), len_(len) {}
  uint64_t size() const override { return len_; }
  const uint8_t* contiguous() const override { return data_; }

 private:
  const std::shared_ptr<const BodySource> object_;
  const uint8_t* const data_;
  const uint64_t len_;
};

}  // namespace

Result<std::shared_ptr<BodySource>> SliceOf(std::shared_ptr<const BodySource> object, uint64_t offset,
                                            uint64_t len) {
  if (len == 0) return std::shared_ptr<BodySource>();
  if (object->contiguous() != nullptr) {
    return std::shared_ptr<BodySource>(std::make_shared<ContiguousSlice>(std::move(object), offset, len));
  }
  auto buffer = std::make_unique_for_overwrite<uint8_t[]>(len);
  uint64_t filled = 0;
  while (filled < len) {  // ReadAt may return less than asked
    EMBER_ASSIGN_OR_RETURN(size_t n, object->ReadAt(offset + filled, {buffer.get() + filled, len - filled}));
    if (n == 0) {
      return Status::DataLoss(fmt::format("object ended at {} while reading [{}, {})", offset + filled, offset,
                                          offset + len));
    }
    filled += n;
  }
  return wire::BufferBody(std::move(buffer), len);
}

Result<size_t> MeteredBody::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  Result<size_t> n = inner_->ReadAt(offset, out);
  if (n.ok()) {
    uint64_t end = offset + *n;
    uint64_t seen = high_water_.load(std::memory_order_relaxed);
    while (end > seen && !high_water_.compare_exchange_weak(seen, end, std::memory_order_relaxed)) {
    }
  }
  return n;
}

}  // namespace ember::stream
