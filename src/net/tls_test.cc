// TLS transports over real loopback sockets, with certificates generated at test time.
// Every wait has a deadline so a bug fails, not hangs.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include "net/tls.h"

#include <gtest/gtest.h>

#include <asio/post.hpp>

#include <algorithm>
#include <future>
#include <optional>

#include "net/connection.h"
#include "net/tls_test_certs.h"

namespace ember::net {
namespace {

using namespace std::chrono_literals;
using testing::GetTestCerts;
using testing::TestCerts;
using TransportResult = Result<std::unique_ptr<Transport>>;

// A promise whose value is read with a deadline.
template <typename T>
struct Outcome {
  std::shared_ptr<std::promise<T>> promise = std::make_shared<std::promise<T>>();
  std::future<T> future = promise->get_future();
  std::function<void(T)> Setter() {
    return [p = promise](T v) { p->set_value(std::move(v)); };
  }
  std::optional<T> Get(std::chrono::milliseconds timeout = 10s) {
    if (future.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return future.get();
  }
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = GetTestCerts();
    ASSERT_NE(certs_, nullptr);
  }
  void TearDown() override {
    for (auto& l : listeners_) l->Close();
    pool_.Stop();
  }

  std::shared_ptr<TlsContext> Context(const SecurityOptions& o, TlsSide side) {
    auto c = TlsContext::Create(o, side);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? *c : nullptr;
  }

  // Listens on loopback with `server`; the first accepted (handshaken) transport lands in `accepted`.
  std::string Listen(std::shared_ptr<TlsContext> server, Outcome<std::unique_ptr<Transport>>& accepted,
                     std::chrono::milliseconds handshake_timeout = 5s) {
    auto set = accepted.Setter();
    auto once = std::make_shared<std::once_flag>();
    auto l = TcpListener::Listen(pool_, "127.0.0.1:0", [set, once](std::unique_ptr<Transport> t) {
      std::call_once(*once, [&] { set(std::move(t)); });
    }, TlsAcceptUpgrade(std::move(server), handshake_timeout));
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    listeners_.push_back(*l);
    return (*l)->local_address();
  }

  TransportResult Dial(const std::string& address, std::shared_ptr<TlsContext> client,
                       std::chrono::milliseconds timeout = 5s) {
    Outcome<TransportResult> dialed;
    DialTls(pool_.Next(), address, timeout, std::move(client), dialed.Setter());
    auto r = dialed.Get(timeout + 5s);
    if (!r) return Status::Internal("DialTls never called back");
    return std::move(*r);
  }

  // Runs a server-side handshake over one raw accepted socket, returning its outcome.
  struct RawServer {
    asio::ip::tcp::acceptor acceptor;
    Outcome<TransportResult> handshake;
  };
  std::unique_ptr<RawServer> RawTlsServer(std::shared_ptr<TlsContext> server, std::chrono::milliseconds timeout) {
    auto& io = pool_.Next();
    auto raw = std::make_unique<RawServer>(RawServer{asio::ip::tcp::acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}), {}});
    auto set = raw->handshake.Setter();
    raw->acceptor.async_accept(pool_.Next(), [server, timeout, set](std::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return set(Status::Internal("accept: " + ec.message()));
      HandshakeTls(server, std::move(s), timeout, set);
    });
    return raw;
  }
  static std::string AddressOf(const RawServer& raw) {
    return FormatEndpoint(raw.acceptor.local_endpoint());
  }

  const TestCerts* certs_ = nullptr;
  IoPool pool_{2};
  std::vector<std::shared_ptr<TcpListener>> listeners_;
};

// Reads until an error or `want` bytes arrive; returns the bytes or the error.
Result<std::string> ReadBytes(Transport& t, size_t want, std::chrono::milliseconds timeout = 10s) {
  struct State {
    std::string got;
    std::vector<uint8_t> buf = std::vector<uint8_t>(64 << 10);
    std::promise<std::error_code> done;
  };
  auto st = std::make_shared<State>();
  auto step = std::make_shared<std::function<void()>>();
  *step = [&t, st, step, want] {
    t.AsyncReadSome(st->buf, [&t, st, step, want](const std::error_code& ec, size_t n) {
      if (ec) return st->done.set_value(ec);
      st->got.append(reinterpret_cast<char*>(st->buf.data()), n);
      if (st->got.size() >= want) return st->done.set_value({});
      (*step)();
    });
  };
  asio::post(t.executor(), [step] { (*step)(); });
  auto f = st->done.get_future();
  if (f.wait_for(timeout) != std::future_status::ready) {
    asio::post(t.executor(), [&t] { t.Close(); });
    f.wait_for(5s);
    *step = nullptr;
    return Status::DeadlineExceeded("read timed out");
  }
  std::error_code ec = f.get();
  *step = nullptr;  // break the cycle
  if (ec) return Status::Unavailable(ec.message());
  return st->got;
}

