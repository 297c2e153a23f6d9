// transport_bench: moves 1 GiB over loopback through Ember connections and compares it
// with a plain socket pair measured in the same run. Sender and receiver run as separate
// processes (fork), so each peak RSS is its own.
//
//   make bench-transport            # or: build/bench/transport_bench [--mib 1024]
//
// Phases, each in fresh processes:
//   raw    a plain TCP socket pair: the sender writes a 1 MiB buffer until done, the
//          receiver reads and drops; MB/s from first byte to the receiver's ack.
//   clear  an Ember connection (TCP): a 1 GiB body read from a 1 MiB pattern buffer,
//          dropped by a discarding sink (flow control on); MB/s from
//          Send to the receiver's "done" message. Then another 1 GiB while the sender
//          does request/reply round trips on the same connection (RTT under load).
// raw and clear alternate --rounds times (default 7) and each reports its best round:
// on a shared machine the best round is the one least disturbed by other processes, and
// alternating gives both the same chances.
//   tls    throughput over a mutual-TLS Ember connection (registry defaults): TlsMBps() below, which calls
//          bench/tls_throughput.cc when it is built in (null otherwise).
// Both Ember sides run with the transport settings of docs/config.md: the registry's
// defaults unless EMBER_CONFIG / EMBER_* override them (e.g. EMBER_STREAMING_WINDOW_SIZE=16MiB);
// the window and chunk size used, and where they came from, are printed and in the JSON.
// The last line of output is one JSON object with the figures.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/config.h"
#include "base/log.h"
#include "base/memory.h"
#include "net/connection.h"
#include "net/io_pool.h"
#include "net/tcp.h"
#if EMBER_HAVE_TLS_BENCH
#include "tls_throughput.h"
#endif

namespace ember::bench {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;  // keys print in the order written

constexpr size_t kBufBytes = 1 << 20;

double MB(uint64_t bytes) { return bytes / 1e6; }
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double PeakRssMB() { return base::PeakRssBytes() / 1e6; }

// The transport settings both sides run with, loaded once (before any fork).
const base::Config& BenchConfig() {
  static const base::Config config = [] {
    auto c = base::Config::FromEnvironment();
    if (!c.ok()) {
      std::fprintf(stderr, "transport_bench: %s\n", c.status().ToString().c_str());
      std::exit(2);
    }
    return std::move(c).value();
  }();
  return config;
}

// "docs/config.md defaults", or where the window and chunk size came from.
std::string DescribeSettings(const base::Config& c) {
  const std::string window = c.SourceOf(base::kStreamingWindowSize.name);
  const std::string chunk = c.SourceOf(base::kStreamingChunkSize.name);
  if (window == "default" && chunk == "default") return "docs/config.md defaults";
  return "window: " + window + "; chunk: " + chunk;
}

// ---- processes and pipes -------------------------------------------------------------

// Runs `body` in a child process; its return value is written to a pipe the parent reads.
struct Child {
  pid_t pid = -1;
  int out_fd = -1;
};

Child Spawn(const std::function<std::string()>& body) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    alarm(600);  // a stuck child ends the run instead of hanging it
    std::string out = body();
    ssize_t ignored = write(fds[1], out.data(), out.size());
    (void)ignored;
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

// Reads a line (up to '\n') from a child's pipe without waiting for it to exit.
std::string ReadLine(int fd) {
  std::string s;
  char c;
  while (read(fd, &c, 1) == 1 && c != '\n') s += c;
  return s;
}

std::string Finish(Child& c) {
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = read(c.out_fd, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  close(c.out_fd);
  int status = 0;
  waitpid(c.pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "transport_bench: a child process failed (status %d)\n", status);
    std::exit(1);
  }
  return all;
}

void WriteLine(int fd, const std::string& s) {
  std::string line = s + "\n";
  ssize_t ignored = write(fd, line.data(), line.size());
  (void)ignored;
}

// ---- raw TCP ---------------------------------------------------------------------------

int ListenLoopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0) std::abort();
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int ConnectLoopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) std::abort();
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

