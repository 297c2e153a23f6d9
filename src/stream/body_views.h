// Bodies that wrap another body (internal to the stream layer):
//   SliceOf    a byte range of an object, served as a chunk reply without copying when the
//              object is contiguous (memory or mmap); else the range is read up front.
//   MeteredBody counts how far the transport has read a pushed body (sender progress).
//
// Thread-safety: as BodySource: immutable, ReadAt may run on several threads at once.
#pragma once

#include <atomic>
#include <memory>

#include "cell/message.h"

namespace ember::stream {

using cell::BodySource;

// Bytes [offset, offset + len) of `object`. REQUIRES: offset + len <= object->size().
// For a non-contiguous object this reads the range now, on the calling thread.
Result<std::shared_ptr<BodySource>> SliceOf(std::shared_ptr<const BodySource> object, uint64_t offset,
                                            uint64_t len);

class MeteredBody final : public BodySource {
 public:
  explicit MeteredBody(std::shared_ptr<const BodySource> inner) : inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  const uint8_t* contiguous() const override { return inner_->contiguous(); }
  // The furthest byte the transport has read so far.
  uint64_t bytes_read() const { return high_water_.load(std::memory_order_relaxed); }

 private:
  const std::shared_ptr<const BodySource> inner_;
  mutable std::atomic<uint64_t> high_water_{0};
};

}  // namespace ember::stream
