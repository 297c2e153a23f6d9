#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include "tls_throughput.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/subprocess.h"
#include "net/connection.h"
#include "net/io_pool.h"
#include "net/tls.h"

namespace ember::bench {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr size_t kPatternBytes = 1 << 20;
constexpr size_t kTransfers = 3;

// `size` bytes of a repeating pseudo-random 1 MiB pattern, made on demand.
class PatternBody final : public wire::BodySource {
 public:
  explicit PatternBody(uint64_t size) : size_(size), pattern_(kPatternBytes) {
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < kPatternBytes; i += 8) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      std::memcpy(&pattern_[i], &x, 8);
    }
  }
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - std::min(offset, size_)));
    for (size_t done = 0; done < n;) {
      size_t at = (offset + done) % kPatternBytes;
      size_t k = std::min(n - done, kPatternBytes - at);
      std::memcpy(out.data() + done, pattern_.data() + at, k);
      done += k;
    }
    return n;
  }

 private:
  const uint64_t size_;
  std::vector<uint8_t> pattern_;
};

// Counts the body and drops it.
class CountingSink final : public net::StreamSink {
 public:
  Status Write(std::span<const uint8_t> chunk) override {
    received_ += chunk.size();
    return Status::Ok();
  }
  Result<std::shared_ptr<wire::BodySource>> Finish() override { return std::shared_ptr<wire::BodySource>(); }

 private:
  uint64_t received_ = 0;
};

// Certificates from scripts/gen_certs.sh in a temporary directory, removed on destruction.
struct TempCerts {
  std::string dir;
  ~TempCerts() {
    std::error_code ignored;
    if (!dir.empty()) std::filesystem::remove_all(dir, ignored);
  }
};

// The repository (for scripts/gen_certs.sh): $EMBER_SOURCE_DIR, else where this file was
// compiled from.
std::string SourceDir() {
  if (const char* env = std::getenv("EMBER_SOURCE_DIR"); env && *env) return env;
  std::filesystem::path here(__FILE__);
  if (here.is_absolute()) return here.parent_path().parent_path().string();
  return ".";
}

Status MakeCerts(TempCerts& certs) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ember-bench-certs-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return Status::Internal("mkdtemp failed");
  certs.dir = tmpl;
  std::string script = SourceDir() + "/scripts/gen_certs.sh";
  EMBER_ASSIGN_OR_RETURN(auto proc, base::Subprocess::Spawn({.argv = {"bash", script, certs.dir, "--sites", "1", "--key", "ec"}}));
  EMBER_ASSIGN_OR_RETURN(int status, proc->Wait(60s));
  if (base::ExitCodeOf(status) == 0) return Status::Ok();
  std::string err;
  for (const std::string& line : proc->LastStderrLines()) err += line + "\n";
  return Status::Internal(script + " " + proc->DescribeExit() + ": " + err);
}

// The receiving end: one acceptor connection whose sink counts each body and drops it.
struct Receiver {
  std::mutex mu;
  std::condition_variable cv;
  net::Connection::Ptr conn;                // guarded by mu
  std::vector<Clock::time_point> arrivals;  // guarded by mu: when each message completed

  void Accept(const std::shared_ptr<Receiver>& self, std::unique_ptr<net::Transport> t) {
    net::ConnectionOptions o{.local_name = "server"};
    o.sink_factory = [](const wire::Json&, uint64_t) -> Result<std::unique_ptr<net::StreamSink>> {
      return std::unique_ptr<net::StreamSink>(std::make_unique<CountingSink>());
    };
    std::weak_ptr<Receiver> weak = self;
    auto c = net::Connection::Create(std::move(t), net::ConnectionRole::kAcceptor, std::move(o),
                                     {.on_message = [weak](const net::Connection::Ptr&, net::IncomingMessage) {
                                       if (auto r = weak.lock()) r->Arrived();
                                     }});
    c->Start();
    std::lock_guard lock(mu);
    conn = std::move(c);
  }
  void Arrived() {
    std::lock_guard lock(mu);
    arrivals.push_back(Clock::now());
    cv.notify_all();
  }
  // When message number `n` (0-based) completed, or nullopt after `timeout`.
  std::optional<Clock::time_point> WaitArrival(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, timeout, [&] { return arrivals.size() > n; })) return std::nullopt;
    return arrivals[n];
  }
  void Close() {
    std::lock_guard lock(mu);
    if (conn) conn->Close(Status::Aborted("benchmark done"));
  }
};