double MeasureRawTcp(uint64_t bytes) {
  uint16_t port = 0;
  int lfd = ListenLoopback(&port);
  Child receiver = Spawn([lfd] {
    int fd = accept(lfd, nullptr, nullptr);
    std::vector<char> buf(kBufBytes);
    uint64_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf.data(), buf.size())) > 0) got += static_cast<uint64_t>(n);
    char ack = 1;
    ssize_t ignored = write(fd, &ack, 1);
    (void)ignored;
    close(fd);
    return std::to_string(got);
  });
  close(lfd);
  Child sender = Spawn([port, bytes] {
    int fd = ConnectLoopback(port);
    std::vector<char> buf(kBufBytes, 'x');
    auto start = Clock::now();
    for (uint64_t sent = 0; sent < bytes;) {
      ssize_t n = write(fd, buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), bytes - sent)));
      if (n <= 0) std::abort();
      sent += static_cast<uint64_t>(n);
    }
    shutdown(fd, SHUT_WR);
    char ack;
    ssize_t ignored = read(fd, &ack, 1);
    (void)ignored;
    double s = Seconds(Clock::now() - start);
    close(fd);
    return std::to_string(MB(bytes) / s);
  });
  double mbps = std::stod(Finish(sender));
  Finish(receiver);
  return mbps;
}

// ---- Ember connections -------------------------------------------------------------------

// How the Ember phases make their transports (plain TCP here; another transport can plug
// in the same way).
struct EmberTransport {
  std::string name;
  // Listens on 127.0.0.1:0 on `pool`; returns the listener (kept alive) and its address.
  std::function<Result<std::shared_ptr<net::TcpListener>>(net::IoPool&, net::TcpListener::AcceptFn)> listen;
  std::function<void(asio::io_context&, const std::string&, net::DialDone)> dial;
};

EmberTransport ClearTransport() {
  return {.name = "clear",
          .listen = [](net::IoPool& pool, net::TcpListener::AcceptFn on_accept) {
            return net::TcpListener::Listen(pool, "127.0.0.1:0", std::move(on_accept));
          },
          .dial = [](asio::io_context& io, const std::string& address, net::DialDone done) {
            net::DialTcp(io, address, 5s, std::move(done));
          }};
}

// HOOK for the TLS transport (issue 3, part 6): MB/s over TLS, measured in a child
// process by bench/tls_throughput.cc if it is built in. While it returns nullopt,
// tls_MBps and ratio_tls are reported as null.
std::optional<double> TlsMBps(uint64_t bytes) {
#if EMBER_HAVE_TLS_BENCH
  Child c = Spawn([bytes] {
    std::optional<double> v = MeasureTlsMBps(bytes);
    return v ? std::to_string(*v) : std::string("null");
  });
  std::string out = Finish(c);
  if (out == "null" || out.empty()) return std::nullopt;
  return std::stod(out);
#else
  (void)bytes;
  return std::nullopt;
#endif
}

// A body read from a 1 MiB pattern buffer, as a model read from memory or a mapped file.
class RepeatingBody final : public wire::BodySource {
 public:
  explicit RepeatingBody(uint64_t size) : size_(size), pattern_(kBufBytes) {
    for (size_t i = 0; i < pattern_.size(); ++i) pattern_[i] = static_cast<uint8_t>(i * 131);
  }
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - offset));
    for (size_t done = 0; done < n;) {
      size_t at = (offset + done) % pattern_.size();
      size_t take = std::min(n - done, pattern_.size() - at);
      std::memcpy(out.data() + done, pattern_.data() + at, take);
      done += take;
    }
    return n;
  }

 private:
  uint64_t size_;
  std::vector<uint8_t> pattern_;
};

// Drops each chunk as it arrives (kOnWrite: credit returns at once).
class DiscardSink final : public net::StreamSink {
 public:
  Status Write(std::span<const uint8_t> chunk) override {
    bytes_ += chunk.size();
    return Status::Ok();
  }
  Result<std::shared_ptr<wire::BodySource>> Finish() override { return std::shared_ptr<wire::BodySource>(); }

 private:
  uint64_t bytes_ = 0;
};

