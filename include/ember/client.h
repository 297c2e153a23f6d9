// Ember Client API for C++ training programs: the same loop as Python's ember.client
// (FLARE's nvflare.client): init, receive the global model, train, send the update.
//
//   auto client = ember::Client::Init().value();
//   while (auto model = client->Receive().value()) {
//     auto& w = model->params["w"];               // float32 tensor, row-major
//     ... train ...
//     client->Send({.params = {{"w", w}}, .metrics = {{"accuracy", acc}},
//                   .meta = {{"NUM_STEPS_CURRENT_ROUND", steps}}});
//   }
//
// The program is started by an Ember site (the launcher executor), which passes the link
// address and identity in EMBER_* environment variables. Thread-safety: one Client is
// used by one thread.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ember/status.h"

namespace ember {

// A dense tensor that owns its bytes. dtype uses safetensors names: "F32", "F64", "I64", ...
struct Tensor {
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;

  static Tensor FromFloats(std::vector<int64_t> shape, std::span<const float> values) {
    Tensor t{"F32", std::move(shape), {}};
    t.data.resize(values.size_bytes());
    std::memcpy(t.data.data(), values.data(), values.size_bytes());
    return t;
  }
  // REQUIRES: dtype == "F32".
  std::span<float> floats() { return {reinterpret_cast<float*>(data.data()), data.size() / sizeof(float)}; }
  std::span<const float> floats() const {
    return {reinterpret_cast<const float*>(data.data()), data.size() / sizeof(float)};
  }
};

struct FLModel {
  std::map<std::string, Tensor> params;
  std::string params_type = "FULL";                 // "FULL" or "DIFF"
  nlohmann::json metrics = nlohmann::json::object();
  nlohmann::json meta = nlohmann::json::object();   // e.g. NUM_STEPS_CURRENT_ROUND
  int current_round = 0;
  int total_rounds = 0;
};

class Client {
 public:
  virtual ~Client() = default;
  // Connects to the site that launched this program. Fails clearly when not launched by Ember.
  static Result<std::unique_ptr<Client>> Init();

  // The next global model, or std::nullopt once the job has ended.
  virtual Result<std::optional<FLModel>> Receive() = 0;
  // Sends this round's result.
  virtual Status Send(const FLModel& model) = 0;
  virtual bool IsRunning() const = 0;
  virtual const std::string& site_name() const = 0;
  virtual const std::string& job_id() const = 0;
};

}  // namespace ember
