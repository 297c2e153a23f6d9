// Push streams between real cells on loopback.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers

#include "stream/push_stream.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "stream/object_ref.h"
#include "stream/stream_test_util.h"

namespace ember::stream {
namespace {

using namespace std::chrono_literals;
using testing::RandomBytes;
using testing::Sha256;
using testing::StartOwner;
using testing::StartReceiver;

// The receiver ("server") hashes each push and replies with the hash and its headers.
void AddHashingReceiver(const std::shared_ptr<cell::Cell>& server, PushReceiverOptions options = {}) {
  HandlePush(
      server, "job.upload",
      [](ReceivedPush p, cell::Responder r) {
        Sha256 h;
        if (p.body) h.Update(p.body->contiguous(), p.body->size());
        r.Reply({{"sha", h.Hex()}, {"from", p.src}, {"push_id", p.push_id}, {"h", p.h}});
      },
      std::move(options));
}

TEST(PushStream, DeliversTheBlobAndReturnsTheReceiversReply) {
  auto server = StartOwner();
  AddHashingReceiver(server);
  auto site = StartReceiver("site-1", server);
  const std::string blob = RandomBytes(16 << 20, 21);
  Result<cell::Message> reply =
      PushStream(site, "server", cell::BytesBody(blob), {.topic = "job.upload", .h = {{"job", "J1"}}});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["sha"], Sha256::Of(blob));
  EXPECT_EQ(reply->h()["from"], "site-1");
  EXPECT_EQ(reply->h()["h"], cell::Json({{"job", "J1"}}));  // the push bookkeeping is not shown
  EXPECT_EQ(reply->h()["push_id"].get<std::string>().substr(0, 1), "P");
}

TEST(PushStream, PushesAFile) {
  auto path = std::filesystem::temp_directory_path() / ("ember_push_" + NewRefId());
  const std::string blob = RandomBytes(3 << 20, 22);
  std::ofstream(path, std::ios::binary) << blob;
  auto server = StartOwner();
  AddHashingReceiver(server);
  auto site = StartReceiver("site-1", server);
  Result<cell::Message> reply = PushFile(site, "server", path.string(), {.topic = "job.upload"});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->h()["sha"], Sha256::Of(blob));
  std::filesystem::remove(path);
  EXPECT_EQ(PushFile(site, "server", path.string(), {.topic = "job.upload"}).status().code(), StatusCode::kNotFound);
}

TEST(PushStream, BothSidesReportProgressEndingInDone) {
  std::mutex mu;
  std::vector<TransferProgress> sent, received;
  auto server = StartOwner();
  AddHashingReceiver(server, {.on_progress = [&](const std::string& src, const std::string&, const TransferProgress& p) {
                                EXPECT_EQ(src, "site-1");
                                std::lock_guard lock(mu);
                                received.push_back(p);
                              }});
  auto site = StartReceiver("site-1", server);
  const std::string blob = RandomBytes(32 << 20, 23);
  PushOptions o{.topic = "job.upload", .on_progress = [&](const TransferProgress& p) {
                  std::lock_guard lock(mu);
                  sent.push_back(p);
                }};
  o.progress_interval = 5ms;
  Result<cell::Message> reply = PushStream(site, "server", cell::BytesBody(blob), o);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  std::lock_guard lock(mu);
  ASSERT_FALSE(sent.empty());
  EXPECT_TRUE(sent.back().done);
  EXPECT_EQ(sent.back().bytes_done, blob.size());
  EXPECT_EQ(sent.back().bytes_total, blob.size());
  for (size_t i = 1; i < sent.size(); ++i) EXPECT_GE(sent[i].bytes_done, sent[i - 1].bytes_done);
  ASSERT_FALSE(received.empty());
  EXPECT_TRUE(received.back().done);  // the final report comes before the handler runs
  EXPECT_EQ(received.back().bytes_done, blob.size());
}

TEST(PushStream, FailsClearlyWithoutAReceiverOrATopic) {
  auto server = StartOwner();
  auto site = StartReceiver("site-1", server);
  EXPECT_EQ(PushStream(site, "server", cell::BytesBody("x"), {.topic = "nobody.listens"}).status().code(),
            StatusCode::kUnimplemented);
  EXPECT_EQ(PushStream(site, "server", cell::BytesBody("x"), {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PushStream(site, "site-9", cell::BytesBody("x"), {.topic = "job.upload", .timeout = 2s}).status().code(),
            StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ember::stream
