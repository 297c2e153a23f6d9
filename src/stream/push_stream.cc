// PushStream (sender loop sampling a MeteredBody) and HandlePush (receiver progress table).
#include "stream/push_stream.h"

#include <fmt/format.h>

#include <deque>
#include <future>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "stream/body_views.h"
#include "stream/object_ref.h"
#include "stream/protocol.h"

namespace ember::stream {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kStaleProgress = 60s;     // a tracked push with no news this long is forgotten
constexpr size_t kRememberArrived = 256;  // arrived pushes remembered to drop late progress

// Receiver-side progress of the pushes in flight, keyed by "<src>/<push_id>".
class PushTracker {
 public:
  PushTracker(std::string topic, PushReceiverOptions options) : topic_(std::move(topic)), options_(std::move(options)) {}

  void OnProgress(const std::string& src, const std::string& id, uint64_t bytes, uint64_t size) {
    if (id.empty() || bytes >= size) return;  // the push itself is about to arrive
    if (auto meter = Find(src, id, size, /*create=*/true)) meter->Update(bytes);
  }

  void OnArrived(const std::string& src, const std::string& id, uint64_t size) {
    std::shared_ptr<ProgressMeter> meter = Find(src, id, size, /*create=*/false);
    std::string key = src + "/" + id;
    {
      std::lock_guard lock(mu_);
      entries_.erase(key);
      // A progress fire may still be queued behind the push: it must not start a new entry.
      arrived_.insert(key);
      arrived_order_.push_back(key);
      if (arrived_order_.size() > kRememberArrived) {
        arrived_.erase(arrived_order_.front());
        arrived_order_.pop_front();
      }
    }
    if (!meter) meter = MakeMeter(src, id, size);  // small pushes send no progress
    meter->Update(size);
    meter->Finish(Status::Ok());
  }

 private:
  struct Entry {
    std::shared_ptr<ProgressMeter> meter;
    Clock::time_point last_seen;
  };

  std::shared_ptr<ProgressMeter> MakeMeter(const std::string& src, const std::string& id, uint64_t size) {
    ProgressCallback cb;
    if (options_.on_progress) cb = [f = options_.on_progress, src, id](const TransferProgress& p) { f(src, id, p); };
    return std::make_shared<ProgressMeter>(fmt::format("push {} {} from {}", topic_, id, src), size, std::move(cb),
                                           0ms, options_.log_interval);
  }

  std::shared_ptr<ProgressMeter> Find(const std::string& src, const std::string& id, uint64_t size, bool create) {
    std::string key = src + "/" + id;
    Clock::time_point now = Clock::now();
    std::lock_guard lock(mu_);
    if (auto it = entries_.find(key); it != entries_.end()) {
      it->second.last_seen = now;
      return it->second.meter;
    }
    if (!create || arrived_.count(key)) return nullptr;
    if (entries_.size() >= options_.max_tracked) {
      std::erase_if(entries_, [now](const auto& kv) { return now - kv.second.last_seen > kStaleProgress; });
      if (entries_.size() >= options_.max_tracked) return nullptr;
    }
    Entry& e = entries_[key];
    e.meter = MakeMeter(src, id, size);
    e.last_seen = now;
    return e.meter;
  }

  const std::string topic_;
  const PushReceiverOptions options_;
  std::mutex mu_;
  // Guarded by mu_.
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_set<std::string> arrived_;  // recently arrived pushes
  std::deque<std::string> arrived_order_;    // oldest first, bounds arrived_
};

}  // namespace

Result<cell::Message> PushStream(const std::shared_ptr<cell::Cell>& cell, const std::string& dst,
                                 std::shared_ptr<const BodySource> body, PushOptions options) {
  if (!cell || !body || options.topic.empty()) {
    return Status::InvalidArgument("PushStream needs a cell, a body and a topic");
  }
  std::string push_id = "P" + NewRefId().substr(1);
  uint64_t size = body->size();
  auto metered = std::make_shared<MeteredBody>(std::move(body));
  cell::Json h = options.h.is_object() ? options.h : cell::Json::object();
  h[protocol::kPush] = {{protocol::kId, push_id}, {protocol::kSize, size}};

  auto reply = std::make_shared<std::promise<Result<cell::Message>>>();
  std::future<Result<cell::Message>> done = reply->get_future();
  cell->RequestAsync(dst, cell::Message::Make(options.topic, std::move(h), metered), options.timeout,
                     [reply](Result<cell::Message> r) { reply->set_value(std::move(r)); });

  ProgressMeter meter(fmt::format("push {} {} to {}", options.topic, push_id, dst), size, options.on_progress, 0ms,
                      options.log_interval);
  // The request's own timer ends it; this bound only guards against a lost completion.
  Clock::time_point give_up = Clock::now() + options.timeout + 5s;
  uint64_t last_told = 0;
  while (done.wait_for(options.progress_interval) != std::future_status::ready) {
    if (Clock::now() > give_up) {
      Status s = Status::DeadlineExceeded(fmt::format("push {} to {} never completed", push_id, dst));
      meter.Finish(s);
      return s;
    }
    uint64_t bytes = metered->bytes_read();
    meter.Update(bytes);
    if (options.notify_receiver && bytes != last_told && bytes < size) {
      cell::Json p = {{protocol::kPushId, push_id}, {protocol::kBytes, bytes}, {protocol::kSize, size}};
      (void)cell->Fire(dst, cell::Message::Make(protocol::ProgressTopic(options.topic), std::move(p)));
      last_told = bytes;
    }
  }
  Result<cell::Message> result = done.get();
  if (result.ok()) meter.Update(size);
  meter.Finish(result.status());
  return result;
}

Result<cell::Message> PushFile(const std::shared_ptr<cell::Cell>& cell, const std::string& dst,
                               const std::string& path, PushOptions options) {
  EMBER_ASSIGN_OR_RETURN(std::shared_ptr<BodySource> body, cell::FileBody(path));
  return PushStream(cell, dst, std::move(body), std::move(options));
}

void HandlePush(const std::shared_ptr<cell::Cell>& cell, const std::string& topic, PushHandler handler,
                PushReceiverOptions options) {
  auto tracker = std::make_shared<PushTracker>(topic, std::move(options));
  cell->Handle(protocol::ProgressTopic(topic), [tracker](cell::Message m, cell::Responder) {
    const cell::Json& h = m.h();
    tracker->OnProgress(m.src(), protocol::GetString(h, protocol::kPushId),
                        protocol::GetU64(h, protocol::kBytes).value_or(0), protocol::GetU64(h, protocol::kSize).value_or(0));
  });
  cell->Handle(topic, [tracker, handler = std::move(handler)](cell::Message m, cell::Responder r) {
    ReceivedPush push{.src = m.src(), .push_id = {}, .h = m.h(), .body = std::move(m.body)};
    if (auto it = push.h.find(protocol::kPush); it != push.h.end() && it->is_object()) {
      push.push_id = protocol::GetString(*it, protocol::kId);
      push.h.erase(it);
    }
    if (!push.push_id.empty()) tracker->OnArrived(push.src, push.push_id, push.body ? push.body->size() : 0);
    handler(std::move(push), std::move(r));
  });
}

void ApplyConfig(const base::Config& config, PushOptions* options) {
  options->timeout = config.Get(base::kStreamingPushTimeout);
}

}  // namespace ember::stream