// The receiving process: "bulk" bodies are dropped and acknowledged with "done", "ping"
// requests answered at once, "quit" ends it. Returns {"peak_rss_MB"}.
std::string RunReceiver(const EmberTransport& t, int port_fd) {
  log::SetLevel("warn");
  net::IoPool io(1);
  std::promise<void> quit;
  net::ConnectionOptions opts;
  net::ApplyConfig(BenchConfig(), &opts);
  opts.local_name = "server";
  opts.sink_factory = [](const wire::Json& head, uint64_t size) -> Result<std::unique_ptr<net::StreamSink>> {
    if (head.value("topic", "") == "bulk") return std::unique_ptr<net::StreamSink>(std::make_unique<DiscardSink>());
    return net::MakeBufferingSink(size);
  };
  net::Connection::Callbacks cb{
      .on_message = [&quit](const net::Connection::Ptr& c, net::IncomingMessage m) {
        std::string topic = m.header.value("topic", "");
        if (topic == "quit") return quit.set_value();
        wire::Json reply = {{"kind", topic == "ping" ? "reply" : "fire"}, {"topic", topic == "ping" ? "ping" : "done"},
                            {"req_id", m.header.value("req_id", uint64_t{0})}, {"status", "ok"}};
        (void)c->Send(std::move(reply), nullptr);
      }};
  auto listener = t.listen(io, [&](std::unique_ptr<net::Transport> tr) {
    net::Connection::Create(std::move(tr), net::ConnectionRole::kAcceptor, opts, cb)->Start();
  });
  if (!listener.ok()) std::abort();
  WriteLine(port_fd, (*listener)->local_address());
  quit.get_future().wait();
  (*listener)->Close();
  io.Stop();
  return Json{{"peak_rss_MB", PeakRssMB()}}.dump();
}

// Sender-side record of replies ("done" messages and ping replies).
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::map<uint64_t, Clock::time_point> replies;
};

bool WaitFor(Inbox& in, const std::function<bool()>& pred, std::chrono::seconds limit) {
  std::unique_lock lock(in.mu);
  return in.cv.wait_for(lock, limit, pred);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

// The sending process: phase 1 throughput, phase 2 round trips under load.
std::string RunSender(const EmberTransport& t, const std::string& address, uint64_t bytes) {
  log::SetLevel("warn");
  net::IoPool io(1);
  auto inbox = std::make_shared<Inbox>();
  net::ConnectionOptions opts;
  net::ApplyConfig(BenchConfig(), &opts);
  opts.local_name = "site-1";
  std::promise<net::Connection::Ptr> ready;
  net::Connection::Callbacks cb{
      .on_ready = [&ready](const net::Connection::Ptr& c) { ready.set_value(c); },
      .on_message = [inbox](const net::Connection::Ptr&, net::IncomingMessage m) {
        std::lock_guard lock(inbox->mu);
        if (m.header.value("topic", "") == "done") ++inbox->done;
        else inbox->replies[m.header.value("req_id", uint64_t{0})] = Clock::now();
        inbox->cv.notify_all();
      }};
  t.dial(io.Next(), address, [&](Result<std::unique_ptr<net::Transport>> tr) {
    if (!tr.ok()) std::abort();
    net::Connection::Create(std::move(*tr), net::ConnectionRole::kConnector, opts, cb)->Start();
  });
  auto f = ready.get_future();
  if (f.wait_for(10s) != std::future_status::ready) std::abort();
  net::Connection::Ptr conn = f.get();

  auto start = Clock::now();
  if (!conn->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<RepeatingBody>(bytes)).ok()) std::abort();
  if (!WaitFor(*inbox, [&] { return inbox->done == 1; }, 300s)) std::abort();
  double mbps = MB(bytes) / Seconds(Clock::now() - start);

  std::vector<double> rtt_ms;
  if (!conn->Send({{"kind", "fire"}, {"topic", "bulk"}}, std::make_shared<RepeatingBody>(bytes)).ok()) std::abort();
  for (uint64_t id = 1;; ++id) {
    {
      std::lock_guard lock(inbox->mu);
      if (inbox->done == 2) break;
    }
    auto sent = Clock::now();
    if (!conn->Send({{"kind", "req"}, {"topic", "ping"}, {"req_id", id}}, nullptr).ok()) std::abort();
    if (!WaitFor(*inbox, [&] { return inbox->replies.contains(id); }, 30s)) std::abort();
    std::lock_guard lock(inbox->mu);
    if (inbox->done < 2) {  // only round trips that overlapped the transfer count
      rtt_ms.push_back(std::chrono::duration<double, std::milli>(inbox->replies[id] - sent).count());
    }
    std::this_thread::sleep_for(2ms);
  }
  (void)conn->Send({{"kind", "fire"}, {"topic", "quit"}}, nullptr);
  std::this_thread::sleep_for(100ms);
  conn->Close(Status::Aborted("bench over"));
  io.Stop();
  return Json{{"MBps", mbps},
              {"rtt_n", rtt_ms.size()},
              {"rtt_p50_ms", Percentile(rtt_ms, 0.5)},
              {"rtt_p99_ms", Percentile(rtt_ms, 0.99)},
              {"peak_rss_MB", PeakRssMB()}}
      .dump();
}

