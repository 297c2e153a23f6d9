// BodySource: the read-only bytes of a message body, wherever they live (memory, an
// mmap'ed file, produced lazily). The transport reads a body in chunks with ReadAt and
// never needs it as one buffer.
//
//   std::shared_ptr<BodySource> b = BytesBody("hello");
//   std::array<uint8_t, 4> buf;
//   Result<size_t> n = b->ReadAt(1, buf);   // "ello"
//
// A *live* body is one whose bytes are still arriving (a relay forwarding a stream while
// it is received): available() says how many can be read now, and NotifyAvailable wakes
// the reader when more arrive. Every other body has all of its bytes available at once.
//
// Thread-safety: implementations are immutable after construction; ReadAt may be called
// from several threads at once. A live body documents its own rule (a relay's is read
// once, in order, by one reader); available() and NotifyAvailable may be called from any
// thread.
#pragma once

#include <cstdint>
#include <functional>
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

  // Live bodies only (the defaults describe a body that is all there).
  // Bytes from the start that ReadAt can return now. Only grows. A live body that failed
  // reports size(), so that its reader goes on to ReadAt and gets the error.
  virtual uint64_t available() const { return size(); }
  // Calls `wake` once, from any thread (possibly this one, before returning), as soon as
  // available() > `offset`. `wake` must be quick and must not call back into the body
  // (post to the reader's thread). A newer call replaces a pending `wake`.
  virtual void NotifyAvailable(uint64_t offset, std::function<void()> wake) const {
    if (wake) wake();
  }
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
