// Cells over TLS on real loopback sockets, with certificates generated at test time by
// scripts/gen_certs.sh. Every wait has a deadline so a bug fails, not hangs.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers

#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <set>

#include "cell/cell.h"
#include "net/tls_test_certs.h"

namespace ember::cell {
namespace {

using namespace std::chrono_literals;
using net::SecurityMode;
using net::SecurityOptions;

// Records which peers a cell saw connect.
struct PeerLog {
  std::mutex mu;
  std::set<std::string> connected;
  bool Saw(const std::string& name) {
    std::lock_guard lock(mu);
    return connected.count(name) > 0;
  }
};

class CellTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = net::testing::GetTestCerts();
    ASSERT_NE(certs_, nullptr);
  }

  // A server cell listening with `security`, answering "echo", logging its peers in peers_.
  std::shared_ptr<Cell> StartServer(SecurityOptions security) {
    auto server = Cell::Start({.name = "server", .listen = "127.0.0.1:0", .security = std::move(security),
                               .connect_timeout = 3000ms});
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (!server.ok()) return nullptr;
    (*server)->Handle("echo", [](Message m, Responder r) {
      Json h = m.h();
      h["from"] = r.peer();
      r.Reply(h, m.body);
    });
    auto peers = peers_;
    (*server)->OnPeer([peers](const std::string& peer, bool connected) {
      std::lock_guard lock(peers->mu);
      if (connected) peers->connected.insert(peer);
    });
    return *server;
  }

  Result<std::shared_ptr<Cell>> StartSite(const std::string& name, const std::shared_ptr<Cell>& server,
                                          SecurityOptions security) {
    return Cell::Start({.name = name, .parent = server->listen_address(), .parent_security = std::move(security),
                        .connect_timeout = 3000ms});
  }

  const net::testing::TestCerts* certs_ = nullptr;
  std::shared_ptr<PeerLog> peers_ = std::make_shared<PeerLog>();
};

std::string BodyString(const Message& m) {
  return m.body ? std::string(reinterpret_cast<const char*>(m.body->contiguous()), m.body->size()) : "";
}

uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

TEST_F(CellTlsTest, MutualTlsRequestAndReplyWorkBothWays) {
  auto server = StartServer(certs_->For("server", SecurityMode::kMtls));
  ASSERT_NE(server, nullptr);
  auto site = StartSite("site-1", server, certs_->For("site-1", SecurityMode::kMtls));
  ASSERT_TRUE(site.ok()) << site.status().ToString();
  (*site)->Handle("echo", [](Message m, Responder r) { r.Reply(m.h(), m.body); });

  Result<Message> reply = (*site)->Request("server", Message::Make("echo", {{"x", 1}}, BytesBody("up")), 5s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["from"], "site-1");
  EXPECT_EQ(BodyString(*reply), "up");

  Result<Message> down = server->Request("site-1", Message::Make("echo", {{"y", 2}}, BytesBody("down")), 5s);
  ASSERT_TRUE(down.ok()) << down.status().ToString();
  EXPECT_EQ(down->h()["y"], 2);
  EXPECT_EQ(BodyString(*down), "down");
}

TEST_F(CellTlsTest, JobCellUnderItsSiteNameIsAccepted) {
  auto server = StartServer(certs_->For("server", SecurityMode::kMtls));
  ASSERT_NE(server, nullptr);
  auto job = StartSite("site-2.job-7", server, certs_->For("site-2", SecurityMode::kMtls));
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  Result<Message> reply = (*job)->Request("server", Message::Make("echo"), 5s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["from"], "site-2.job-7");
}

TEST_F(CellTlsTest, SiteWithCertificateFromAnotherCaIsRefused) {
  auto server = StartServer(certs_->For("server", SecurityMode::kMtls));
  ASSERT_NE(server, nullptr);
  auto site = StartSite("site-1", server, certs_->For("other/site-1", SecurityMode::kMtls));
  ASSERT_FALSE(site.ok());
  EXPECT_NE(site.status().message().find(server->listen_address()), std::string::npos) << site.status().message();
  EXPECT_FALSE(peers_->Saw("site-1"));
}

TEST_F(CellTlsTest, ServerWithCertificateFromAnotherCaIsRefused) {
  auto server = StartServer(certs_->For("other/server", SecurityMode::kMtls));
  ASSERT_NE(server, nullptr);
  auto site = StartSite("site-1", server, certs_->For("site-1", SecurityMode::kMtls));
  ASSERT_FALSE(site.ok());
  std::string why = site.status().message();
  EXPECT_NE(why.find("TLS handshake with " + server->listen_address()), std::string::npos) << why;
  EXPECT_NE(why.find("certificate verify failed: unable to get local issuer certificate"), std::string::npos) << why;
  EXPECT_FALSE(peers_->Saw("site-1"));
}

