// Decodes the golden frames in tests/data/frames/ (written by make_golden.py and also
// decoded by the Python suite). A file named bad_*.bin or invalid_*.bin must be rejected;
// every other *.bin must decode into whole frames with valid JSON control payloads.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "wire/frame_decoder.h"
#include "wire/message_header.h"

namespace ember::wire {
namespace {

namespace fs = std::filesystem;

fs::path FramesDir() {
  const char* src = std::getenv("EMBER_SOURCE_DIR");
  return fs::path(src ? src : EMBER_SOURCE_DIR_DEFAULT) / "tests" / "data" / "frames";
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Status DecodeFile(const std::string& bytes, std::vector<Frame>* frames) {
  FrameDecoder d;
  EMBER_RETURN_IF_ERROR(d.Feed({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                               frames));
  EMBER_RETURN_IF_ERROR(d.Finish());
  for (const Frame& f : *frames) {
    FrameType t = f.header.type;
    if (t == FrameType::kHello || t == FrameType::kHead || t == FrameType::kAbort ||
        t == FrameType::kGoaway) {
      EMBER_RETURN_IF_ERROR(ParseJsonObject(f.payload, FrameTypeName(t)).status());
    }
  }
  return Status::Ok();
}

TEST(GoldenFrames, DecodeLikeThePythonImplementation) {
  fs::path dir = FramesDir();
  if (!fs::exists(dir)) GTEST_SKIP() << "no golden frames in " << dir;
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".bin") continue;
    ++files;
    std::string name = entry.path().filename().string();
    bool must_fail = name.starts_with("bad") || name.starts_with("invalid");
    std::vector<Frame> frames;
    Status s = DecodeFile(ReadAll(entry.path()), &frames);
    if (must_fail) {
      EXPECT_FALSE(s.ok()) << name << " decoded but should be rejected";
    } else {
      EXPECT_TRUE(s.ok()) << name << ": " << s.ToString();
      EXPECT_FALSE(frames.empty()) << name;
    }
  }
  if (files == 0) GTEST_SKIP() << "no *.bin in " << dir;
}

}  // namespace
}  // namespace ember::wire
