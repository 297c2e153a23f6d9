// GlobalModel: the round's global model as one immutable safetensors image in memory.
// Every client's download in a round reads the same buffer (no per-client copies).
//
//   EMBER_ASSIGN_OR_RETURN(GlobalModel m, GlobalModel::Load(job.server.initial_model));
//   reply.Reply(task_header, m.body());
//   EMBER_RETURN_IF_ERROR(m.Save(workspace + "/FL_global_model.safetensors"));
//
// Thread-safety: immutable after construction; copies share the buffer.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "cell/message.h"
#include "tensor/safetensors.h"

namespace ember::fl {

class GlobalModel {
 public:
  GlobalModel() = default;
  // Validates `image` as safetensors.
  static Result<GlobalModel> FromBytes(std::string image);
  static Result<GlobalModel> Load(const std::string& path);

  std::shared_ptr<cell::BodySource> body() const { return body_; }
  const tensor::SafetensorsView& view() const { return *view_; }
  uint64_t size() const { return body_ ? body_->size() : 0; }
  // Writes the image atomically (temp file + rename): a crash keeps the previous file.
  Status Save(const std::string& path) const;

 private:
  std::shared_ptr<cell::BodySource> body_;
  std::shared_ptr<tensor::SafetensorsView> view_;
};

}  // namespace ember::fl
