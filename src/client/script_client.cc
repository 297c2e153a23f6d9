// ember::Client for C++ training programs (include/ember/client.h): a leaf cell named
// $EMBER_CELL_NAME ("<site>.<job_id>") connected to the site's cell at $EMBER_LINK. It
// pulls tasks with link.get_task, fetches each task's model from the server with
// fl.get_model, sends the result to the server with fl.submit_result (both relayed by the
// site's cell as they stream) and then tells the site with link.submit
// (docs/wire-format.md §6-7). Model bodies are safetensors images, parsed and encoded by
// the tensor layer.
//
// Thread-safety: one Client is used by one thread (see client.h); the cell it owns is
// internally thread-safe.
#include "ember/client.h"

#include <chrono>
#include <cstdlib>
#include <utility>

#include "base/config.h"
#include "base/log.h"
#include "cell/cell.h"
#include "cell/message.h"
#include "tensor/dtype.h"
#include "tensor/safetensors.h"
#include "tensor/safetensors_header.h"
#include "tensor/tensor.h"

namespace ember {
namespace {

const char* const kServer = "server";

struct LinkEnv {
  std::string link, token, site, job_id, cell_name;
};

Result<std::string> RequiredEnv(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    return Status::FailedPrecondition(std::string("not started by ember: ") + name +
                                      " is not set (run the program through an Ember job)");
  }
  return std::string(v);
}

Result<LinkEnv> ReadLinkEnv() {
  LinkEnv e;
  EMBER_ASSIGN_OR_RETURN(e.link, RequiredEnv("EMBER_LINK"));
  EMBER_ASSIGN_OR_RETURN(e.site, RequiredEnv("EMBER_SITE_NAME"));
  EMBER_ASSIGN_OR_RETURN(e.job_id, RequiredEnv("EMBER_JOB_ID"));
  const char* token = std::getenv("EMBER_LINK_TOKEN");
  e.token = token ? token : "";
  const char* cell_name = std::getenv("EMBER_CELL_NAME");
  e.cell_name = (cell_name && *cell_name) ? cell_name : e.site + "." + e.job_id;
  return e;
}

// The whole body as one contiguous byte string (copied out of a streamed body if needed).
Result<std::string> ReadBody(const cell::BodySource& body) {
  std::string bytes(body.size(), '\0');
  if (const uint8_t* p = body.contiguous()) {
    std::memcpy(bytes.data(), p, bytes.size());
    return bytes;
  }
  uint64_t off = 0;
  while (off < bytes.size()) {
    std::span<uint8_t> out(reinterpret_cast<uint8_t*>(bytes.data()) + off, bytes.size() - off);
    EMBER_ASSIGN_OR_RETURN(size_t n, body.ReadAt(off, out));
    if (n == 0) return Status::DataLoss("task body ended after " + std::to_string(off) + " of " +
                                        std::to_string(bytes.size()) + " bytes");
    off += n;
  }
  return bytes;
}

Result<std::map<std::string, Tensor>> DecodeParams(const std::shared_ptr<cell::BodySource>& body) {
  std::map<std::string, Tensor> params;
  if (!body || body->size() == 0) return params;
  std::string bytes;  // only when the body is not one contiguous range
  std::span<const uint8_t> whole;
  if (const uint8_t* p = body->contiguous()) {
    whole = std::span<const uint8_t>(p, body->size());
  } else {
    EMBER_ASSIGN_OR_RETURN(bytes, ReadBody(*body));
    whole = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  auto view = tensor::SafetensorsView::Parse(whole);
  if (!view.ok()) return view.status().WithContext("global model");
  for (const tensor::TensorInfo& info : view->tensors()) {
    tensor::TensorView tv = view->View(info);
    Tensor t;
    t.dtype = std::string(tensor::DTypeName(info.dtype));
    t.shape = info.shape;
    t.data.assign(tv.bytes.begin(), tv.bytes.end());
    params.emplace(info.name, std::move(t));
  }
  return params;
}

// A safetensors image of `params` in name order: the tensor layer's header, then the data.
Result<std::string> EncodeParams(const std::map<std::string, Tensor>& params) {
  std::vector<tensor::TensorInfo> infos;
  infos.reserve(params.size());
  uint64_t total = 0;
  for (const auto& [name, t] : params) {
    tensor::TensorInfo info;
    info.name = name;
    auto dtype = tensor::ParseDType(t.dtype);
    if (!dtype.ok()) return dtype.status().WithContext("tensor '" + name + "'");
    info.dtype = *dtype;
    info.shape = t.shape;
    auto nbytes = tensor::CountBytes(info.dtype, info.shape);
    if (!nbytes.ok()) return nbytes.status().WithContext("tensor '" + name + "'");
    if (*nbytes != t.data.size()) {
      return Status::InvalidArgument("tensor '" + name + "': " + t.dtype + " " + tensor::ShapeToString(t.shape) +
                                     " needs " + std::to_string(*nbytes) + " bytes but holds " +
                                     std::to_string(t.data.size()));
    }
    info.begin = total;
    info.end = total + *nbytes;
    total += *nbytes;
    infos.push_back(std::move(info));
  }
  std::string image = tensor::EncodeSafetensorsHeader(infos, {});
  image.reserve(image.size() + total);
  for (const auto& [name, t] : params) image.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
  return image;
}

class ScriptClient final : public Client {
 public:
  // Timeouts: script_get_task_timeout, script_transfer_timeout, script_link_timeout.
  ScriptClient(LinkEnv env, std::shared_ptr<cell::Cell> cell, const base::Config& config)
      : env_(std::move(env)),
        cell_(std::move(cell)),
        get_task_timeout_(config.Get(base::kScriptGetTaskTimeout)),
        transfer_timeout_(config.Get(base::kScriptTransferTimeout)),
        link_timeout_(config.Get(base::kScriptLinkTimeout)) {}
  ~ScriptClient() override { cell_->Stop(); }

  Result<std::optional<FLModel>> Receive() override {
    if (!running_) return std::optional<FLModel>();
    auto reply = cell_->Request(env_.site, cell::Message::Make("link.get_task"), get_task_timeout_);
    if (!reply.ok()) return reply.status().WithContext("link.get_task to " + env_.site);
    const cell::Json& h = reply->h();
    const std::string task_name = h.value("task_name", "");
    if (task_name == "end") {
      running_ = false;
      task_.reset();
      return std::optional<FLModel>();
    }
    if (task_name.empty()) return Status::InvalidArgument("link.get_task reply has no task_name: " + h.dump());
    FLModel model;
    if (h.value("model_size", uint64_t{0}) > 0) {
      EMBER_ASSIGN_OR_RETURN(auto body, FetchModel(h.value("task_id", "")));
      EMBER_ASSIGN_OR_RETURN(model.params, DecodeParams(body));
    }
    model.params_type = h.value("params_type", "FULL");
    model.current_round = h.value("current_round", 0);
    model.total_rounds = h.value("total_rounds", 0);
    if (h.contains("meta") && h["meta"].is_object()) model.meta = h["meta"];
    task_ = Task{task_name, h.value("task_id", ""), model.current_round};
    return std::optional<FLModel>(std::move(model));
  }

  Status Send(const FLModel& model) override {
    if (!task_) {
      return Status::FailedPrecondition(running_ ? "Send() without a task: call Receive() first"
                                                 : "Send() after the job ended");
    }
    if (model.params_type != "FULL" && model.params_type != "DIFF") {
      return Status::InvalidArgument("params_type must be FULL or DIFF, not '" + model.params_type + "'");
    }
    EMBER_ASSIGN_OR_RETURN(std::string image, EncodeParams(model.params));
    cell::Json h = {{"task_name", task_->name},
                    {"task_id", task_->id},
                    {"current_round", task_->round},
                    {"params_type", model.params_type},
                    {"metrics", model.metrics.is_null() ? cell::Json::object() : model.metrics},
                    {"meta", model.meta.is_null() ? cell::Json::object() : model.meta}};
    cell::Json result = h;
    result["site"] = env_.site;
    auto accepted = cell_->Request(kServer, cell::Message::Make("fl.submit_result", std::move(result),
                                                                cell::BytesBody(std::move(image))),
                                   transfer_timeout_);
    if (!accepted.ok()) return accepted.status().WithContext("fl.submit_result of task " + task_->id);
    auto reply = cell_->Request(env_.site, cell::Message::Make("link.submit", std::move(h)), link_timeout_);
    if (!reply.ok()) return reply.status().WithContext("link.submit to " + env_.site);
    task_.reset();
    return Status::Ok();
  }

  bool IsRunning() const override { return running_; }
  const std::string& site_name() const override { return env_.site; }
  const std::string& job_id() const override { return env_.job_id; }

 private:
  Result<std::shared_ptr<cell::BodySource>> FetchModel(const std::string& task_id) {
    auto request = cell::Message::Make("fl.get_model", {{"site", env_.site}, {"task_id", task_id}});
    auto reply = cell_->Request(kServer, std::move(request), transfer_timeout_);
    if (!reply.ok()) return reply.status().WithContext("fl.get_model of task " + task_id);
    return reply->body;
  }

  struct Task {
    std::string name;
    std::string id;
    int round = 0;
  };

  LinkEnv env_;
  std::shared_ptr<cell::Cell> cell_;
  // A task is parked at the site until the server hands one out; rounds can be long.
  const std::chrono::milliseconds get_task_timeout_;
  const std::chrono::milliseconds transfer_timeout_;
  const std::chrono::milliseconds link_timeout_;
  bool running_ = true;
  std::optional<Task> task_;  // received and not yet answered
};

}  // namespace

Result<std::unique_ptr<Client>> Client::Init() {
  EMBER_ASSIGN_OR_RETURN(LinkEnv env, ReadLinkEnv());
  // The cell logs connection events at info; keep them out of the program's stdout
  // (which the site records as the script's output) unless EMBER_LOG_LEVEL asks for them.
  const char* level = std::getenv("EMBER_LOG_LEVEL");
  log::SetLevel(level && *level ? level : "warn");
  EMBER_ASSIGN_OR_RETURN(std::shared_ptr<const base::Config> config, base::ConfigOrEnvironment(nullptr));
  cell::CellOptions o;
  o.config = config;
  o.name = env.cell_name;
  o.parent = env.link;
  o.parent_token = env.token;
  o.io_threads = 1;
  o.worker_threads = 1;
  auto cell = cell::Cell::Start(std::move(o));
  if (!cell.ok()) return cell.status().WithContext("cannot connect to site " + env.site + " at " + env.link);
  return std::unique_ptr<Client>(new ScriptClient(std::move(env), std::move(cell).value(), *config));
}

}  // namespace ember
