// Download: the receiver side of pull downloads (docs/streaming.md). Pulls the object
// `ref_id` from the DownloadService of the cell `owner`, chunk by chunk and in order,
// keeping up to `window` chunk requests outstanding. A chunk request that times out or
// loses its connection is retried with exponential backoff (RetryPolicy), asking for the
// same offset, so a download interrupted by a reconnect resumes where it stopped.
//
//   auto d = Download(cell, "server", ref, [&](const DownloadChunk& c) { return Write(c); });
//   Status s = d->Wait();      // or d->Abort() from another thread
//   Result<std::shared_ptr<BodySource>> model = DownloadToMemory(cell, "server", ref);
//
// Thread-safety: DownloadHandle methods are thread-safe. The sink and the progress
// callback are called one at a time, in offset order, on the cell's worker threads (the
// final done report may come from whichever thread ended the download, e.g. the caller of
// Abort), and never after Wait() returned. Wait() must not be called from a cell handler
// or from the sink.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/config.h"
#include "base/status.h"
#include "cell/cell.h"
#include "stream/object_ref.h"
#include "stream/progress.h"
#include "stream/retry_policy.h"

namespace ember::stream {

using cell::BodySource;

struct DownloadOptions {
  std::string topic_prefix = "dl";                  // must match the owner's DownloadService
  uint64_t chunk_size = 2 << 20;                    // bytes asked for per request
  int window = 2;                                   // chunk requests outstanding at once (K)
  // per chunk request, per attempt (streaming_per_request_timeout)
  std::chrono::milliseconds request_timeout = base::DefaultOf(base::kStreamingPerRequestTimeout);
  RetryPolicy retry;                                // 3 retries, 1 s doubling, cap 60 s (config)
  uint64_t start_offset = 0;                        // resume: the bytes before it are not fetched
  ProgressCallback on_progress;                     // bytes, MB/s, ETA
  std::chrono::milliseconds progress_interval{1000};
  std::chrono::milliseconds log_interval{5000};     // log a line this often for long downloads
};

// Sets request_timeout and retry from `config` (a loaded Config; defaults come from the registry).
void ApplyConfig(const base::Config& config, DownloadOptions* options);

struct DownloadChunk {
  uint64_t offset = 0;      // of bytes[0] in the object
  uint64_t total_size = 0;  // the object's size
  std::span<const uint8_t> bytes;
};
// Returns non-OK to stop the download with that error.
using ChunkSink = std::function<Status(const DownloadChunk&)>;

struct DownloadStats {
  uint64_t requests = 0;  // chunk requests sent, retries included
  uint64_t retries = 0;
  uint64_t bytes = 0;     // delivered to the sink
};

class DownloadHandle {
 public:
  virtual ~DownloadHandle() = default;
  // Stops the download: no more requests or retries, no more sink calls once a running
  // one returns; Wait() returns kAborted. Idempotent. Dropping the handle does not abort.
  virtual void Abort() = 0;
  // Blocks until the download ended: OK when every byte reached the sink.
  virtual Status Wait() = 0;
  // As Wait, for at most `timeout`; nullopt if still running.
  virtual std::optional<Status> WaitFor(std::chrono::milliseconds timeout) = 0;
  virtual TransferProgress progress() const = 0;
  virtual DownloadStats stats() const = 0;
};

// Starts downloading at once. Bad arguments (no cell or sink, chunk_size 0, window < 1)
// end the download at once with kInvalidArgument, before any request is sent. The
// download holds the cell weakly: once the cell is released it ends with kAborted.
std::shared_ptr<DownloadHandle> Download(const std::shared_ptr<cell::Cell>& cell, std::string owner, RefId ref_id,
                                         ChunkSink sink, DownloadOptions options = {});

// Downloads the whole object into one buffer (allocated from the size in the first reply).
Result<std::shared_ptr<BodySource>> DownloadToMemory(const std::shared_ptr<cell::Cell>& cell, std::string owner,
                                                     RefId ref_id, DownloadOptions options = {});
// Downloads into `path` via "<path>.part", renamed on success and removed on failure.
Status DownloadToFile(const std::shared_ptr<cell::Cell>& cell, std::string owner, RefId ref_id,
                      const std::string& path, DownloadOptions options = {});

}  // namespace ember::stream
