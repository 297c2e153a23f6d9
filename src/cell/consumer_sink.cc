#include "cell/consumer_sink.h"

#include <deque>
#include <mutex>
#include <vector>

namespace ember::cell {

namespace {

// Shared by the sink (owned by the connection) and the drain tasks on the workers.
struct StreamState : std::enable_shared_from_this<StreamState> {
  std::unique_ptr<BodyConsumer> consumer;
  PostFn post;
  std::function<void(Status)> done;
  net::StreamCredit credit;

  std::mutex mu;
  // Guarded by mu.
  std::deque<std::vector<uint8_t>> queue;
  bool running = false;    // a drain task is posted or running
  bool finished = false;   // every byte arrived
  bool ended = false;      // done() was scheduled
  Status error;            // first consumer error, or why the stream broke

  void Schedule() {  // REQUIRES: mu held, !running
    running = true;
    if (!post([self = shared_from_this()] { self->Drain(); })) running = false;
  }

  void Drain() {
    for (;;) {
      std::vector<uint8_t> chunk;
      bool got = false, end = false;
      Status s;
      {
        std::lock_guard lock(mu);
        if (queue.empty()) {
          running = false;
          end = (finished || !error.ok()) && !ended;
          if (end) ended = true;
        } else {
          chunk = std::move(queue.front());
          queue.pop_front();
          got = true;
          s = error;
        }
      }
      if (!got) {
        if (end) End();
        return;
      }
      if (s.ok()) s = consumer->Write(chunk);
      credit.Consumed(chunk.size());  // a failed stream still drains, so its sender is not stuck
      if (!s.ok()) {
        std::lock_guard lock(mu);
        if (error.ok()) error = s;
      }
    }
  }

  void End() {  // called once, by Drain, without mu held
    Status s;
    {
      std::lock_guard lock(mu);
      s = error;
    }
    if (s.ok()) s = consumer->Finish();
    if (!s.ok()) consumer->Cancel(s);
    done(s);
  }
};

class ConsumerSink final : public net::StreamSink {
 public:
  explicit ConsumerSink(std::shared_ptr<StreamState> state) : state_(std::move(state)) {}

  Status Write(std::span<const uint8_t> chunk) override {
    std::lock_guard lock(state_->mu);
    if (!state_->error.ok()) {  // the consumer failed: discard, but keep the sender moving
      state_->credit.Consumed(chunk.size());
      return Status::Ok();
    }
    state_->queue.emplace_back(chunk.begin(), chunk.end());
    if (!state_->running) state_->Schedule();
    return Status::Ok();
  }
  Result<std::shared_ptr<wire::BodySource>> Finish() override {
    std::lock_guard lock(state_->mu);
    state_->finished = true;
    if (!state_->running) state_->Schedule();
    return std::shared_ptr<wire::BodySource>(std::make_shared<ConsumedBody>());
  }
  void Cancel(const Status& why) override {
    std::lock_guard lock(state_->mu);
    if (state_->error.ok()) state_->error = why;
    state_->queue.clear();
    if (!state_->running && !state_->ended) state_->Schedule();
  }
  net::CreditPolicy credit_policy() const override { return net::CreditPolicy::kManual; }
  void BindCredit(net::StreamCredit credit) override { state_->credit = std::move(credit); }

 private:
  std::shared_ptr<StreamState> state_;
};

}  // namespace

std::unique_ptr<net::StreamSink> MakeConsumerSink(std::unique_ptr<BodyConsumer> consumer, PostFn post,
                                                  std::function<void(Status)> done) {
  auto state = std::make_shared<StreamState>();
  state->consumer = std::move(consumer);
  state->post = std::move(post);
  state->done = std::move(done);
  return std::make_unique<ConsumerSink>(std::move(state));
}

}  // namespace ember::cell