Status WriteBytes(Transport& t, const std::string& bytes) {
  std::promise<std::error_code> done;
  asio::post(t.executor(), [&] {
    t.AsyncWrite({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                 [&done](const std::error_code& ec, size_t) { done.set_value(ec); });
  });
  auto f = done.get_future();
  if (f.wait_for(10s) != std::future_status::ready) return Status::DeadlineExceeded("write timed out");
  std::error_code ec = f.get();
  return ec ? Status::Unavailable(ec.message()) : Status::Ok();
}

void CloseOnIoThread(std::unique_ptr<Transport>& t) {
  if (!t) return;
  std::promise<void> done;
  asio::post(t->executor(), [&] {
    t->Close();
    done.set_value();
  });
  done.get_future().wait_for(5s);
}

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

TEST_F(TlsTest, MutualTlsHandshakeExposesBothIdentitiesAndCarriesBytes) {
  Outcome<std::unique_ptr<Transport>> accepted;
  std::string address = Listen(Context(certs_->For("server", SecurityMode::kMtls), TlsSide::kServer), accepted);
  TransportResult client = Dial(address, Context(certs_->For("site-1", SecurityMode::kMtls), TlsSide::kClient));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto server = accepted.Get();
  ASSERT_TRUE(server.has_value());

  PeerIdentity seen_by_client = (*client)->peer_identity();
  EXPECT_TRUE(seen_by_client.verified);
  EXPECT_EQ(seen_by_client.common_name, "server");
  EXPECT_TRUE(Contains(seen_by_client.subject_alt_names, "localhost"));
  EXPECT_TRUE(Contains(seen_by_client.subject_alt_names, "127.0.0.1"));
  PeerIdentity seen_by_server = (*server)->peer_identity();
  EXPECT_TRUE(seen_by_server.verified);
  EXPECT_EQ(seen_by_server.common_name, "site-1");

  ASSERT_TRUE(WriteBytes(**client, "hello over tls").ok());
  auto got = ReadBytes(**server, 14);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, "hello over tls");

  // A peer that just closes (no close_notify) reads as eof, as over TCP.
  CloseOnIoThread(*client);
  auto after = ReadBytes(**server, 1);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().message(), asio::error_code(asio::error::eof).message());
  CloseOnIoThread(*server);
}

TEST_F(TlsTest, MutualTlsWorksWithRsaCertificatesToo) {
  // The shared set uses P-256 keys (fast to make); deployments default to RSA-2048.
  std::unique_ptr<TestCerts> rsa = testing::MakeTestCerts({"--sites", "1", "--key", "rsa"});
  ASSERT_NE(rsa, nullptr);
  Outcome<std::unique_ptr<Transport>> accepted;
  std::string address = Listen(Context(rsa->For("server", SecurityMode::kMtls), TlsSide::kServer), accepted);
  TransportResult client = Dial(address, Context(rsa->For("site-1", SecurityMode::kMtls), TlsSide::kClient));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto server = accepted.Get();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ((*server)->peer_identity().common_name, "site-1");
  ASSERT_TRUE(WriteBytes(**client, "rsa").ok());
  auto got = ReadBytes(**server, 3);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, "rsa");
  CloseOnIoThread(*client);
  CloseOnIoThread(*server);
}

TEST_F(TlsTest, LargeWriteArrivesIntactAndWriteSomeReportsPart) {
  Outcome<std::unique_ptr<Transport>> accepted;
  std::string address = Listen(Context(certs_->For("server", SecurityMode::kMtls), TlsSide::kServer), accepted);
  TransportResult client = Dial(address, Context(certs_->For("site-1", SecurityMode::kMtls), TlsSide::kClient));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto server = accepted.Get();
  ASSERT_TRUE(server.has_value());

  std::string big(3 * (1 << 20) + 12345, '\0');  // several write slices, not a multiple of a record
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 2654435761u >> 13);
  ASSERT_TRUE(WriteBytes(**client, big).ok());
  auto got = ReadBytes(**server, big.size());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == big);

  std::promise<std::pair<std::error_code, size_t>> some;
  asio::post((*client)->executor(), [&] {
    (*client)->AsyncWriteSome({reinterpret_cast<const uint8_t*>(big.data()), big.size()},
                              [&some](const std::error_code& ec, size_t n) { some.set_value({ec, n}); });
  });
  auto f = some.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  auto [ec, n] = f.get();
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_GT(n, 0u);
  EXPECT_LT(n, big.size());
  got = ReadBytes(**server, n);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == big.substr(0, n));
  CloseOnIoThread(*client);
  CloseOnIoThread(*server);
}

