// ProgressBody: a BodySource that logs the progress of a long transfer as the connection
// reads it (bytes, rate, ETA; see base::TransferProgress). Used for models sent to sites.
//
//   r.Reply({}, WithProgress(model, log, "site-1 job J round 2: model"));
//
// Thread-safety: as the wrapped body (ReadAt may be called from any thread).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "base/progress.h"
#include "cell/cell.h"

namespace ember::fl {

class ProgressBody final : public cell::BodySource {
 public:
  ProgressBody(std::shared_ptr<cell::BodySource> inner, std::shared_ptr<spdlog::logger> log, std::string what)
      : inner_(std::move(inner)), log_(std::move(log)), what_(std::move(what)), progress_(inner_->size()) {}
  uint64_t size() const override { return inner_->size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    auto n = inner_->ReadAt(offset, out);
    if (n.ok()) {
      if (auto line = progress_.Add(*n)) log_->info("{}: {}", what_, *line);
    }
    return n;
  }

 private:
  std::shared_ptr<cell::BodySource> inner_;
  std::shared_ptr<spdlog::logger> log_;
  std::string what_;
  mutable base::TransferProgress progress_;
};

inline std::shared_ptr<cell::BodySource> WithProgress(std::shared_ptr<cell::BodySource> body,
                                                      std::shared_ptr<spdlog::logger> log, std::string what) {
  if (!body) return body;
  return std::make_shared<ProgressBody>(std::move(body), std::move(log), std::move(what));
}

}  // namespace ember::fl
