// Replays every input under src/wire/fuzz/corpus/<target>/ and regressions/<target>/
// through the fuzz targets, in the normal (gcc) build, so `make test` keeps the seeds and
// every crash ever found passing. An invariant the target checks aborts this binary with
// a message naming it and the input (printed before each run).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "wire/fuzz/fuzz_targets.h"

namespace ember::fuzz {
namespace {

namespace fs = std::filesystem;

fs::path FuzzDir() {
  const char* src = std::getenv("EMBER_SOURCE_DIR");
  return fs::path(src ? src : EMBER_SOURCE_DIR_DEFAULT) / "src" / "wire" / "fuzz";
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs `target` over every file of <kind>/<name>/; returns how many.
int Replay(const std::string& kind, const std::string& name,
           const std::function<void(std::span<const uint8_t>)>& target) {
  fs::path dir = FuzzDir() / kind / name;
  if (!fs::is_directory(dir)) return 0;
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file() || entry.path().filename().string().starts_with(".")) continue;
    std::string bytes = ReadAll(entry.path());
    std::fprintf(stderr, "replaying %s\n", entry.path().c_str());
    target({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    ++n;
  }
  return n;
}

void ReplayBoth(const std::string& name, void (*target)(std::span<const uint8_t>)) {
  int seeds = Replay("corpus", name, target);
  Replay("regressions", name, target);
  EXPECT_GT(seeds, 0) << "no seed corpus for " << name << " under " << FuzzDir();
}

TEST(FuzzReplay, FrameDecoderPassesItsCorpus) { ReplayBoth("frame_decoder", FuzzFrameDecoder); }
TEST(FuzzReplay, MessageHeaderPassesItsCorpus) { ReplayBoth("message_header", FuzzMessageHeader); }
TEST(FuzzReplay, StreamAssemblerPassesItsCorpus) { ReplayBoth("stream_assembler", FuzzStreamAssembler); }
TEST(FuzzReplay, ConnectionPassesItsCorpus) { ReplayBoth("connection", FuzzConnection); }

TEST(FuzzReplay, SplitPlanCoversTheStreamExactly) {
  const uint8_t data[] = {0x23, 0, 5, 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g'};
  SplitPlan plan = PlanSplits(data);
  EXPECT_EQ(plan.options, 2);
  EXPECT_EQ(plan.stream.size(), 7u);
  EXPECT_EQ(plan.chunks, (std::vector<size_t>{0, 5, 0, 0, 2}));
  const uint8_t zeros[] = {0x02, 0, 0, 'x', 'y'};
  EXPECT_EQ(PlanSplits(zeros).chunks, (std::vector<size_t>{0, 0, 2}));
  const uint8_t whole[] = {0x00, 'x'};
  EXPECT_EQ(PlanSplits(whole).chunks, (std::vector<size_t>{1}));
}

}  // namespace
}  // namespace ember::fuzz
