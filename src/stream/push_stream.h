// PushStream: sends one blob or file to one receiver (job upload, results) as a single
// request whose body is the BodySource itself; the connection streams it in bounded
// frames, reading it chunk by chunk (a file is mmap'ed, never loaded whole). Progress is
// reported on both sides: the sender measures how far its connection has read the body;
// the receiver learns it from small "<topic>.progress" fires that overtake the body.
//
//   HandlePush(server, "job.upload", [](ReceivedPush p, cell::Responder r) { Save(p); r.Reply(); });
//   Result<cell::Message> ack = PushFile(admin, "server", "/tmp/job.zip",
//                                        {.topic = "job.upload", .h = {{"job", "J1"}}});
//
// Thread-safety: PushStream blocks its caller (not a cell handler) until the receiver
// replied or the timeout passed; its progress callback runs on the calling thread.
// HandlePush callbacks run on the receiving cell's workers.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "base/config.h"
#include "base/status.h"
#include "cell/cell.h"
#include "stream/progress.h"

namespace ember::stream {

using cell::BodySource;

struct PushOptions {
  std::string topic;                             // the receiver's HandlePush topic; REQUIRED
  cell::Json h = cell::Json::object();           // application headers delivered with the blob
  // whole transfer plus the receiver's reply (streaming_push_timeout)
  std::chrono::milliseconds timeout = base::DefaultOf(base::kStreamingPushTimeout);
  ProgressCallback on_progress;                  // sender side, on the calling thread
  std::chrono::milliseconds progress_interval{1000};
  std::chrono::milliseconds log_interval{5000};  // log a line this often for long pushes
  bool notify_receiver = true;                   // send "<topic>.progress" fires
};

// Sets timeout from `config` (a loaded Config; defaults come from the registry).
void ApplyConfig(const base::Config& config, PushOptions* options);

// Sends `body` to `dst` and returns the receiver's reply.
Result<cell::Message> PushStream(const std::shared_ptr<cell::Cell>& cell, const std::string& dst,
                                 std::shared_ptr<const BodySource> body, PushOptions options);
// PushStream of the file at `path` (mapped read-only; it must not change meanwhile).
Result<cell::Message> PushFile(const std::shared_ptr<cell::Cell>& cell, const std::string& dst,
                               const std::string& path, PushOptions options);

struct ReceivedPush {
  std::string src;      // the sender's FQCN
  std::string push_id;  // unique per push; empty if the sender was not PushStream
  cell::Json h;         // the sender's PushOptions::h
  std::shared_ptr<BodySource> body;
};
using PushHandler = std::function<void(ReceivedPush push, cell::Responder responder)>;
using PushProgressCallback =
    std::function<void(const std::string& src, const std::string& push_id, const TransferProgress& p)>;

struct PushReceiverOptions {
  // Receiver-side progress: approximate while running (the bytes the sender's connection
  // has read, ahead of arrival by what is in flight); done = true when the push arrived.
  PushProgressCallback on_progress;
  std::chrono::milliseconds log_interval{5000};
  size_t max_tracked = 1024;  // pushes tracked at once; more go untracked
};

// Registers `topic` and "<topic>.progress" on `cell`; `handler` runs once a push has
// fully arrived and must reply through the Responder (that reply is PushStream's result).
void HandlePush(const std::shared_ptr<cell::Cell>& cell, const std::string& topic, PushHandler handler,
                PushReceiverOptions options = {});

}  // namespace ember::stream
