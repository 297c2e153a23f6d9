// ServerRuntime + FedAvg over real TCP cells with a 64 MB model: four sites whose results
// stream in interleaved chunk by chunk; one of them breaks off mid-upload (its connection
// drops, or it aborts the stream) and is excluded; the round's average of the other three
// is exact, and the job goes on.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "cell/cell.h"
#include "fl/server.h"
#include "tensor/safetensors.h"
#include "tensor/safetensors_header.h"

namespace ember::fl {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr size_t kElements = 16 << 20;  // 64 MiB of F32
constexpr size_t kChunk = 1 << 20;      // streaming_chunk_size
constexpr int kSites = 4;
constexpr uint64_t kDropAtChunk = 30;

std::string Image(const std::vector<float>& w) {
  tensor::TensorInfo info;
  info.name = "w";
  info.dtype = tensor::DType::kF32;
  info.shape = {static_cast<int64_t>(w.size())};
  info.end = w.size() * sizeof(float);
  std::string image = tensor::EncodeSafetensorsHeader({info}, {});
  image.append(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float));
  return image;
}

std::vector<float> Floats(std::span<const uint8_t> image) {
  auto view = tensor::SafetensorsView::Parse(image);
  EXPECT_TRUE(view.ok()) << view.status().ToString();
  auto w = view->Find("w");
  EXPECT_TRUE(w.ok());
  std::vector<float> out(w->bytes.size() / sizeof(float));
  std::memcpy(out.data(), w->bytes.data(), w->bytes.size());
  return out;
}

std::vector<float> ReadBody(const cell::BodySource& body) {
  std::vector<uint8_t> bytes(body.size());
  EXPECT_EQ(body.ReadAt(0, bytes).value(), bytes.size());
  return Floats(bytes);
}

// Makes the uploads of a round take turns chunk by chunk: a sender may read chunk c only
// once every other sender of its round has read chunk c-1 (or 1 s passed, so a bug cannot
// hang it). In a round with Expect(round, n), it also waits for all n senders to begin.
class Turnstile {
 public:
  void Expect(int round, size_t senders) {
    std::lock_guard lock(mu_);
    expected_[round] = senders;
  }
  void Wait(int round, int site, uint64_t chunk) {
    std::unique_lock lock(mu_);
    auto& read = rounds_[round];
    read.emplace(site, 0);
    cv_.notify_all();
    cv_.wait_for(lock, 1s, [&] {
      if (read.size() < expected_[round]) return false;
      for (const auto& [other, n] : read) {
        if (other != site && chunk > 0 && n < chunk - 1) return false;
      }
      return true;
    });
    read[site] = std::max(read[site], chunk + 1);
    cv_.notify_all();
  }
  void End(int round, int site) {
    std::lock_guard lock(mu_);
    rounds_[round][site] = UINT64_MAX;  // never holds the others back again
    cv_.notify_all();
  }
  std::map<int, uint64_t> progress(int round) {
    std::lock_guard lock(mu_);
    return rounds_[round];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, std::map<int, uint64_t>> rounds_;  // round -> site -> chunks read
  std::map<int, size_t> expected_;
};

enum class Break { kDisconnect, kAbort };

// A result body read through the turnstile; the dropping site breaks off at kDropAtChunk.
class PacedBody final : public cell::BodySource {
 public:
  PacedBody(std::string image, Turnstile* turns, int round, int site, std::function<Status()> on_drop)
      : image_(std::move(image)), turns_(turns), round_(round), site_(site), on_drop_(std::move(on_drop)) {}
  ~PacedBody() override { turns_->End(round_, site_); }
  uint64_t size() const override { return image_.size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    const uint64_t chunk = offset / kChunk;
    if (on_drop_ && chunk == kDropAtChunk) {
      Status why = on_drop_();
      turns_->End(round_, site_);
      return why;
    }
    turns_->Wait(round_, site_, chunk);
    size_t n = std::min<size_t>(out.size(), image_.size() - offset);
    std::memcpy(out.data(), image_.data() + offset, n);
    if (offset + n == image_.size()) turns_->End(round_, site_);
    return n;
  }

 private:
  std::string image_;
  Turnstile* turns_;
  int round_;
  int site_;
  std::function<Status()> on_drop_;
};

// A site and its training script in one: register, then for each task fetch the model,
// add (k + 1) to every element and submit with NUM_STEPS_CURRENT_ROUND = k + 1.
class TestSite {
 public:
  TestSite(int k, std::string server, Turnstile* turns) : k_(k), server_(std::move(server)), turns_(turns) {}
  ~TestSite() {
    if (thread_.joinable()) thread_.join();
    if (stopper_.joinable()) stopper_.join();
  }
  std::string name() const { return "site-" + std::to_string(k_ + 1); }
  // The round in which this site breaks off its upload, and how.
  void BreakIn(int round, Break how) {
    break_round_ = round;
    break_how_ = how;
  }
  void Start(std::function<void()> registered, std::function<void()> wait_all_registered) {
    thread_ = std::thread([this, registered, wait_all_registered] { Run(registered, wait_all_registered); });
  }
  // The model this site received in `round`.
  std::vector<float> received(int round) {
    std::lock_guard lock(mu_);
    return received_[round];
  }
  Status outcome() const { return outcome_; }

