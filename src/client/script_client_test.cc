// ember::Client against fake server and site cells serving the topics a script uses.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "cell/cell.h"
#include "ember/client.h"
#include "tensor/safetensors.h"
#include "tensor/safetensors_header.h"

namespace ember {
namespace {

using cell::Json;

// A safetensors image holding one F32 tensor "w".
std::string ModelImage(const std::vector<float>& w, std::vector<int64_t> shape) {
  tensor::TensorInfo info;
  info.name = "w";
  info.dtype = tensor::DType::kF32;
  info.shape = std::move(shape);
  std::string image = tensor::EncodeSafetensorsHeader({info}, {});
  image.append(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float));
  return image;
}

// A server cell serving fl.get_model / fl.submit_result and, under it, a site cell serving
// link.get_task / link.submit: the topology a training script sees.
class FakeSite {
 public:
  FakeSite() {
    cell::CellOptions so;
    so.name = "server";
    so.listen = "127.0.0.1:0";
    server_ = cell::Cell::Start(std::move(so)).value();
    server_->Handle("fl.get_model", [this](cell::Message m, cell::Responder r) {
      std::lock_guard lock(mu_);
      auto it = models_.find(m.h().value("task_id", ""));
      if (it == models_.end() || m.h().value("site", "") != "site-1") {
        return r.Error(StatusCode::kNotFound, "no such task");
      }
      r.Reply({}, cell::BytesBody(it->second));
    });
    server_->Handle("fl.submit_result", [this](cell::Message m, cell::Responder r) {
      std::lock_guard lock(mu_);
      submitted_.push_back(std::move(m));
      r.Reply();
    });
    cell::CellOptions o;
    o.name = "site-1";
    o.parent = server_->listen_address();
    o.listen = "127.0.0.1:0";
    o.token = "secret";
    site_ = cell::Cell::Start(std::move(o)).value();
    site_->Handle("link.get_task", [this](cell::Message, cell::Responder r) {
      std::lock_guard lock(mu_);
      if (tasks_.empty()) return r.Reply({{"task_name", "end"}});
      Json h = tasks_.front();
      tasks_.pop_front();
      r.Reply(h);
    });
    site_->Handle("link.submit", [this](cell::Message m, cell::Responder r) {
      std::lock_guard lock(mu_);
      reported_.push_back(std::move(m));
      r.Reply();
    });
  }
  ~FakeSite() {
    site_->Stop();
    server_->Stop();
  }