TEST_F(CellTlsTest, SiteCannotClaimAnotherSitesName) {
  auto server = StartServer(certs_->For("server", SecurityMode::kMtls));
  ASSERT_NE(server, nullptr);
  // site-2's certificate, but it names itself site-1.
  auto impostor = StartSite("site-1", server, certs_->For("site-2", SecurityMode::kMtls));
  ASSERT_FALSE(impostor.ok());
  EXPECT_EQ(impostor.status().code(), StatusCode::kFailedPrecondition) << impostor.status().ToString();
  EXPECT_NE(impostor.status().message().find("does not match its certificate (CN 'site-2')"), std::string::npos)
      << impostor.status().message();
  EXPECT_FALSE(peers_->Saw("site-1"));
  // The real site-2 is still welcome.
  auto site2 = StartSite("site-2", server, certs_->For("site-2", SecurityMode::kMtls));
  ASSERT_TRUE(site2.ok()) << site2.status().ToString();
}

TEST_F(CellTlsTest, SiteRefusesAParentWhoseCertificateNamesSomeoneElse) {
  // A valid server certificate (CN=server) on a cell that calls itself relay.
  auto relay = Cell::Start({.name = "relay", .listen = "127.0.0.1:0",
                            .security = certs_->For("server", SecurityMode::kTls)});
  ASSERT_TRUE(relay.ok()) << relay.status().ToString();
  auto site = StartSite("site-1", *relay, certs_->AnonymousClient());
  ASSERT_FALSE(site.ok());
  EXPECT_NE(site.status().message().find("the name 'relay' does not match its certificate (CN 'server')"),
            std::string::npos)
      << site.status().message();
}

TEST_F(CellTlsTest, SiteCertificateCannotServeAsAServerCertificate) {
  // site-1's certificate is for clients only (extendedKeyUsage clientAuth).
  auto fake = Cell::Start({.name = "site-1", .listen = "127.0.0.1:0",
                           .security = certs_->For("site-1", SecurityMode::kMtls)});
  ASSERT_TRUE(fake.ok()) << fake.status().ToString();
  auto site = StartSite("site-2", *fake, certs_->For("site-2", SecurityMode::kMtls));
  ASSERT_FALSE(site.ok());
  EXPECT_NE(site.status().message().find("certificate verify failed: unsuitable certificate purpose"), std::string::npos)
      << site.status().message();
}

TEST_F(CellTlsTest, TlsModeWorksWithoutAClientCertificate) {
  auto server = StartServer(certs_->For("server", SecurityMode::kTls));
  ASSERT_NE(server, nullptr);
  auto site = StartSite("site-1", server, certs_->AnonymousClient());
  ASSERT_TRUE(site.ok()) << site.status().ToString();
  Result<Message> reply = (*site)->Request("server", Message::Make("echo", {}, BytesBody("anon")), 5s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(BodyString(*reply), "anon");
}

TEST_F(CellTlsTest, MutualTlsServerRefusesAnAnonymousSite) {
  auto server = StartServer(certs_->For("server", SecurityMode::kMtls));
  ASSERT_NE(server, nullptr);
  auto site = StartSite("site-1", server, certs_->AnonymousClient());
  ASSERT_FALSE(site.ok());
  EXPECT_FALSE(peers_->Saw("site-1"));
}

TEST_F(CellTlsTest, ClearStillWorks) {
  auto server = StartServer({.mode = SecurityMode::kClear});
  ASSERT_NE(server, nullptr);
  auto site = StartSite("site-1", server, {.mode = SecurityMode::kClear});
  ASSERT_TRUE(site.ok()) << site.status().ToString();
  Result<Message> reply = (*site)->Request("server", Message::Make("echo", {}, BytesBody("plain")), 5s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(BodyString(*reply), "plain");
}

TEST_F(CellTlsTest, MismatchedModesFailWithAClearMessage) {
  auto server = StartServer({.mode = SecurityMode::kClear});
  ASSERT_NE(server, nullptr);
  auto site = StartSite("site-1", server, certs_->For("site-1", SecurityMode::kMtls));
  ASSERT_FALSE(site.ok());
  EXPECT_NE(site.status().message().find("connection_security"), std::string::npos) << site.status().message();
}

TEST_F(CellTlsTest, MissingCertificateFailsStartNamingTheFile) {
  SecurityOptions o = certs_->For("server", SecurityMode::kMtls);
  o.key_file = "/nonexistent/server.key";
  auto server = Cell::Start({.name = "server", .listen = "127.0.0.1:0", .security = o});
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("/nonexistent/server.key"), std::string::npos)
      << server.status().message();
}

TEST_F(CellTlsTest, LargeBodyOverTlsArrivesIntact) {
  auto server = StartServer(certs_->For("server", SecurityMode::kMtls));
  ASSERT_NE(server, nullptr);
  auto site = StartSite("site-1", server, certs_->For("site-1", SecurityMode::kMtls));
  ASSERT_TRUE(site.ok()) << site.status().ToString();
  constexpr size_t kSize = 64ull << 20;
  std::string big(kSize, '\0');
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < kSize; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(&big[i], &x, 8);
  }
  uint64_t sent_hash = Fnv1a(reinterpret_cast<const uint8_t*>(big.data()), big.size());
  Result<Message> reply = (*site)->Request("server", Message::Make("echo", {}, BytesBody(std::move(big))), 60s);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_TRUE(reply->body);
  ASSERT_EQ(reply->body->size(), kSize);
  ASSERT_NE(reply->body->contiguous(), nullptr);
  EXPECT_EQ(Fnv1a(reply->body->contiguous(), kSize), sent_hash);
}

}  // namespace
}  // namespace ember::cell
