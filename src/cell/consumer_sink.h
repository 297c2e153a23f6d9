// ConsumerSink: the net::StreamSink behind Cell::HandleStream. Each DATA chunk is copied
// off the io thread onto the cell's worker pool and handed to the user's BodyConsumer in
// order; flow-control credit is returned only after the consumer processed the chunk, so
// a slow consumer holds its sender back and at most one window is queued per stream.
// When every byte was consumed (or the stream failed) `done` runs on a worker.
//
//   auto sink = MakeConsumerSink(std::move(consumer), post_to_workers,
//                                [](Status s) { /* reply, or run on_complete */ });
//
// Thread-safety: Write/Finish/Cancel come from one io thread; the consumer runs on one
// worker at a time (never two chunks at once); `done` runs exactly once.
#pragma once

#include <functional>
#include <memory>

#include "cell/cell.h"
#include "net/stream_sink.h"

namespace ember::cell {

// The body a ConsumerSink or a relay (relay_sink.h) delivers upward: empty; tells the
// cell that the sink already handled the message itself (dispatched it or will, or
// forwarded it as it arrived).
class ConsumedBody final : public BodySource {
 public:
  uint64_t size() const override { return 0; }
  Result<size_t> ReadAt(uint64_t, std::span<uint8_t>) const override { return size_t{0}; }
};

// Queues a task on the cell's workers; false if the cell is stopping (then the stream
// is abandoned with the cell).
using PostFn = std::function<bool(std::function<void()>)>;

std::unique_ptr<net::StreamSink> MakeConsumerSink(std::unique_ptr<BodyConsumer> consumer, PostFn post,
                                                  std::function<void(Status)> done);

}  // namespace ember::cell
