// GlobalModel: the round's global model, a safetensors file on disk. Every client's
// download in a round reads the same file through pread (one buffer for all, no
// per-client copies, and page-cache memory rather than process RSS).
//
//   EMBER_ASSIGN_OR_RETURN(GlobalModel m, GlobalModel::Open(job.server.initial_model));
//   responder.Reply(task_header, m.body());
//   EMBER_RETURN_IF_ERROR(m.CopyTo(workspace + "/best_FL_global_model.safetensors"));
//
// The open file descriptor keeps this round's bytes readable even after a later round
// renames a new model over the same path. Thread-safety: immutable; copies share the fd.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "cell/message.h"
#include "tensor/safetensors_header.h"

namespace ember::fl {

class GlobalModel {
 public:
  GlobalModel() = default;
  // Opens and validates `path` (header only is read here).
  static Result<GlobalModel> Open(const std::string& path);

  std::shared_ptr<cell::BodySource> body() const { return body_; }
  const tensor::SafetensorsHeader& header() const { return *header_; }
  const std::vector<tensor::TensorInfo>& tensors() const { return header_->tensors; }
  uint64_t size() const { return body_ ? body_->size() : 0; }
  const std::string& path() const { return path_; }
  // Reads `out.size()` bytes of tensor `info` starting at byte `offset` within it.
  Status ReadTensor(const tensor::TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const;
  // Copies the model's bytes to `path` atomically (temp file + rename).
  Status CopyTo(const std::string& path) const;

 private:
  std::string path_;
  std::shared_ptr<cell::BodySource> body_;
  std::shared_ptr<const tensor::SafetensorsHeader> header_;
};

}  // namespace ember::fl