struct EmberFigures {
  Json sender;
  Json receiver;
};

EmberFigures MeasureEmber(const EmberTransport& t, uint64_t bytes) {
  int port_pipe[2];
  if (pipe(port_pipe) != 0) std::abort();
  Child receiver = Spawn([&] { return RunReceiver(t, port_pipe[1]); });
  close(port_pipe[1]);
  std::string address = ReadLine(port_pipe[0]);
  close(port_pipe[0]);
  Child sender = Spawn([&] { return RunSender(t, address, bytes); });
  EmberFigures f;
  f.sender = Json::parse(Finish(sender));
  f.receiver = Json::parse(Finish(receiver));
  return f;
}

Json Round(double v, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

int Main(int argc, char** argv) {
  uint64_t mib = 1024;
  int rounds = 7;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--mib") mib = std::stoull(argv[i + 1]);
    if (std::string(argv[i]) == "--rounds") rounds = std::max(1, std::stoi(argv[i + 1]));
  }
  uint64_t bytes = mib << 20;
  const base::Config& config = BenchConfig();
  const uint64_t window = config.Get(base::kStreamingWindowSize);
  const uint64_t chunk = config.Get(base::kStreamingChunkSize);
  const std::string settings = DescribeSettings(config);
  std::printf("transport_bench: %llu MiB per transfer over loopback, sender and receiver in separate processes\n",
              static_cast<unsigned long long>(mib));
  std::printf("  Ember settings: window %.1f MiB, chunk %.1f MiB (%s)\n", window / 1048576.0, chunk / 1048576.0,
              settings.c_str());
  std::vector<double> raws, clears;
  EmberFigures clear;
  for (int r = 0; r < rounds; ++r) {
    raws.push_back(MeasureRawTcp(bytes));
    EmberFigures f = MeasureEmber(ClearTransport(), bytes);
    clears.push_back(f.sender["MBps"].get<double>());
    std::printf("  round %d: raw TCP %6.0f MB/s, Ember clear %6.0f MB/s\n", r + 1, raws.back(), clears.back());
    if (r == 0) clear = f;  // RTT and RSS figures from the first round
  }
  double raw = *std::max_element(raws.begin(), raws.end());
  double clear_mbps = *std::max_element(clears.begin(), clears.end());
  std::printf("  raw TCP socket pair        %8.0f MB/s (best of %d)\n", raw, rounds);
  std::printf("  Ember connection (clear)   %8.0f MB/s (best of %d, %.2f x raw)\n", clear_mbps, rounds,
              clear_mbps / raw);
  std::printf("  RTT under load (clear)     p50 %.2f ms, p99 %.2f ms over %d round trips\n",
              clear.sender["rtt_p50_ms"].get<double>(), clear.sender["rtt_p99_ms"].get<double>(),
              clear.sender["rtt_n"].get<int>());
  std::printf("  peak RSS                   sender %.1f MB, receiver %.1f MB\n",
              clear.sender["peak_rss_MB"].get<double>(), clear.receiver["peak_rss_MB"].get<double>());
  Json tls_mbps = nullptr, ratio_tls = nullptr;
  if (std::optional<double> tls = TlsMBps(bytes)) {
    double v = *tls;
    tls_mbps = Round(v, 1);
    ratio_tls = Round(v / raw, 3);
    std::printf("  Ember connection (TLS)     %8.0f MB/s  (%.2f x raw)\n", v, v / raw);
  } else {
    std::printf("  Ember connection (TLS)     n/a (no TLS transport yet)\n");
  }
  Json out = {{"bench", "transport"},
              {"bytes", bytes},
              {"window_bytes", window},
              {"chunk_bytes", chunk},
              {"settings", settings},
              {"raw_tcp_MBps", Round(raw, 1)},
              {"clear_MBps", Round(clear_mbps, 1)},
              {"tls_MBps", tls_mbps},
              {"ratio_clear", Round(clear_mbps / raw, 3)},
              {"ratio_tls", ratio_tls},
              {"rtt_p50_ms_under_load", Round(clear.sender["rtt_p50_ms"].get<double>(), 2)},
              {"rtt_p99_ms_under_load", Round(clear.sender["rtt_p99_ms"].get<double>(), 2)},
              {"sender_peak_rss_MB", Round(clear.sender["peak_rss_MB"].get<double>(), 1)},
              {"receiver_peak_rss_MB", Round(clear.receiver["peak_rss_MB"].get<double>(), 1)}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace ember::bench

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  return ember::bench::Main(argc, argv);
}
