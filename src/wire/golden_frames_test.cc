// Decodes the golden frames in tests/data/frames/ (NAME.bin + NAME.json, written from the
// spec by make_golden.py and also decoded by the Python suite) and checks every field the
// description lists. Invalid cases (valid: false) must be rejected from their 16 header
// bytes alone, with an error naming the reason.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
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

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string Hex(std::string_view bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// The word our error message must contain for each error class of make_golden.py.
const std::map<std::string, std::string> kErrorWords = {
    {"bad_magic", "magic"}, {"bad_version", "version"}, {"bad_type", "type"},
    {"bad_reserved", "reserved"}, {"bad_stream", "stream"}, {"too_long", "exceeds"},
};

void CheckValid(const std::string& name, const std::string& bytes, const Json& want) {
  FrameDecoder d;
  std::vector<Frame> frames;
  ASSERT_TRUE(d.Feed(Bytes(bytes), &frames).ok()) << name;
  ASSERT_TRUE(d.Finish().ok()) << name;
  const Json& wf = want["frames"];
  ASSERT_EQ(frames.size(), wf.size()) << name;
  std::string body;
  for (size_t i = 0; i < frames.size(); ++i) {
    const Frame& f = frames[i];
    SCOPED_TRACE(name + " frame " + std::to_string(i));
    EXPECT_EQ(static_cast<int>(f.header.type), wf[i]["type"].get<int>());
    EXPECT_EQ(FrameTypeName(f.header.type), wf[i]["type_name"].get<std::string>());
    EXPECT_EQ(f.header.flags, wf[i]["flags"].get<int>());
    EXPECT_EQ(f.header.end(), wf[i]["end"].get<bool>());
    EXPECT_EQ(f.header.stream_id, wf[i]["stream_id"].get<uint32_t>());
    EXPECT_EQ(f.header.length, wf[i]["length"].get<uint32_t>());
    EXPECT_EQ(Hex(f.payload), wf[i]["payload_hex"].get<std::string>());
    if (wf[i].contains("payload_json")) {
      Result<Json> j = ParseJsonObject(f.payload, FrameTypeName(f.header.type));
      ASSERT_TRUE(j.ok()) << j.status().ToString();
      EXPECT_EQ(*j, wf[i]["payload_json"]);
    }
    if (f.header.type == FrameType::kData) body += f.payload;
  }
  if (want.contains("body_hex")) {
    EXPECT_EQ(Hex(body), want["body_hex"].get<std::string>()) << name;
  }
}

void CheckInvalid(const std::string& name, const std::string& bytes, const Json& want) {
  std::string error = want.value("error", "");
  ASSERT_TRUE(kErrorWords.contains(error)) << name << ": unknown error class '" << error << "'";
  FrameDecoder d;
  std::vector<Frame> frames;
  Status s = d.Feed(Bytes(bytes).first(std::min<size_t>(bytes.size(), kFrameHeaderSize)), &frames);
  EXPECT_FALSE(s.ok()) << name << " decoded but should be rejected";
  EXPECT_NE(s.message().find(kErrorWords.at(error)), std::string::npos) << name << ": " << s.ToString();
  EXPECT_EQ(d.buffered_bytes(), 0u) << name << ": buffered payload before rejecting";
}

TEST(GoldenFrames, DecodeAsTheSpecDescribes) {
  fs::path dir = FramesDir();
  if (!fs::exists(dir)) GTEST_SKIP() << "no golden frames in " << dir;
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".bin") continue;
    std::string name = entry.path().stem().string();
    fs::path desc = entry.path();
    desc.replace_extension(".json");
    ASSERT_TRUE(fs::exists(desc)) << name << ".bin has no " << name << ".json";
    Json want = Json::parse(ReadAll(desc), nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(want.is_object()) << desc;
    ++cases;
    if (want.value("valid", false)) {
      CheckValid(name, ReadAll(entry.path()), want);
    } else {
      EXPECT_TRUE(name.starts_with("bad")) << name << ": invalid cases are named bad_*";
      CheckInvalid(name, ReadAll(entry.path()), want);
    }
  }
  if (cases == 0) GTEST_SKIP() << "no *.bin in " << dir;
}

}  // namespace
}  // namespace ember::wire