 private:
  void Run(const std::function<void()>& registered, const std::function<void()>& wait_all_registered) {
    cell::CellOptions o;
    o.name = name();
    o.parent = server_;
    cell_ = cell::Cell::Start(o).value();
    auto reg = cell_->Request("server", cell::Message::Make("fl.register", {{"site", name()}}), 10s);
    if (!reg.ok()) {
      outcome_ = reg.status();
      return;
    }
    registered();
    wait_all_registered();
    outcome_ = Loop();
    if (!stopped_) cell_->Stop();
  }

  Status Loop() {
    for (;;) {
      EMBER_ASSIGN_OR_RETURN(auto task, cell_->Request("server", cell::Message::Make("fl.get_task", {{"site", name()}}), 30s));
      const std::string kind = task.h().value("task_name", "");
      if (kind == "end") return Status::Ok();
      if (kind == "wait") continue;
      EMBER_RETURN_IF_ERROR(RunTask(task.h()));
      if (stopped_) return Status::Ok();
    }
  }

  Status RunTask(const cell::Json& task) {
    const int round = task.value("current_round", -1);
    const std::string task_id = task.value("task_id", "");
    auto model = cell_->Request("server", cell::Message::Make("fl.get_model", {{"site", name()}, {"task_id", task_id}}), 60s);
    EMBER_RETURN_IF_ERROR(model.status());
    std::vector<float> w = ReadBody(*model->body);
    {
      std::lock_guard lock(mu_);
      received_[round] = w;
    }
    for (float& x : w) x += static_cast<float>(k_ + 1);
    cell::Json h = {{"site", name()}, {"task_id", task_id}, {"task_name", "train"}, {"current_round", round},
                    {"params_type", "FULL"}, {"metrics", {{"accuracy", 0.1 * (k_ + 1)}}},
                    {"meta", {{"NUM_STEPS_CURRENT_ROUND", k_ + 1}}}};
    auto body = std::make_shared<PacedBody>(Image(w), turns_, round, k_,
                                            round == break_round_ ? DropAction(round) : nullptr);
    w = {};
    auto reply = cell_->Request("server", cell::Message::Make("fl.submit_result", h, std::move(body)), 120s);
    if (round == break_round_) return Status::Ok();  // broke off on purpose: any answer will do
    return reply.status();
  }

  // What the breaking site does at kDropAtChunk (on its io thread).
  std::function<Status()> DropAction(int round) {
    return [this, round]() -> Status {
      at_drop_ = turns_->progress(round);
      if (break_how_ == Break::kAbort) return Status::Aborted("the test aborts this upload");
      if (!stopped_.exchange(true)) {
        stopper_ = std::thread([cell = cell_] { cell->Stop(); });  // never on the cell's own thread
      }
      std::this_thread::sleep_for(200ms);  // the connection goes down meanwhile
      return Status::Unavailable("site stopped");
    };
  }

 public:
  std::map<int, uint64_t> at_drop_;  // every sender's progress when this one broke off

 private:
  const int k_;
  const std::string server_;
  Turnstile* turns_;
  int break_round_ = -1;
  Break break_how_ = Break::kDisconnect;
  std::shared_ptr<cell::Cell> cell_;
  std::thread thread_;
  std::thread stopper_;
  std::atomic<bool> stopped_{false};
  Status outcome_;
  std::mutex mu_;
  std::map<int, std::vector<float>> received_;
};

struct RoundLine {
  std::vector<std::string> sites;
  std::map<std::string, std::string> excluded;
};

std::vector<RoundLine> ReadMetrics(const std::string& path) {
  std::vector<RoundLine> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    out.push_back({j["sites"].get<std::vector<std::string>>(),
                   j.value("excluded", std::map<std::string, std::string>{})});
  }
  return out;
}

class ServerRoundTest : public ::testing::TestWithParam<Break> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ember-round-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(static_cast<int>(GetParam())));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "server");
    std::vector<float> init(kElements);
    for (size_t i = 0; i < kElements; ++i) init[i] = static_cast<float>(i % 1000) * 0.001f;
    std::ofstream(dir_ / "initial.safetensors", std::ios::binary) << Image(init);
  }
  void TearDown() override { fs::remove_all(dir_); }

  ServerOptions Options(int rounds, int min_clients = 3) {
    ServerOptions o;
    o.job.name = "exclusion";
    o.job.server.min_clients = min_clients;
    o.job.server.num_rounds = rounds;
    o.job.server.initial_model = (dir_ / "initial.safetensors").string();
    o.job_id = "job-x";
    o.workspace = (dir_ / "server").string();
    return o;
  }

  fs::path dir_;
};