TEST_F(TlsTest, ClientRefusesServerCertificateFromAnotherCa) {
  Outcome<std::unique_ptr<Transport>> accepted;
  std::string address =
      Listen(Context(certs_->For("other/server", SecurityMode::kMtls), TlsSide::kServer), accepted);
  TransportResult client = Dial(address, Context(certs_->For("site-1", SecurityMode::kMtls), TlsSide::kClient));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(client.status().message().find("TLS handshake with " + address), std::string::npos)
      << client.status().message();
  EXPECT_NE(client.status().message().find("certificate verify failed: unable to get local issuer certificate"),
            std::string::npos)
      << client.status().message();
  EXPECT_FALSE(accepted.Get(200ms).has_value());
}

TEST_F(TlsTest, ServerRefusesClientCertificateFromAnotherCa) {
  auto raw = RawTlsServer(Context(certs_->For("server", SecurityMode::kMtls), TlsSide::kServer), 5s);
  // Under TLS 1.3 the client finishes before the server has judged its certificate, so the
  // client may see success and learn of the refusal on its first read.
  TransportResult client =
      Dial(AddressOf(*raw), Context(certs_->For("other/site-1", SecurityMode::kMtls), TlsSide::kClient));
  auto server = raw->handshake.Get();
  ASSERT_TRUE(server.has_value());
  ASSERT_FALSE(server->ok());
  EXPECT_EQ(server->status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(server->status().message().find("certificate verify failed: unable to get local issuer certificate"),
            std::string::npos)
      << server->status().message();
  if (client.ok()) {
    EXPECT_FALSE(ReadBytes(**client, 1).ok());
    CloseOnIoThread(*client);
  }
}

TEST_F(TlsTest, MutualTlsServerRefusesClientWithoutCertificate) {
  auto raw = RawTlsServer(Context(certs_->For("server", SecurityMode::kMtls), TlsSide::kServer), 5s);
  TransportResult client = Dial(AddressOf(*raw), Context(certs_->AnonymousClient(), TlsSide::kClient));
  auto server = raw->handshake.Get();
  ASSERT_TRUE(server.has_value());
  ASSERT_FALSE(server->ok());
  EXPECT_NE(server->status().message().find("certificate"), std::string::npos) << server->status().message();
  if (client.ok()) {
    EXPECT_FALSE(ReadBytes(**client, 1).ok());
    CloseOnIoThread(*client);
  }
}

TEST_F(TlsTest, TlsModeAcceptsAnonymousClient) {
  Outcome<std::unique_ptr<Transport>> accepted;
  std::string address = Listen(Context(certs_->For("server", SecurityMode::kTls), TlsSide::kServer), accepted);
  TransportResult client = Dial(address, Context(certs_->AnonymousClient(), TlsSide::kClient));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto server = accepted.Get();
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ((*client)->peer_identity().common_name, "server");
  EXPECT_FALSE((*server)->peer_identity().verified);
  EXPECT_EQ((*server)->peer_identity().common_name, "");
  ASSERT_TRUE(WriteBytes(**server, "from server").ok());
  auto got = ReadBytes(**client, 11);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, "from server");
  CloseOnIoThread(*client);
  CloseOnIoThread(*server);
}

TEST_F(TlsTest, ServerHandshakeWithSilentPeerHitsItsDeadline) {
  auto raw = RawTlsServer(Context(certs_->For("server", SecurityMode::kMtls), TlsSide::kServer), 300ms);
  asio::ip::tcp::socket silent(pool_.Next());
  silent.connect(raw->acceptor.local_endpoint());
  auto start = std::chrono::steady_clock::now();
  auto server = raw->handshake.Get(5s);
  ASSERT_TRUE(server.has_value());
  ASSERT_FALSE(server->ok());
  EXPECT_EQ(server->status().code(), StatusCode::kDeadlineExceeded) << server->status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(TlsTest, DialToSilentServerHitsItsDeadline) {
  asio::ip::tcp::acceptor mute(pool_.Next(), {asio::ip::make_address("127.0.0.1"), 0});  // accepts via backlog, never answers
  auto start = std::chrono::steady_clock::now();
  TransportResult client = Dial(FormatEndpoint(mute.local_endpoint()),
                                Context(certs_->For("site-1", SecurityMode::kMtls), TlsSide::kClient), 300ms);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kDeadlineExceeded) << client.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(TlsTest, TlsClientAgainstClearServerFailsWithAHint) {
  // A clear Ember acceptor answers a ClientHello with a protocol error and GOAWAY.
  struct Accepted {
    std::mutex mu;
    std::vector<Connection::Ptr> conns;
  };
  auto accepted = std::make_shared<Accepted>();
  auto l = TcpListener::Listen(pool_, "127.0.0.1:0", [accepted](std::unique_ptr<Transport> t) {
    auto c = Connection::Create(std::move(t), ConnectionRole::kAcceptor, {.local_name = "server"}, {});
    c->Start();
    std::lock_guard lock(accepted->mu);
    accepted->conns.push_back(c);
  });
  ASSERT_TRUE(l.ok());
  listeners_.push_back(*l);
  TransportResult client =
      Dial((*l)->local_address(), Context(certs_->For("site-1", SecurityMode::kMtls), TlsSide::kClient));
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.status().message().find((*l)->local_address()), std::string::npos) << client.status().message();
  EXPECT_NE(client.status().message().find("connection_security"), std::string::npos) << client.status().message();
  std::lock_guard lock(accepted->mu);
  for (auto& c : accepted->conns) c->Close(Status::Aborted("test over"));
}

