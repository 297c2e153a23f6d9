#include "tensor/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

namespace ember::tensor {
namespace {

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<uint8_t> LittleEndian64(uint64_t v) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(v >> (8 * i)));
  return out;
}

// A safetensors image with header text `json` (unpadded) and `data_size` data bytes.
std::vector<uint8_t> Image(std::string_view json, size_t data_size) {
  std::vector<uint8_t> out = LittleEndian64(json.size());
  out.insert(out.end(), json.begin(), json.end());
  for (size_t i = 0; i < data_size; ++i) out.push_back(uint8_t(i));
  return out;
}

Status ParseError(std::string_view json, size_t data_size) {
  std::vector<uint8_t> image = Image(json, data_size);
  return SafetensorsView::Parse(image).status();
}

class SafetensorsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/ember_tensor_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  void WriteRaw(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                bytes.size());
  }
  std::string dir_;
};

// One tensor per dtype (shape [2, 3], distinct bytes), a scalar and an empty tensor.
struct Model {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<NamedTensor> tensors;
  Model() {
    storage.reserve(16);
    for (DType dtype : kAllDTypes) Add(std::string(DTypeName(dtype)) + ".w", dtype, {2, 3});
    Add("scalar", DType::kF64, {});
    Add("empty", DType::kF32, {0, 4});
  }
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape) {
    size_t n = *CountBytes(dtype, shape);
    std::vector<uint8_t>& bytes = storage.emplace_back(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = uint8_t(dtype == DType::kBool ? i % 2 : 7 * i + n);
    tensors.push_back({name, TensorView{dtype, std::move(shape), bytes}});
  }
};

void ExpectSameTensors(const std::vector<NamedTensor>& expected, const SafetensorsView& view) {
  ASSERT_EQ(view.tensors().size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const NamedTensor& want = expected[i];
    EXPECT_EQ(view.tensors()[i].name, want.name) << "data order follows the given order";
    Result<TensorView> got = view.Find(want.name);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->dtype, want.view.dtype) << want.name;
    EXPECT_EQ(got->shape, want.view.shape) << want.name;
    EXPECT_TRUE(std::equal(got->bytes.begin(), got->bytes.end(), want.view.bytes.begin(),
                           want.view.bytes.end()))
        << want.name;
  }
}

TEST(SafetensorsHeader, EmptyModelEncodesToTheSixteenByteImage) {
  std::string header = EncodeSafetensorsHeader({}, {});
  EXPECT_EQ(Bytes(header), (std::vector<uint8_t>{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ',
                                                 ' ', ' ', ' '}));
  EXPECT_TRUE(SafetensorsView::Parse(Bytes(header)).ok());
}

TEST(SafetensorsHeader, EncodesThePythonSafetensorsLayout) {
  std::string json = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  std::vector<uint8_t> expected = LittleEndian64(padded.size());
  expected.insert(expected.end(), padded.begin(), padded.end());
  TensorInfo a{"a", DType::kF32, {2}};
  EXPECT_EQ(Bytes(EncodeSafetensorsHeader({a}, {})), expected);
}

TEST(SafetensorsHeader, PutsMetadataFirstAndAssignsContiguousOffsetsInOrder) {
  TensorInfo b{"b", DType::kI16, {3}}, a{"a", DType::kU8, {}};
  std::string header = EncodeSafetensorsHeader({b, a}, {{"round", "3"}});
  std::string start =
      R"({"__metadata__":{"round":"3"},"b":{"dtype":"I16","shape":[3],"data_offsets":[0,6]},)";
  EXPECT_EQ(header.substr(8, start.size()), start);
  EXPECT_NE(header.find(R"("a":{"dtype":"U8","shape":[],"data_offsets":[6,7]})"), std::string::npos);
  EXPECT_EQ(header.size() % 8, 0u);
}

TEST(SafetensorsView, ParsesAHandWrittenFile) {
  std::vector<uint8_t> image =
      Image(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 0);
  float values[2] = {1.0f, -2.5f};
  auto* raw = reinterpret_cast<const uint8_t*>(values);
  image.insert(image.end(), raw, raw + 8);
  Result<SafetensorsView> view = SafetensorsView::Parse(image);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->metadata().at("format"), "pt");
  Result<TensorView> a = view->Find("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, std::vector<int64_t>{2});
  ASSERT_EQ(a->bytes.size(), 8u);
  EXPECT_EQ(std::memcmp(a->bytes.data(), values, 8), 0);
  EXPECT_EQ(view->Find("b").status().code(), StatusCode::kNotFound);
}