template <typename T>
std::optional<T> WaitFor(std::future<T>& f, std::chrono::milliseconds timeout) {
  if (f.wait_for(timeout) != std::future_status::ready) return std::nullopt;
  return f.get();
}

Result<double> Measure(uint64_t bytes) {
  TempCerts certs;
  EMBER_RETURN_IF_ERROR(MakeCerts(certs));
  auto options = [&](const std::string& name) {
    return net::SecurityOptions{.mode = net::SecurityMode::kMtls, .cert_file = certs.dir + "/" + name + ".crt",
                                .key_file = certs.dir + "/" + name + ".key", .ca_file = certs.dir + "/rootCA.pem"};
  };
  EMBER_ASSIGN_OR_RETURN(auto server_tls, net::TlsContext::Create(options("server"), net::TlsSide::kServer));
  EMBER_ASSIGN_OR_RETURN(auto client_tls, net::TlsContext::Create(options("site-1"), net::TlsSide::kClient));

  net::IoPool pool(2);  // sender and receiver on their own io threads
  std::shared_ptr<net::TcpListener> listener;
  // Every return path closes the listener and joins the io threads before `pool` goes.
  struct StopAll {
    net::IoPool& pool;
    std::shared_ptr<net::TcpListener>& listener;
    ~StopAll() {
      if (listener) listener->Close();
      pool.Stop();
    }
  } stop_all{pool, listener};
  auto receiver = std::make_shared<Receiver>();
  auto listening = net::TcpListener::Listen(
      pool, "127.0.0.1:0", [receiver](std::unique_ptr<net::Transport> t) { receiver->Accept(receiver, std::move(t)); },
      net::TlsAcceptUpgrade(server_tls, 10s));
  if (!listening.ok()) return listening.status();
  listener = *listening;

  auto dialed = std::make_shared<std::promise<Result<std::unique_ptr<net::Transport>>>>();
  auto dial_future = dialed->get_future();
  net::DialTls(pool.Next(), listener->local_address(), 10s, client_tls,
               [dialed](Result<std::unique_ptr<net::Transport>> t) { dialed->set_value(std::move(t)); });
  auto transport = WaitFor(dial_future, 15s);
  if (!transport) return Status::DeadlineExceeded("TLS dial did not finish");
  if (!transport->ok()) return transport->status();
  auto ready = std::make_shared<std::promise<bool>>();
  auto sender = net::Connection::Create(std::move(**transport), net::ConnectionRole::kConnector,
                                        {.local_name = "site-1"},
                                        {.on_ready = [ready](const net::Connection::Ptr&) { ready->set_value(true); }});
  sender->Start();
  auto ready_future = ready->get_future();
  if (!WaitFor(ready_future, 10s)) return Status::DeadlineExceeded("no HELLO over TLS");

  // Best of a few transfers, one after the other on the same connection, as the raw and
  // clear figures are best-of too. Generous deadline: 10 MB/s is far below any healthy
  // loopback figure.
  auto deadline = std::chrono::milliseconds(30000 + bytes / 10'000);
  auto body = std::make_shared<PatternBody>(bytes);
  double best = 0;
  for (size_t i = 0; i < kTransfers; ++i) {
    Clock::time_point start = Clock::now();
    EMBER_RETURN_IF_ERROR(sender->Send(wire::Json{{"topic", "bench"}}, body));
    std::optional<Clock::time_point> end = receiver->WaitArrival(i, deadline);
    if (!end) return Status::DeadlineExceeded("the body did not arrive in time");
    best = std::max(best, static_cast<double>(bytes) / 1e6 / std::chrono::duration<double>(*end - start).count());
  }
  sender->Close(Status::Aborted("benchmark done"));
  receiver->Close();
  return best;
}

}  // namespace

std::optional<double> MeasureTlsMBps(uint64_t bytes) {
  Result<double> mbps = Measure(bytes);
  if (!mbps.ok()) {
    std::fprintf(stderr, "tls throughput: %s\n", mbps.status().ToString().c_str());
    return std::nullopt;
  }
  return *mbps;
}

}  // namespace ember::bench
