// hello-cpp client: binary logistic regression on the breast-cancer data set in plain C++,
// trained with the Ember C++ Client API (include/ember/client.h).
//
//   hello_cpp_client [--lr 0.1] [--epochs 1] [--batch_size 16] [--num_sites 2] [--data CSV]
//
// Each site trains on its own shard (chosen by its site name) and evaluates the global
// model on a test split shared by all sites.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ember/client.h"

namespace {

constexpr int kFeatures = 30;
constexpr int kTestSize = 114;  // 20% of 569
constexpr uint32_t kSeed = 1234;

struct Sample {
  std::vector<float> x;
  float y = 0;
};

// sklearn's breast_cancer.csv: a "569,30,malignant,benign" line, then 30 features and the label.
std::vector<Sample> LoadCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::string line;
  std::getline(in, line);
  std::vector<Sample> data;
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string cell;
    Sample s;
    while (std::getline(ss, cell, ',')) s.x.push_back(std::stof(cell));
    if (s.x.size() != kFeatures + 1) continue;
    s.y = s.x.back();
    s.x.pop_back();
    data.push_back(std::move(s));
  }
  // A fixed per-feature standardization of the public data set.
  for (int j = 0; j < kFeatures; ++j) {
    double sum = 0, sq = 0;
    for (const auto& s : data) sum += s.x[j], sq += s.x[j] * s.x[j];
    const double mean = sum / data.size(), sd = std::sqrt(sq / data.size() - mean * mean) + 1e-6;
    for (auto& s : data) s.x[j] = static_cast<float>((s.x[j] - mean) / sd);
  }
  return data;
}

// Fisher-Yates with an explicit generator, so every platform shuffles alike.
template <typename T>
void Shuffle(std::vector<T>& v, std::mt19937& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng() % i]);
}

// "site-2" -> 1; other names hash to a stable index.
int SiteIndex(const std::string& site) {
  size_t pos = site.find_last_not_of("0123456789");
  if (pos + 1 < site.size()) return std::stoi(site.substr(pos + 1)) - 1;
  return static_cast<int>(std::hash<std::string>{}(site) % 1000);
}

double Predict(std::span<const float> w, float b, const std::vector<float>& x) {
  double z = b;
  for (int j = 0; j < kFeatures; ++j) z += w[j] * x[j];
  return 1.0 / (1.0 + std::exp(-z));
}

// (accuracy, mean log loss) of the model on `data`.
std::pair<double, double> Evaluate(std::span<const float> w, float b, const std::vector<Sample>& data) {
  int correct = 0;
  double loss = 0;
  for (const auto& s : data) {
    const double p = std::clamp(Predict(w, b, s.x), 1e-7, 1 - 1e-7);
    correct += (p >= 0.5) == (s.y > 0.5);
    loss -= s.y > 0.5 ? std::log(p) : std::log(1 - p);
  }
  return {static_cast<double>(correct) / data.size(), loss / data.size()};
}

// Mini-batch SGD on the log loss; returns the number of steps.
int Train(std::span<float> w, float& b, std::vector<Sample> data, double lr, int epochs, int batch,
          std::mt19937& rng) {
  int steps = 0;
  for (int e = 0; e < epochs; ++e) {
    Shuffle(data, rng);
    for (size_t start = 0; start < data.size(); start += batch, ++steps) {
      const size_t end = std::min(data.size(), start + batch);
      std::vector<double> gw(kFeatures, 0.0);
      double gb = 0;
      for (size_t i = start; i < end; ++i) {
        const double g = Predict(w, b, data[i].x) - data[i].y;
        for (int j = 0; j < kFeatures; ++j) gw[j] += g * data[i].x[j];
        gb += g;
      }
      const double scale = lr / static_cast<double>(end - start);
      for (int j = 0; j < kFeatures; ++j) w[j] -= static_cast<float>(scale * gw[j]);
      b -= static_cast<float>(scale * gb);
    }
  }
  return steps;
}

}  // namespace

int main(int argc, char** argv) {
  double lr = 0.1;
  int epochs = 1, batch = 16, num_sites = 2;
  std::string csv = "/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--lr") lr = std::stod(value);
    else if (flag == "--epochs") epochs = std::stoi(value);
    else if (flag == "--batch_size") batch = std::stoi(value);
    else if (flag == "--num_sites") num_sites = std::stoi(value);
    else if (flag == "--data") csv = value;
    else return std::fprintf(stderr, "unknown flag %s\n", flag.c_str()), 2;
  }

  auto init = ember::Client::Init();
  if (!init.ok()) return std::fprintf(stderr, "%s\n", init.status().ToString().c_str()), 1;
  std::unique_ptr<ember::Client> client = std::move(init).value();
  const std::string site = client->site_name();
  const int index = SiteIndex(site);

  std::vector<Sample> all = LoadCsv(csv), test, train;
  std::mt19937 split_rng(kSeed);
  Shuffle(all, split_rng);
  for (size_t i = 0; i < all.size(); ++i) {
    if (i < kTestSize) test.push_back(all[i]);
    else if ((i - kTestSize) % num_sites == static_cast<size_t>(index % num_sites)) train.push_back(all[i]);
  }
  std::printf("%s: %zu training samples, %zu test samples\n", site.c_str(), train.size(), test.size());

  while (client->IsRunning()) {
    auto received = client->Receive();
    if (!received.ok()) return std::fprintf(stderr, "%s\n", received.status().ToString().c_str()), 1;
    if (!received->has_value()) break;
    ember::FLModel& model = **received;
    ember::Tensor& w = model.params.at("w");
    ember::Tensor& b = model.params.at("b");
    if (w.dtype != "F32" || w.floats().size() != kFeatures || b.floats().size() != 1) {
      return std::fprintf(stderr, "expected w: F32[30] and b: F32[1]\n"), 1;
    }
    const auto [acc, loss] = Evaluate(w.floats(), b.floats()[0], test);
    std::printf("%s round %d: global model accuracy %.3f, loss %.3f\n", site.c_str(), model.current_round, acc,
                loss);
    std::fflush(stdout);

    std::mt19937 rng(kSeed + 1000 * model.current_round + index);
    const int steps = Train(w.floats(), b.floats()[0], train, lr, epochs, batch, rng);
    ember::Status sent = client->Send({.params = {{"w", w}, {"b", b}},
                                       .metrics = {{"accuracy", acc}, {"loss", loss}},
                                       .meta = {{"NUM_STEPS_CURRENT_ROUND", steps}}});
    if (!sent.ok()) return std::fprintf(stderr, "%s\n", sent.ToString().c_str()), 1;
  }
  return 0;
}
