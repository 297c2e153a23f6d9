// Replays every input under <fuzz dir>/corpus/<target>/ and regressions/<target>/ through
// the fuzz targets of one fuzz directory, in the normal (gcc) build, so `make test` keeps
// the seeds and every crash ever found passing. ember_fuzz_targets() compiles this file
// into <layer>_fuzz_replay_test with the directory's generated target table
// (kFuzzDir, kFuzzTargets). An invariant a target checks aborts this binary with a
// message naming it and the input (printed before each run).
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <set>
#include <string>

#include "base/fuzz/fuzz_harness.h"

namespace ember::fuzz {

// Defined in the generated fuzz_target_table.cc of the fuzz directory.
extern const char* const kFuzzDir;  // relative to the source tree, e.g. "src/wire/fuzz"
extern const std::vector<FuzzTarget> kFuzzTargets;

// Names a target in test output.
inline void PrintTo(const FuzzTarget& target, std::ostream* os) { *os << target.name; }

namespace {

namespace fs = std::filesystem;

fs::path FuzzDir() {
  const char* src = std::getenv("EMBER_SOURCE_DIR");
  return fs::path(src ? src : EMBER_SOURCE_DIR_DEFAULT) / kFuzzDir;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs `target` over every file of <kind>/<name>/; returns how many.
int Replay(const std::string& kind, const FuzzTarget& target) {
  fs::path dir = FuzzDir() / kind / target.name;
  if (!fs::is_directory(dir)) return 0;
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file() || entry.path().filename().string().starts_with(".")) continue;
    std::string bytes = ReadAll(entry.path());
    std::fprintf(stderr, "replaying %s\n", entry.path().c_str());
    target.function({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    ++n;
  }
  return n;
}

class FuzzReplay : public testing::TestWithParam<FuzzTarget> {};

TEST_P(FuzzReplay, PassesItsCorpusAndRegressions) {
  int seeds = Replay("corpus", GetParam());
  Replay("regressions", GetParam());
  EXPECT_GT(seeds, 0) << "no seed corpus for " << GetParam().name << " under " << FuzzDir();
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay, testing::ValuesIn(kFuzzTargets),
                         [](const testing::TestParamInfo<FuzzTarget>& info) { return info.param.name; });

// A corpus directory without a target would silently stop being replayed and fuzzed.
// Parameterized by the fuzz directory so each replay binary's test has its own name.
class FuzzDirectory : public testing::TestWithParam<const char*> {};

TEST_P(FuzzDirectory, HasATargetForEveryCorpusDirectory) {
  std::set<std::string> names;
  for (const FuzzTarget& t : kFuzzTargets) names.insert(t.name);
  for (const char* kind : {"corpus", "regressions", "findings"}) {
    if (!fs::is_directory(FuzzDir() / kind)) continue;
    for (const auto& entry : fs::directory_iterator(FuzzDir() / kind)) {
      if (!entry.is_directory()) continue;
      EXPECT_TRUE(names.contains(entry.path().filename().string()))
          << entry.path() << " names no target of " << kFuzzDir << "/CMakeLists.txt";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dir, FuzzDirectory, testing::Values(kFuzzDir),
                         [](const testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

}  // namespace
}  // namespace ember::fuzz