  void AddTask(Json h, std::string model) {
    std::lock_guard lock(mu_);
    h["model_size"] = model.size();
    models_[h.value("task_id", "")] = std::move(model);
    tasks_.push_back(std::move(h));
  }
  // Results as the server received them.
  std::vector<cell::Message> submitted() {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  // link.submit reports as the site received them.
  std::vector<cell::Message> reported() {
    std::lock_guard lock(mu_);
    return reported_;
  }
  std::string address() const { return site_->listen_address(); }

 private:
  std::shared_ptr<cell::Cell> server_;
  std::shared_ptr<cell::Cell> site_;
  std::mutex mu_;
  std::deque<Json> tasks_;
  std::map<std::string, std::string> models_;
  std::vector<cell::Message> submitted_;
  std::vector<cell::Message> reported_;
};

void SetLinkEnv(const std::string& link, const std::string& token) {
  setenv("EMBER_LINK", link.c_str(), 1);
  setenv("EMBER_LINK_TOKEN", token.c_str(), 1);
  setenv("EMBER_SITE_NAME", "site-1", 1);
  setenv("EMBER_JOB_ID", "job42", 1);
  setenv("EMBER_CELL_NAME", "site-1.job42", 1);
}

TEST(ClientTest, InitFailsClearlyOutsideEmber) {
  unsetenv("EMBER_LINK");
  auto client = Client::Init();
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.status().message().find("not started by ember: EMBER_LINK is not set"), std::string::npos)
      << client.status().ToString();
}

TEST(ClientTest, ReceiveTrainSendUntilEnd) {
  FakeSite site;
  site.AddTask({{"task_name", "train"}, {"task_id", "r0-site-1"}, {"current_round", 0}, {"total_rounds", 2},
                {"params_type", "FULL"}, {"meta", {{"k", "v"}}}},
               ModelImage({1, 2, 3, 4, 5, 6}, {2, 3}));
  site.AddTask({{"task_name", "train"}, {"task_id", "r1-site-1"}, {"current_round", 1}, {"total_rounds", 2},
                {"params_type", "FULL"}},
               ModelImage({0, 0, 0, 0, 0, 0}, {2, 3}));
  SetLinkEnv(site.address(), "secret");

  auto init = Client::Init();
  ASSERT_TRUE(init.ok()) << init.status().ToString();
  std::unique_ptr<Client> client = std::move(init).value();
  EXPECT_EQ(client->site_name(), "site-1");
  EXPECT_EQ(client->job_id(), "job42");
  EXPECT_FALSE(client->Send({}).ok());  // no task yet

  int rounds = 0;
  while (client->IsRunning()) {
    auto got = client->Receive();
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    if (!got->has_value()) break;
    FLModel& model = **got;
    EXPECT_EQ(model.current_round, rounds);
    EXPECT_EQ(model.total_rounds, 2);
    ASSERT_EQ(model.params.count("w"), 1u);
    Tensor& w = model.params["w"];
    EXPECT_EQ(w.dtype, "F32");
    EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 3}));
    ASSERT_EQ(w.floats().size(), 6u);
    if (rounds == 0) {
      EXPECT_EQ(w.floats()[5], 6.0f);
      EXPECT_EQ(model.meta.value("k", ""), "v");
    }
    for (float& x : w.floats()) x += 1;
    std::vector<float> b = {0.5f};
    FLModel out{.params = {{"w", w}, {"b", Tensor::FromFloats({1}, b)}},
                .metrics = {{"accuracy", 0.5 + rounds}},
                .meta = {{"NUM_STEPS_CURRENT_ROUND", 10}}};
    Status s = client->Send(out);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ++rounds;
  }
  EXPECT_EQ(rounds, 2);
  EXPECT_FALSE(client->IsRunning());
  auto after = client->Receive();
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->has_value());

  auto results = site.submitted();
  ASSERT_EQ(results.size(), 2u);
  ASSERT_EQ(site.reported().size(), 2u);
  EXPECT_EQ(site.reported()[1].h().value("task_id", ""), "r1-site-1");
  EXPECT_FALSE(site.reported()[1].body && site.reported()[1].body->size() > 0);
  const Json& h = results[1].h();
  EXPECT_EQ(h.value("site", ""), "site-1");
  EXPECT_EQ(results[1].src(), "site-1.job42");
  EXPECT_EQ(h.value("task_name", ""), "train");
  EXPECT_EQ(h.value("task_id", ""), "r1-site-1");
  EXPECT_EQ(h.value("current_round", -1), 1);
  EXPECT_EQ(h.value("params_type", ""), "FULL");
  EXPECT_DOUBLE_EQ(h["metrics"]["accuracy"].get<double>(), 1.5);
  EXPECT_EQ(h["meta"]["NUM_STEPS_CURRENT_ROUND"].get<int>(), 10);

  ASSERT_TRUE(results[1].body);
  std::string bytes(results[1].body->size(), '\0');
  auto n = results[1].body->ReadAt(0, {reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()});
  ASSERT_TRUE(n.ok());
  auto view = tensor::SafetensorsView::Parse({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  ASSERT_EQ(view->tensors().size(), 2u);
  auto w = view->Find("w");
  ASSERT_TRUE(w.ok());
  float last;
  std::memcpy(&last, w->bytes.data() + 5 * sizeof(float), sizeof(float));
  EXPECT_EQ(last, 1.0f);
}

TEST(ClientTest, SendRejectsMismatchedTensor) {
  FakeSite site;
  site.AddTask({{"task_name", "train"}, {"task_id", "r0"}, {"current_round", 0}, {"total_rounds", 1}},
               ModelImage({1, 2}, {2}));
  SetLinkEnv(site.address(), "secret");
  auto client = Client::Init().value();
  ASSERT_TRUE(client->Receive().ok());
  Tensor bad{"F32", {3}, std::vector<uint8_t>(8)};
  Status s = client->Send({.params = {{"w", bad}}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_TRUE(site.submitted().empty());
  EXPECT_TRUE(site.reported().empty());
}

}  // namespace
}  // namespace ember
