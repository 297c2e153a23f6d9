#include "base/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

namespace ember::base {
namespace {

using namespace std::chrono_literals;

Config::EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& var) -> std::optional<std::string> {
    auto it = vars.find(var);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string WriteTempFile(const std::string& text) {
  std::string path = ::testing::TempDir() + "ember_config_" + std::to_string(::getpid()) + ".json";
  std::ofstream(path) << text;
  return path;
}

TEST(Config, HasFlareDefaults) {
  Config c;
  EXPECT_EQ(c.Get(kStreamingChunkSize), 1u << 20);
  EXPECT_EQ(c.Get(kStreamingWindowSize), 32u << 20);  // FLARE: 16 MiB (docs/config.md says why)
  EXPECT_EQ(c.Get(kStreamingSendTimeout), 30s);
  EXPECT_EQ(c.Get(kStreamingAckProgressTimeout), 60s);
  EXPECT_EQ(c.Get(kStreamingAckProgressCheckInterval), 5s);
  EXPECT_EQ(c.Get(kSfmSendStallTimeout), 45s);
  EXPECT_EQ(c.Get(kSfmSendStallConsecutiveChecks), 3);
  EXPECT_FALSE(c.Get(kSfmCloseStalledConnection));
  EXPECT_EQ(c.Get(kHeartbeatInterval), 60s);
  EXPECT_EQ(c.Get(kMaxBodySize), 64ull << 30);
  EXPECT_EQ(c.SourceOf("streaming_chunk_size"), "default");
}

TEST(Config, KeepsTodaysTimeoutsAsDefaults) {
  Config c;
  EXPECT_EQ(c.Get(kConnectTimeout), 10s);
  EXPECT_EQ(c.Get(kReconnectInitialBackoff), 1s);
  EXPECT_EQ(c.Get(kReconnectMaxBackoff), 10s);
  EXPECT_EQ(c.Get(kGoawayLinger), 500ms);
  EXPECT_EQ(c.Get(kCommunicationTimeout), 60s);
  EXPECT_EQ(c.Get(kCommunicationMaxAttempts), 10);
  EXPECT_EQ(c.Get(kCommunicationRetryInterval), 1s);
  EXPECT_EQ(c.Get(kTaskParkTimeout), 5s);
  EXPECT_EQ(c.Get(kEndRunDrainTimeout), 5s);
  EXPECT_EQ(c.Get(kScriptGetTaskTimeout), 24h);
  EXPECT_EQ(c.Get(kScriptTransferTimeout), 1h);
  EXPECT_EQ(c.Get(kScriptLinkTimeout), 60s);
  EXPECT_EQ(c.Get(kScriptMinShutdownTimeout), 5s);
  EXPECT_EQ(c.Get(kProcessTerminateGrace), 2s);
  EXPECT_EQ(c.Get(kSiteExitMargin), 10s);
  EXPECT_EQ(c.Get(kStreamingPerRequestTimeout), 60s);
  EXPECT_EQ(c.Get(kDownloadMaxRetries), 3);
  EXPECT_EQ(c.Get(kDownloadRetryBackoff), 1s);
  EXPECT_EQ(c.Get(kDownloadRetryMaxBackoff), 60s);
  EXPECT_EQ(c.Get(kStreamingPushTimeout), 600s);
}

TEST(Config, EveryRegisteredDefaultParsesAndStaysInBounds) {
  Config c;
  for (const ConfigKeyInfo& k : ConfigKeys()) {
    EXPECT_TRUE(c.Set(k.name, k.default_value, "test").ok()) << k.name << "=" << k.default_value;
  }
}

TEST(Config, DefaultConfigHoldsTheRegisteredDefaults) {
  const Config fresh;
  EXPECT_EQ(DefaultOf(kStreamingWindowSize), fresh.Get(kStreamingWindowSize));
  EXPECT_EQ(DefaultOf(kConnectTimeout), fresh.Get(kConnectTimeout));
  EXPECT_EQ(DefaultConfig().SourceOf("streaming_window_size"), "default");
}

TEST(Config, ConfigOrEnvironmentKeepsAGivenConfig) {
  auto given = std::make_shared<Config>();
  ASSERT_TRUE(given->Set("connect_timeout", "3", "test").ok());
  auto c = ConfigOrEnvironment(given);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->get(), given.get());
  auto loaded = ConfigOrEnvironment(nullptr);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_NE(*loaded, nullptr);
}

TEST(Config, FileOverridesDefaultsAndEnvironmentOverridesTheFile) {
  std::string path = WriteTempFile(
      R"({"streaming_chunk_size": "256KiB", "streaming_send_timeout": 2.5,
          "sfm_close_stalled_connection": true, "heartbeat_interval": "500ms"})");
  auto c = Config::Load(path, FakeEnv({{"EMBER_STREAMING_CHUNK_SIZE", "2MiB"},
                                        {"EMBER_SFM_SEND_STALL_CONSECUTIVE_CHECKS", "5"}}));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->Get(kStreamingChunkSize), 2u << 20);
  EXPECT_EQ(c->Get(kStreamingSendTimeout), 2500ms);
  EXPECT_TRUE(c->Get(kSfmCloseStalledConnection));
  EXPECT_EQ(c->Get(kHeartbeatInterval), 500ms);
  EXPECT_EQ(c->Get(kSfmSendStallConsecutiveChecks), 5);
  EXPECT_EQ(c->SourceOf("streaming_chunk_size"), "environment variable EMBER_STREAMING_CHUNK_SIZE");
  EXPECT_EQ(c->SourceOf("streaming_send_timeout"), "config file " + path);
  std::remove(path.c_str());
}