TEST_P(ServerRoundTest, SiteBreakingOffMidUploadIsExcludedAndTheRestAverageExactly) {
  const Break how = GetParam();
  const int rounds = 3;
  auto server = ServerRuntime::Start(Options(rounds)).value();
  Turnstile turns;
  std::mutex mu;
  std::condition_variable cv;
  int registered = 0;
  std::vector<std::unique_ptr<TestSite>> sites;
  for (int k = 0; k < kSites; ++k) sites.push_back(std::make_unique<TestSite>(k, server->address(), &turns));
  // Round 0 may start with three of them (min_clients); round 1 goes to all four, since
  // nobody submits before all four registered. site-4 breaks off in round 1.
  sites[3]->BreakIn(1, how);
  turns.Expect(1, kSites);
  for (auto& s : sites) {
    s->Start([&] { std::lock_guard l(mu); ++registered; cv.notify_all(); },
             [&] { std::unique_lock l(mu); cv.wait(l, [&] { return registered == kSites; }); });
  }
  Status outcome = server->Wait();
  ASSERT_TRUE(outcome.ok()) << outcome.ToString();
  const std::vector<float> received1 = sites[0]->received(1);
  const std::vector<float> received2 = sites[0]->received(2);  // round 1's average
  const std::map<int, uint64_t> at_drop = sites[3]->at_drop_;
  sites.clear();  // joins

  // Interleaved: when site-4 broke off at chunk 30, the others were within two chunks of it.
  ASSERT_EQ(at_drop.size(), 4u);
  for (const auto& [k, chunks] : at_drop) {
    EXPECT_GE(chunks + 2, kDropAtChunk) << "site-" << k + 1;
    EXPECT_LE(chunks, kDropAtChunk + 2) << "site-" << k + 1;
  }
  auto lines = ReadMetrics((dir_ / "server" / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), static_cast<size_t>(rounds));
  std::vector<std::string> round1 = lines[1].sites;
  std::sort(round1.begin(), round1.end());
  EXPECT_EQ(round1, (std::vector<std::string>{"site-1", "site-2", "site-3"}));
  ASSERT_EQ(lines[1].excluded.count("site-4"), 1u);
  EXPECT_NE(lines[1].excluded["site-4"].find("broke off"), std::string::npos) << lines[1].excluded["site-4"];
  // A site that aborted one upload takes part again; a disconnected one is gone.
  EXPECT_EQ(lines[2].sites.size(), how == Break::kAbort ? 4u : 3u);

  // Round 1's average over sites 1-3 only, recomputed in double from what they received.
  ASSERT_EQ(received1.size(), kElements);
  ASSERT_EQ(received2.size(), kElements);
  size_t bad = 0;
  for (size_t i = 0; i < kElements; ++i) {
    double sum = 0;
    for (int k = 0; k < 3; ++k) sum += static_cast<double>(received1[i] + static_cast<float>(k + 1)) * (k + 1);
    const double want = sum / 6.0;
    if (std::abs(received2[i] - want) > 1e-6 * std::abs(want) + 1e-6) ++bad;
  }
  EXPECT_EQ(bad, 0u);
}

// With min_clients = 4 of 4 sites no result can be spared: the round keeps no rollback
// journal, and a result breaking off fails the job naming the site and why.
TEST_P(ServerRoundTest, WithNoResultToSpareABreakFailsTheJobNamingTheSite) {
  auto server = ServerRuntime::Start(Options(2, /*min_clients=*/4)).value();
  Turnstile turns;
  std::vector<std::unique_ptr<TestSite>> sites;
  for (int k = 0; k < kSites; ++k) sites.push_back(std::make_unique<TestSite>(k, server->address(), &turns));
  sites[3]->BreakIn(0, GetParam());
  for (auto& s : sites) s->Start([] {}, [] {});
  Status outcome = server->Wait();
  sites.clear();
  ASSERT_FALSE(outcome.ok());
  EXPECT_NE(outcome.message().find("round 0: only 3 result(s), min_clients is 4"), std::string::npos)
      << outcome.ToString();
  EXPECT_NE(outcome.message().find("site-4"), std::string::npos) << outcome.ToString();
}

INSTANTIATE_TEST_SUITE_P(Breaks, ServerRoundTest, ::testing::Values(Break::kDisconnect, Break::kAbort),
                         [](const auto& info) { return info.param == Break::kDisconnect ? "Disconnect" : "Abort"; });

}  // namespace
}  // namespace ember::fl