TEST(SafetensorsView, AcceptsZeroDimAndEmptyTensors) {
  Result<SafetensorsView> view = SafetensorsView::Parse(Image(
      R"({"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
      R"("e":{"dtype":"I32","shape":[3,0],"data_offsets":[8,8]}})", 8));
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->Find("s")->bytes.size(), 8u);
  EXPECT_EQ(view->Find("e")->bytes.size(), 0u);
  EXPECT_EQ(view->header().Find("s")->num_elements(), 1u);
}

TEST(SafetensorsView, ReturnsTensorsInDataOffsetOrder) {
  Result<SafetensorsView> view = SafetensorsView::Parse(Image(
      R"({"z":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
      R"("y":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 4));
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->tensors()[0].name, "y");
  EXPECT_EQ(view->tensors()[1].name, "z");
}

TEST(SafetensorsView, RejectsOffsetsBeyondTheDataSectionNamingTheTensor) {
  Status s = ParseError(R"({"w":{"dtype":"U8","shape":[4096],"data_offsets":[0,4096]}})", 100);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "tensor 'w': data_offsets [0, 4096] exceed data section of 100 bytes");
}

TEST(SafetensorsView, RejectsUnknownDType) {
  Status s = ParseError(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensor 'w': unknown dtype 'F8_E4M3'"), std::string::npos) << s.message();
}

TEST(SafetensorsView, RejectsOverlappingOffsets) {
  Status s = ParseError(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
}

TEST(SafetensorsView, RejectsSizesThatDoNotMatchTheShape) {
  Status s = ParseError(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "tensor 'w': data_offsets [0, 8] span 8 bytes but F32 [3] needs 12");
}

TEST(SafetensorsView, RejectsMalformedHeaders) {
  const char* kBad[] = {
      R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})",
      R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}})",
      R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})",
      R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})",
      R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}})",
      R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})",
      R"({"w":{"dtype":"U8","shape":[1]}})",
      R"({"w":[1,2]})",
      R"({"__metadata__":{"k":1}})",
      R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
      R"([1,2,3])",
      R"({"w":)",
      "",
  };
  for (const char* json : kBad) {
    Status s = ParseError(json, 2);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << json << " -> " << s.ToString();
  }
}

TEST(SafetensorsView, RejectsEveryTruncationOfAValidImage) {
  std::vector<uint8_t> image = Bytes(EncodeSafetensorsHeader({TensorInfo{"a", DType::kF32, {4}}}, {}));
  image.resize(image.size() + 16, 0x3F);
  ASSERT_TRUE(SafetensorsView::Parse(image).ok());
  for (size_t n = 0; n < image.size(); ++n) {
    Status s = SafetensorsView::Parse(std::span(image).first(n)).status();
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << "truncated to " << n;
  }
}

TEST(SafetensorsView, SurvivesRandomlyCorruptedImagesAndDeepNesting) {
  Model model;
  std::vector<TensorInfo> infos;
  for (const NamedTensor& t : model.tensors) infos.push_back({t.name, t.view.dtype, t.view.shape});
  std::string header = EncodeSafetensorsHeader(infos, {{"k", "v"}});
  std::vector<uint8_t> image(header.begin(), header.end());
  image.resize(image.size() + 200);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 1000; ++trial) {
    std::vector<uint8_t> bad = image;
    for (int k = 0; k < 3; ++k) bad[rng() % bad.size()] = uint8_t(rng());
    (void)SafetensorsView::Parse(bad);  // any Status is fine; no crash, no huge allocation
  }
  std::string deep(1 << 18, '[');
  EXPECT_EQ(ParseError(deep, 0).code(), StatusCode::kDataLoss);
}

