// Helpers shared by the stream tests: cells on loopback, tracked bodies, hashing, polling.
#pragma once
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "cell/cell.h"

namespace ember::stream::testing {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline std::shared_ptr<cell::Cell> MustStart(cell::CellOptions o) {
  auto c = cell::Cell::Start(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : nullptr;
}

inline std::shared_ptr<cell::Cell> StartOwner(std::string listen = "127.0.0.1:0", int workers = 2) {
  return MustStart({.name = "server", .listen = std::move(listen), .worker_threads = workers});
}

inline std::shared_ptr<cell::Cell> StartReceiver(const std::string& name, const std::shared_ptr<cell::Cell>& owner) {
  return MustStart({.name = name, .parent = owner->listen_address(), .connect_timeout = 3000ms});
}

inline std::string RandomBytes(size_t n, uint64_t seed = 42) {
  std::string s(n, '\0');
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

// Incremental SHA-256, hex digest.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  void Update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    std::string hex;
    for (unsigned int i = 0; i < len; ++i) hex += "0123456789abcdef"[md[i] >> 4], hex += "0123456789abcdef"[md[i] & 15];
    return hex;
  }
  static std::string Of(const std::string& s) {
    Sha256 h;
    h.Update(s.data(), s.size());
    return h.Hex();
  }

 private:
  EVP_MD_CTX* ctx_;
};

// A body that sets `*freed` when destroyed, to prove a transaction let go of its object.
// Non-contiguous unless asked, so the owner reads it with ReadAt like a lazily made model.
class TrackedBody final : public cell::BodySource {
 public:
  TrackedBody(std::string bytes, std::shared_ptr<std::atomic<bool>> freed, bool contiguous = false)
      : bytes_(std::move(bytes)), freed_(std::move(freed)), contiguous_(contiguous) {}
  ~TrackedBody() override { freed_->store(true); }
  uint64_t size() const override { return bytes_.size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset > bytes_.size()) return Status::OutOfRange("past the end");
    size_t n = std::min<size_t>(out.size(), bytes_.size() - offset);
    std::memcpy(out.data(), bytes_.data() + offset, n);
    return n;
  }
  const uint8_t* contiguous() const override {
    return contiguous_ ? reinterpret_cast<const uint8_t*>(bytes_.data()) : nullptr;
  }

 private:
  const std::string bytes_;
  const std::shared_ptr<std::atomic<bool>> freed_;
  const bool contiguous_;
};

// Polls `cond` until it holds or `deadline` passes.
inline bool Eventually(const std::function<bool()>& cond, std::chrono::milliseconds deadline = 5000ms) {
  auto end = Clock::now() + deadline;
  while (!cond()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace ember::stream::testing
