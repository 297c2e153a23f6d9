// The `ember` command line as a user meets it: argument errors, bad inputs and their
// exit codes (0 success, 1 the job failed, 2 bad usage or bad input), each with a line on
// stderr naming what was wrong. Nothing here starts a job: every case is refused before
// a server or a site process exists.
#include "cli/cli.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ember::cli {
namespace {

namespace fs = std::filesystem;

struct Outcome {
  int code = -1;
  std::string err;
  std::string out;
};

// Runs Main in this process with `args` after "ember", capturing stdout and stderr.
Outcome RunEmber(std::vector<std::string> args) {
  args.insert(args.begin(), "ember");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  testing::internal::CaptureStderr();
  testing::internal::CaptureStdout();
  Outcome o;
  o.code = Main(static_cast<int>(args.size()), argv.data());
  o.out = testing::internal::GetCapturedStdout();
  o.err = testing::internal::GetCapturedStderr();
  return o;
}

// A valid job folder (as FedAvgRecipe.export writes it) in a fresh temp dir.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("ember_cli_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    job_ = root_ / "job";
    fs::create_directories(job_ / "custom");
    fs::create_directories(job_ / "model");
    Write("meta.json", R"({"format": "ember-job-1", "name": "j", "min_clients": 2})");
    Write("server.json", R"({"min_clients": 2, "num_rounds": 1})");
    Write("client.json", R"({"train_script": "client.py"})");
    Write("custom/client.py", "raise SystemExit(1)\n");
    Write("model/initial.safetensors", "x");
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& rel, const std::string& text) { std::ofstream(job_ / rel) << text; }
  std::string job() const { return job_.string(); }
  std::string ws() const { return (root_ / "ws").string(); }

  fs::path root_;
  fs::path job_;
};

TEST(Cli, VersionPrintsTheVersionAndExitsZero) {
  Outcome o = RunEmber({"--version"});
  EXPECT_EQ(o.code, 0);
  EXPECT_NE((o.out + o.err).find(std::string("ember ") + EMBER_VERSION), std::string::npos) << o.out << o.err;
}

TEST(Cli, NoSubcommandIsAUsageError) {
  Outcome o = RunEmber({});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("subcommand"), std::string::npos) << o.err;
}

TEST(Cli, UnknownSubcommandIsAUsageError) {
  EXPECT_EQ(RunEmber({"train"}).code, 2);
}

TEST(Cli, SimulateWithoutAWorkspaceNamesTheOption) {
  Outcome o = RunEmber({"simulate", "/nonexistent", "-n", "2"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("--workspace"), std::string::npos) << o.err;
}

TEST(Cli, SimulateWithANonNumericSiteCountIsAUsageError) {
  Outcome o = RunEmber({"simulate", "/nonexistent", "-n", "two", "-w", "/tmp/x"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("-n"), std::string::npos) << o.err;
}

TEST(Cli, SiteWithoutItsNameNamesTheOption) {
  Outcome o = RunEmber({"site", "/nonexistent", "--server", "127.0.0.1:1", "-w", "/tmp/x"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("--name"), std::string::npos) << o.err;
}

TEST_F(CliTest, SimulateOfAMissingJobFolderNamesItAndExitsTwo) {
  Outcome o = RunEmber({"simulate", (root_ / "nope").string(), "-n", "2", "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("nope"), std::string::npos) << o.err;
  EXPECT_FALSE(fs::exists(ws())) << "nothing may be created for a refused job";
}

TEST_F(CliTest, SimulateWithFewerSitesThanMinClientsIsRefused) {
  Outcome o = RunEmber({"simulate", job(), "-n", "1", "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("min_clients=2"), std::string::npos) << o.err;
}

TEST_F(CliTest, SimulateWithNoSitesIsRefused) {
  Outcome o = RunEmber({"simulate", job(), "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("no sites"), std::string::npos) << o.err;
}

TEST_F(CliTest, SimulateWithACountThatDisagreesWithTheNamesIsRefused) {
  Outcome o = RunEmber({"simulate", job(), "-n", "3", "-c", "a,b", "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("-n 3 does not match"), std::string::npos) << o.err;
}

TEST_F(CliTest, SimulateWithADuplicateSiteNameIsRefused) {
  Outcome o = RunEmber({"simulate", job(), "-c", "a,a", "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("given twice"), std::string::npos) << o.err;
}

TEST_F(CliTest, SimulateWithABadSiteNameNamesIt) {
  Outcome o = RunEmber({"simulate", job(), "-c", "site-1,server", "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("bad site name 'server'"), std::string::npos) << o.err;
}

TEST_F(CliTest, SimulateWithNegativeThreadsIsRefused) {
  Outcome o = RunEmber({"simulate", job(), "-n", "2", "-t", "-1", "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("-t"), std::string::npos) << o.err;
}

TEST_F(CliTest, SimulateOfABadServerConfigNamesTheKey) {
  Write("server.json", R"({"min_clients": 2, "num_rounds": "three"})");
  Outcome o = RunEmber({"simulate", job(), "-n", "2", "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("num_rounds"), std::string::npos) << o.err;
}

TEST_F(CliTest, SiteWithTheReservedNameServerIsRefused) {
  Outcome o = RunEmber({"site", job(), "--name", "server", "--server", "127.0.0.1:1", "-w", ws()});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("bad site name"), std::string::npos) << o.err;
}

TEST_F(CliTest, SiteThatCannotReachItsServerFailsTheJobWithExitOne) {
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  Outcome o = RunEmber({"site", job(), "--name", "site-1", "--server", "127.0.0.1:1", "-w", ws()});
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("site-1"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("cannot connect to the server"), std::string::npos) << o.err;
}

}  // namespace
}  // namespace ember::cli