TEST(SafetensorsHeader, RejectsHeaderSizeOverTheLimitBeforeReadingIt) {
  std::vector<uint8_t> first8 = LittleEndian64(200 << 20);
  Result<uint64_t> size = ParseSafetensorsHeaderSize(first8, uint64_t{1} << 40);
  EXPECT_EQ(size.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(size.status().message().find("over the limit"), std::string::npos);
}

TEST_F(SafetensorsFileTest, RoundTripsEveryDTypeScalarsEmptyTensorsAndMetadata) {
  Model model;
  std::map<std::string, std::string> metadata = {{"round", "3"}, {"job", "mnist"}};
  ASSERT_TRUE(WriteSafetensors(Path("m.safetensors"), model.tensors, metadata).ok());
  Result<SafetensorsFile> file = SafetensorsFile::Open(Path("m.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->path(), Path("m.safetensors"));
  EXPECT_EQ(file->metadata(), metadata);
  EXPECT_EQ(file->bytes().size(), std::filesystem::file_size(Path("m.safetensors")));
  ExpectSameTensors(model.tensors, file->view());
  EXPECT_FALSE(std::filesystem::exists(Path("m.safetensors.tmp")));
}

TEST_F(SafetensorsFileTest, MovedFileKeepsItsMappingValid) {
  Model model;
  ASSERT_TRUE(WriteSafetensors(Path("m.safetensors"), model.tensors, {}).ok());
  Result<SafetensorsFile> opened = SafetensorsFile::Open(Path("m.safetensors"));
  ASSERT_TRUE(opened.ok());
  SafetensorsFile file = std::move(opened).value();
  SafetensorsFile moved = std::move(file);
  ExpectSameTensors(model.tensors, moved.view());
}

TEST_F(SafetensorsFileTest, MissingFileIsNotFound) {
  EXPECT_EQ(SafetensorsFile::Open(Path("nope")).status().code(), StatusCode::kNotFound);
}

TEST_F(SafetensorsFileTest, EmptyFileIsDataLossNamingThePath) {
  WriteRaw(Path("empty.safetensors"), {});
  Status s = SafetensorsFile::Open(Path("empty.safetensors")).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message().rfind(Path("empty.safetensors") + ": file holds 0 bytes", 0), 0u)
      << s.message();
}

TEST_F(SafetensorsFileTest, HeaderClaimingMoreThanTheFileHoldsIsDataLoss) {
  std::vector<uint8_t> bytes = LittleEndian64(900);
  bytes.push_back('{');
  bytes.push_back('}');
  WriteRaw(Path("short.safetensors"), bytes);
  Status s = SafetensorsFile::Open(Path("short.safetensors")).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), Path("short.safetensors") + ": header claims 900 bytes but file holds 10 bytes");
}

TEST_F(SafetensorsFileTest, FailedWriteLeavesThePreviousFileIntact) {
  Model model;
  std::string path = Path("m.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, model.tensors, {{"v", "1"}}).ok());
  std::vector<NamedTensor> dup = {model.tensors[0], model.tensors[0]};
  Status s = WriteSafetensors(path, dup, {{"v", "2"}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("given twice"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  Result<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->metadata().at("v"), "1");
  // A reader's mapping survives the file being replaced.
  ASSERT_TRUE(WriteSafetensors(path, {model.tensors[1]}, {{"v", "3"}}).ok());
  ExpectSameTensors(model.tensors, file->view());
  EXPECT_EQ(SafetensorsFile::Open(path)->tensors().size(), 1u);
}

TEST_F(SafetensorsFileTest, RejectsInvalidTensorsBeforeWriting) {
  std::vector<uint8_t> three(3);
  NamedTensor bad_size{"w", TensorView{DType::kF32, {1}, three}};
  EXPECT_EQ(WriteSafetensors(Path("x"), {bad_size}, {}).code(), StatusCode::kInvalidArgument);
  NamedTensor reserved{"__metadata__", TensorView{DType::kU8, {3}, three}};
  EXPECT_EQ(WriteSafetensors(Path("x"), {reserved}, {}).code(), StatusCode::kInvalidArgument);
  NamedTensor bad_utf8{"\xff", TensorView{DType::kU8, {3}, three}};
  EXPECT_EQ(WriteSafetensors(Path("x"), {bad_utf8}, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(Path("x")));
}

TEST(WriteSafetensorsTo, StreamsThroughAPipe) {
  Model model;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_TRUE(WriteSafetensorsTo(fds[1], model.tensors, {{"k", "v"}}).ok());
  close(fds[1]);
  std::vector<uint8_t> received(1 << 16);
  ssize_t n = read(fds[0], received.data(), received.size());
  close(fds[0]);
  ASSERT_GT(n, 0);
  received.resize(size_t(n));
  Result<SafetensorsView> view = SafetensorsView::Parse(received);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  ExpectSameTensors(model.tensors, *view);
  EXPECT_EQ(view->header().data_offset % 8, 0u);
}

}  // namespace
}  // namespace ember::tensor
