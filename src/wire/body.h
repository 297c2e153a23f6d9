// BodySource: the read-only bytes of a message body, wherever they live (memory, an
// mmap'ed file, produced lazily). The transport reads a body in chunks with ReadAt and
// never needs it as one buffer.
//
//   std::shared_ptr<BodySource> b = BytesBody("hello");
//   std::array<uint8_t, 4> buf;
//   Result<size_t> n = b->ReadAt(1, buf);   // "ello"
//
// Thread-safety: implementations are immutable after construction; ReadAt may be called
// from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"

namespace ember::wire {

class BodySource {
 public:
  virtual ~BodySource() = default;
  virtual uint64_t size() const = 0;
  // Copies min(out.size(), size() - offset) bytes starting at `offset` into `out`.
  // Returns the number of bytes copied. Safe to call concurrently.
  virtual Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const = 0;
  // The whole body as one contiguous range if it is in memory or mapped, else nullptr.
  virtual const uint8_t* contiguous() const { return nullptr; }
};

// A body whose bytes are one contiguous range; ReadAt copies from it.
class ContiguousBody : public BodySource {
 public:
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
};

// A body held in memory.
std::shared_ptr<BodySource> BytesBody(std::string bytes);
// A body that owns `size` bytes at `data` (filled by a receiver).
std::shared_ptr<BodySource> BufferBody(std::unique_ptr<uint8_t[]> data, uint64_t size);

}  // namespace ember::wire