TEST_F(TlsTest, ConnectionExposesThePeerIdentity) {
  Outcome<std::unique_ptr<Transport>> accepted;
  std::string address = Listen(Context(certs_->For("server", SecurityMode::kMtls), TlsSide::kServer), accepted);
  TransportResult client = Dial(address, Context(certs_->For("site-2", SecurityMode::kMtls), TlsSide::kClient));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto server = accepted.Get();
  ASSERT_TRUE(server.has_value());
  auto conn = Connection::Create(std::move(*server), ConnectionRole::kAcceptor, {.local_name = "server"}, {});
  EXPECT_EQ(conn->peer_identity().common_name, "site-2");
  EXPECT_TRUE(conn->peer_identity().verified);
  conn->Close(Status::Aborted("test over"));
  CloseOnIoThread(*client);
}

TEST_F(TlsTest, ContextNamesAMissingFileAndItsKey) {
  SecurityOptions o = certs_->For("site-1", SecurityMode::kMtls);
  o.cert_file = certs_->dir + "/nope.crt";
  auto c = TlsContext::Create(o, TlsSide::kClient);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("nope.crt"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("ssl_cert"), std::string::npos) << c.status().message();

  SecurityOptions no_ca = certs_->For("server", SecurityMode::kMtls);
  no_ca.ca_file.clear();
  c = TlsContext::Create(no_ca, TlsSide::kServer);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("ssl_root_cert"), std::string::npos) << c.status().message();
}

TEST_F(TlsTest, ContextRejectsAKeyThatDoesNotMatchTheCertificate) {
  SecurityOptions o = certs_->For("site-1", SecurityMode::kMtls);
  o.key_file = certs_->dir + "/site-2.key";
  auto c = TlsContext::Create(o, TlsSide::kClient);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("does not match"), std::string::npos) << c.status().message();
}

TEST_F(TlsTest, TlsModeClientNeedsNoCertificateButServerDoes) {
  EXPECT_TRUE(TlsContext::Create(certs_->AnonymousClient(), TlsSide::kClient).ok());
  SecurityOptions server_without_cert = certs_->AnonymousClient();
  EXPECT_FALSE(TlsContext::Create(server_without_cert, TlsSide::kServer).ok());
  auto clear = MakeTlsContext({}, TlsSide::kServer);
  ASSERT_TRUE(clear.ok());
  EXPECT_EQ(*clear, nullptr);
}

TEST(SecurityOptions, JsonDefaultsToMutualTlsAndResolvesRelativePaths) {
  auto o = SecurityOptionsFromJson(
      wire::Json{{"ssl_cert", "site-1.crt"}, {"ssl_private_key", "/abs/site-1.key"}, {"ssl_root_cert", "rootCA.pem"}},
      "/kit/startup");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->mode, SecurityMode::kMtls);
  EXPECT_EQ(o->cert_file, "/kit/startup/site-1.crt");
  EXPECT_EQ(o->key_file, "/abs/site-1.key");
  EXPECT_EQ(o->ca_file, "/kit/startup/rootCA.pem");
}

TEST(SecurityOptions, JsonRejectsUnknownModeAndNonStringPaths) {
  auto bad_mode = SecurityOptionsFromJson(wire::Json{{"connection_security", "ssl"}}, "");
  ASSERT_FALSE(bad_mode.ok());
  EXPECT_NE(bad_mode.status().message().find("'ssl'"), std::string::npos);
  EXPECT_FALSE(SecurityOptionsFromJson(wire::Json{{"ssl_cert", 3}}, "").ok());
  auto clear = SecurityOptionsFromJson(wire::Json{{"connection_security", "clear"}}, "");
  ASSERT_TRUE(clear.ok());
  EXPECT_EQ(clear->mode, SecurityMode::kClear);
}

}  // namespace
}  // namespace ember::net
