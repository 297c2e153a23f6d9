#include "cell/message.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace ember::cell {
namespace {

TEST(Message, MakeSetsTopicHeadersAndBody) {
  Message m = Message::Make("fl.get_task", {{"site", "site-1"}}, BytesBody("abc"));
  EXPECT_EQ(m.topic(), "fl.get_task");
  EXPECT_EQ(m.h()["site"], "site-1");
  EXPECT_EQ(m.body_size(), 3u);
  EXPECT_TRUE(m.status().ok());
}

TEST(Message, ReadsAnEmptyApplicationHeaderWhenMissing) {
  const Message m;
  EXPECT_TRUE(m.h().is_object());
  EXPECT_TRUE(m.h().empty());
}

TEST(Message, MapsTheReplyStatusToAStatusCode) {
  Message m;
  m.header = {{"status", "timeout"}, {"error", "slow"}};
  EXPECT_EQ(m.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(m.status().message(), "slow");
  m.header = {{"status", "unreachable"}};
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
  m.header = {{"status", "ok"}};
  EXPECT_TRUE(m.status().ok());
}

TEST(FileBody, MapsTheFileAndReadsAtOffsets) {
  auto path = std::filesystem::temp_directory_path() / "ember_file_body_test.bin";
  {
    std::ofstream out(path, std::ios::binary);
    out << "0123456789";
  }
  auto body = FileBody(path.string());
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ((*body)->size(), 10u);
  uint8_t buf[3];
  ASSERT_EQ(*(*body)->ReadAt(7, buf), 3u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), 3), "789");
  EXPECT_EQ((*body)->contiguous()[0], '0');
  std::filesystem::remove(path);
}

TEST(FileBody, ReportsAMissingFileAsNotFound) {
  EXPECT_EQ(FileBody("/nonexistent/ember/x.bin").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace ember::cell