TEST(Config, RejectsABadEnvironmentValueNamingTheVariableAndTheKey) {
  auto c = Config::Load("", FakeEnv({{"EMBER_STREAMING_CHUNK_SIZE", "12x"}}));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "environment variable EMBER_STREAMING_CHUNK_SIZE: streaming_chunk_size=\"12x\" must be a "
            "byte count such as 1048576 or 1MiB");
}

TEST(Config, RejectsABadFileValueNamingTheFileAndTheKey) {
  std::string path = WriteTempFile(R"({"sfm_close_stalled_connection": "maybe"})");
  auto c = Config::Load(path, FakeEnv({}));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("config file " + path), std::string::npos) << c.status().ToString();
  EXPECT_NE(c.status().message().find("sfm_close_stalled_connection=\"maybe\" must be true or false"),
            std::string::npos)
      << c.status().ToString();
  std::remove(path.c_str());
}

TEST(Config, RejectsValuesOutOfBounds) {
  Config c;
  Status small = c.Set("streaming_chunk_size", "10", "test");
  EXPECT_EQ(small.message(), "test: streaming_chunk_size=\"10\" is below the minimum 1024 bytes");
  EXPECT_FALSE(c.Set("streaming_chunk_size", "32MiB", "test").ok());
  EXPECT_FALSE(c.Set("streaming_send_timeout", "-1", "test").ok());
  EXPECT_FALSE(c.Set("sfm_send_stall_consecutive_checks", "0", "test").ok());
  EXPECT_FALSE(c.Set("sfm_send_stall_consecutive_checks", "2.5", "test").ok());
  EXPECT_EQ(c.Get(kStreamingChunkSize), 1u << 20);  // failed sets change nothing
}

TEST(Config, RejectsUnknownKeysInAFileButIgnoresUnrelatedEmberVariables) {
  std::string path = WriteTempFile(R"({"streaming_chunksize": 1024})");
  auto c = Config::Load(path, FakeEnv({}));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("unknown config key 'streaming_chunksize'"), std::string::npos);
  std::remove(path.c_str());
  EXPECT_TRUE(Config::Load("", FakeEnv({{"EMBER_BIN", "/x"}, {"EMBER_LINK_TOKEN", "t"}})).ok());
}

TEST(Config, ReportsAMissingOrMalformedFile) {
  auto missing = Config::Load("/nonexistent/ember.json", FakeEnv({}));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/ember.json"), std::string::npos);
  std::string path = WriteTempFile("[1, 2]");
  EXPECT_EQ(Config::Load(path, FakeEnv({})).status().code(), StatusCode::kInvalidArgument);
  std::remove(path.c_str());
}

TEST(Config, ParsesUnitsAndSpellings) {
  Config c;
  ASSERT_TRUE(c.Set("streaming_window_size", " 1.5 MiB ", "t").ok());
  EXPECT_EQ(c.Get(kStreamingWindowSize), 1572864u);
  ASSERT_TRUE(c.Set("max_body_size", "2g", "t").ok());
  EXPECT_EQ(c.Get(kMaxBodySize), 2ull << 30);
  ASSERT_TRUE(c.Set("streaming_send_timeout", "2m", "t").ok());
  EXPECT_EQ(c.Get(kStreamingSendTimeout), 120s);
  ASSERT_TRUE(c.Set("sfm_close_stalled_connection", "YES", "t").ok());
  EXPECT_TRUE(c.Get(kSfmCloseStalledConnection));
  EXPECT_EQ(ConfigEnvVar("streaming_chunk_size"), "EMBER_STREAMING_CHUNK_SIZE");
}

TEST(Config, EveryKeyIsDocumentedInConfigMd) {
  const char* root = std::getenv("EMBER_SOURCE_DIR");
  if (root == nullptr) GTEST_SKIP() << "EMBER_SOURCE_DIR not set";
  std::ifstream in(std::string(root) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md missing";
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const ConfigKeyInfo& k : ConfigKeys()) {
    EXPECT_NE(doc.find("`" + std::string(k.name) + "`"), std::string::npos) << k.name;
    EXPECT_NE(doc.find(ConfigEnvVar(k.name)), std::string::npos) << k.name;
  }
}

}  // namespace
}  // namespace ember::base
