#include "fl/job_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace ember::fl {
namespace {

namespace fs = std::filesystem;

class JobConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ember_job_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "custom");
    fs::create_directories(dir_ / "model");
    Write("meta.json", R"({"format": "ember-job-1", "name": "j", "min_clients": 2})");
    Write("server.json", R"({"min_clients": 2, "num_rounds": 3, "exclude_vars": "bn\\."})");
    Write("client.json", R"({"train_script": "client.py", "train_args": "--lr 0.1",
                              "per_site_config": {"site-2": {"train_args": "--lr 0.5"}}})");
    Write("custom/client.py", "print('hi')\n");
    Write("model/initial.safetensors", "x");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& rel, const std::string& text) { std::ofstream(dir_ / rel) << text; }
  fs::path dir_;
};

TEST_F(JobConfigTest, LoadsServerAndPerSiteClientConfig) {
  auto job = LoadJobConfig(dir_.string());
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->name, "j");
  EXPECT_EQ(job->server.num_rounds, 3);
  EXPECT_EQ(job->server.exclude_vars, "bn\\.");
  EXPECT_EQ(job->ClientConfigFor("site-1")->train_args, "--lr 0.1");
  EXPECT_EQ(job->ClientConfigFor("site-2")->train_args, "--lr 0.5");
  EXPECT_EQ(job->ClientConfigFor("site-1")->command, "python3 -u");
}

TEST_F(JobConfigTest, NamesTheBadKey) {
  Write("server.json", R"({"min_clients": "two"})");
  auto job = LoadJobConfig(dir_.string());
  ASSERT_FALSE(job.ok());
  EXPECT_NE(job.status().message().find("min_clients"), std::string::npos) << job.status().message();
}

TEST_F(JobConfigTest, RejectsABadRegexAndAMissingScript) {
  Write("server.json", R"({"min_clients": 1, "exclude_vars": "("})");
  EXPECT_EQ(LoadJobConfig(dir_.string()).status().code(), StatusCode::kInvalidArgument);
  Write("server.json", R"({"min_clients": 1})");
  fs::remove(dir_ / "custom/client.py");
  auto job = LoadJobConfig(dir_.string());
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->ClientConfigFor("site-1").status().code(), StatusCode::kNotFound);
}

TEST_F(JobConfigTest, AccumulatesInTheModelsOwnTypeUnlessF64OrF32IsChosen) {
  auto job = LoadJobConfig(dir_.string());
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->server.aggregation_accumulate, "model");
  Write("server.json", R"({"min_clients": 2, "aggregation_accumulate": "F64"})");
  job = LoadJobConfig(dir_.string());
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->server.aggregation_accumulate, "F64");
}

TEST_F(JobConfigTest, RejectsAnUnknownAccumulatorNamingTheFileAndTheChoices) {
  Write("server.json", R"({"min_clients": 2, "aggregation_accumulate": "f64"})");
  auto job = LoadJobConfig(dir_.string());
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(job.status().message().find("server.json"), std::string::npos) << job.status().message();
  EXPECT_NE(job.status().message().find("model, F32 or F64, got 'f64'"), std::string::npos)
      << job.status().message();
  Write("server.json", R"({"min_clients": 2, "aggregation_accumulate": 64})");
  EXPECT_EQ(LoadJobConfig(dir_.string()).status().code(), StatusCode::kInvalidArgument);
}

TEST(JobConfig, MissingFolderIsNotFound) {
  EXPECT_EQ(LoadJobConfig("/nonexistent/job").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace ember::fl
