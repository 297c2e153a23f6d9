// DownloadService: the owner side of pull downloads (FLARE's DownloadService +
// ObjectDownloader; docs/streaming.md). The owner registers an object (any BodySource: a
// byte string, an mmap'ed file, a model image) and gets a RefId. Receivers pull it chunk
// by chunk (download.h), each at its own pace. The transaction of an object ends when
// all expected receivers reported done, after `inactivity_timeout` without a request, or
// on Cancel; it then drops its reference to the object (memory is freed once the chunk
// replies already queued are sent).
//
//   auto service = DownloadService::Install(cell);
//   RefId ref = service->Register(model, {.num_receivers = 8}).value();
//   task.h()["model"] = ObjectRef{cell->name(), ref, model->size()}.ToJson();
//
// Thread-safety: all methods are thread-safe. Chunks for many receivers are produced
// concurrently on the cell's workers: the transaction table lock is held for lookups
// only, never while a chunk is read (BodySource::ReadAt is thread-safe). `on_done`
// callbacks run on a cell worker or the stream timer thread and must not block.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "cell/cell.h"
#include "stream/object_ref.h"
#include "stream/timer_queue.h"

namespace ember::stream {

using cell::BodySource;

struct DownloadServiceOptions {
  std::string topic_prefix = "dl";                   // handles "<prefix>.chunk" and "<prefix>.done"
  uint64_t max_chunk_size = 8 << 20;                 // a larger max_len gets this many bytes
  std::chrono::milliseconds monitor_interval{1000};  // how often inactivity is checked
  size_t max_ended_refs = 4096;                      // ended refs remembered for late requests
};

enum class TransactionStatus {
  kFinished,   // every expected receiver reported done (ok or failed)
  kTimedOut,   // no request for inactivity_timeout
  kCancelled,  // Cancel() or Shutdown(); receivers get kAborted
};
std::string_view TransactionStatusName(TransactionStatus s);

struct TransactionResult {
  RefId ref_id;
  TransactionStatus status = TransactionStatus::kFinished;
  std::string reason;                         // the Cancel reason, if any
  std::vector<std::string> receivers_ok;      // FQCNs that reported every byte received
  std::vector<std::string> receivers_failed;  // FQCNs that reported giving up
  uint64_t bytes_served = 0;                  // over all receivers and retries
  uint64_t chunks_served = 0;
  std::chrono::milliseconds elapsed{0};       // registration to end
};

struct RegisterOptions {
  // Distinct receivers whose done reports end the transaction. 0 = not known: only the
  // inactivity timeout or Cancel end it.
  int num_receivers = 1;
  // Ends the transaction when no chunk request or done report arrived for this long.
  // Must exceed a receiver's worst retry sequence (request_timeout x 4 + backoffs) and the
  // time until the last receiver starts.
  std::chrono::milliseconds inactivity_timeout{300000};
  // Empty: a new id. Else this id (e.g. re-registering the same object after a restart so
  // interrupted receivers resume); fails with kAlreadyExists if it is active.
  RefId ref_id;
  // Called once when the transaction ends (gating: the owner may wait for receivers).
  std::function<void(const TransactionResult&)> on_done;
};

// Fault injection for tests: what the service does with one chunk request.
struct ChunkRequestInfo {
  RefId ref_id;
  std::string receiver;
  uint64_t offset = 0;
  uint64_t max_len = 0;
};
struct ChunkFault {
  enum Kind { kServe, kDelay, kError } kind = kServe;
  std::chrono::milliseconds delay{0};  // kDelay: reply this much later (past the timeout = dropped)
  Status error;                        // kError: reply with this error
};
using ChunkHook = std::function<ChunkFault(const ChunkRequestInfo&)>;

class DownloadService : public std::enable_shared_from_this<DownloadService> {
 public:
  // Registers the service's handlers on `cell` (before traffic, like any handler). The
  // cell keeps only a weak reference: the caller owns the service.
  // REQUIRES: cell != nullptr.
  static std::shared_ptr<DownloadService> Install(const std::shared_ptr<cell::Cell>& cell,
                                                  DownloadServiceOptions options = {});
  // Cancels every transaction.
  ~DownloadService();
  DownloadService(const DownloadService&) = delete;
  DownloadService& operator=(const DownloadService&) = delete;

  // Makes `object` downloadable. REQUIRES: object != nullptr.
  Result<RefId> Register(std::shared_ptr<const BodySource> object, RegisterOptions options = {});
  // Ends the transaction now; later (and retried) requests get kAborted with `reason`.
  Status Cancel(const RefId& ref_id, std::string reason);
  // Waits up to `timeout` for the transaction to end; nullopt if it has not (or the ref
  // is unknown and was not ended recently).
  std::optional<TransactionResult> WaitDone(const RefId& ref_id, std::chrono::milliseconds timeout);
  // Cancels every transaction and refuses new ones.
  void Shutdown();

  size_t active_transactions() const;
  const std::string& owner() const { return owner_; }
  // Test hook: consulted for every chunk request; null (the default) serves all.
  void SetChunkHook(ChunkHook hook);

  DownloadService(std::string owner, DownloadServiceOptions options);  // use Install()

 private:
  struct Transaction;
  struct Lookup;

  void OnChunkRequest(cell::Message request, cell::Responder responder);
  void OnDoneReport(const cell::Message& report);
  Result<Lookup> Find(const RefId& ref_id);
  void Serve(const Lookup& found, const ChunkRequestInfo& info, cell::Responder responder);
  void End(const RefId& ref_id, TransactionStatus status, std::string reason);
  void Sweep();
  void ScheduleSweep();
  void RememberEnded(TransactionResult result);  // REQUIRES: mu_ held

  const std::string owner_;
  const DownloadServiceOptions options_;

  mutable std::mutex mu_;
  std::condition_variable ended_cv_;
  // Guarded by mu_.
  std::unordered_map<RefId, std::shared_ptr<Transaction>> active_;
  std::unordered_map<RefId, TransactionResult> ended_;
  std::deque<RefId> ended_order_;  // oldest first, bounds ended_
  ChunkHook hook_;
  TimerQueue::TaskId sweep_task_ = 0;
  bool shut_down_ = false;
};

}  // namespace ember::stream
