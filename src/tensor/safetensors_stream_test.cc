#include "tensor/safetensors_stream.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "tensor/safetensors.h"

namespace ember::tensor {
namespace {

// Builds an image holding tensors of several dtypes, a scalar and empty tensors.
std::vector<uint8_t> SampleImage() {
  std::vector<TensorInfo> infos = {{"empty0", DType::kF32, {0}},   {"w", DType::kF32, {3, 5}},
                                   {"h", DType::kF16, {7}},        {"mid", DType::kI64, {2, 0}},
                                   {"s", DType::kF64, {}},         {"b", DType::kBool, {3}},
                                   {"last_empty", DType::kU8, {0}}};
  std::string header = EncodeSafetensorsHeader(infos, {{"k", "v"}});
  std::vector<uint8_t> image(header.begin(), header.end());
  uint64_t data = 0;
  for (const TensorInfo& t : infos) data += t.nbytes();
  for (uint64_t i = 0; i < data; ++i) image.push_back(uint8_t(i * 31 + 7));
  return image;
}

// Reassembles each tensor from the pieces, checking the delivery contract.
struct Collector {
  std::map<std::string, std::vector<uint8_t>> tensors;
  std::map<std::string, int> starts;
  std::vector<std::string> order;
  Status OnData(const TensorInfo& t, uint64_t offset, std::span<const uint8_t> bytes) {
    std::vector<uint8_t>& got = tensors[t.name];
    if (offset == 0) {
      ++starts[t.name];
      order.push_back(t.name);
    }
    if (offset != got.size()) return Status::Internal("piece out of order for " + t.name);
    got.insert(got.end(), bytes.begin(), bytes.end());
    return Status::Ok();
  }
};

void ExpectMatchesWholeParse(const std::vector<uint8_t>& image, const Collector& c,
                             const SafetensorsStreamParser& parser) {
  Result<SafetensorsView> view = SafetensorsView::Parse(image);
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(parser.done());
  EXPECT_EQ(parser.header().metadata, view->metadata());
  ASSERT_EQ(c.order.size(), view->tensors().size());
  for (size_t i = 0; i < c.order.size(); ++i) {
    const TensorInfo& t = view->tensors()[i];
    EXPECT_EQ(c.order[i], t.name);
    EXPECT_EQ(c.starts.at(t.name), 1) << t.name;
    TensorView whole = view->View(t);
    EXPECT_EQ(c.tensors.at(t.name), std::vector<uint8_t>(whole.bytes.begin(), whole.bytes.end()));
  }
}

SafetensorsStreamParser MakeParser(uint64_t size, Collector* c) {
  SafetensorsStreamParser parser(size);
  parser.on_data = [c](const TensorInfo& t, uint64_t offset, std::span<const uint8_t> bytes) {
    return c->OnData(t, offset, bytes);
  };
  return parser;
}

TEST(SafetensorsStreamParser, FedOneByteAtATimeEqualsTheWholeParse) {
  std::vector<uint8_t> image = SampleImage();
  Collector c;
  SafetensorsStreamParser parser = MakeParser(image.size(), &c);
  for (size_t i = 0; i < image.size(); ++i) {
    ASSERT_TRUE(parser.Feed(std::span(image).subspan(i, 1)).ok()) << "byte " << i;
  }
  EXPECT_TRUE(parser.Finish().ok());
  ExpectMatchesWholeParse(image, c, parser);
}

TEST(SafetensorsStreamParser, FedRandomChunksEqualsTheWholeParse) {
  std::vector<uint8_t> image = SampleImage();
  std::mt19937 rng(42);
  for (int trial = 0; trial < 50; ++trial) {
    Collector c;
    SafetensorsStreamParser parser = MakeParser(image.size(), &c);
    for (size_t pos = 0; pos < image.size();) {
      size_t n = std::min<size_t>(image.size() - pos, rng() % 40);
      ASSERT_TRUE(parser.Feed(std::span(image).subspan(pos, n)).ok());
      pos += n;
    }
    ExpectMatchesWholeParse(image, c, parser);
  }
}

TEST(SafetensorsStreamParser, WholeImageInOneChunkWorks) {
  std::vector<uint8_t> image = SampleImage();
  Collector c;
  SafetensorsStreamParser parser = MakeParser(image.size(), &c);
  ASSERT_TRUE(parser.Feed(image).ok());
  ExpectMatchesWholeParse(image, c, parser);
}

TEST(SafetensorsStreamParser, EmptyModelIsDoneAfterSixteenBytes) {
  std::string image = EncodeSafetensorsHeader({}, {});
  SafetensorsStreamParser parser(image.size());
  ASSERT_TRUE(parser.Feed({reinterpret_cast<const uint8_t*>(image.data()), image.size()}).ok());
  EXPECT_TRUE(parser.done());
  EXPECT_TRUE(parser.header().tensors.empty());
}

TEST(SafetensorsStreamParser, SkipsGapsBetweenTensors) {
  std::string json = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                     R"("b":{"dtype":"U8","shape":[2],"data_offsets":[5,7]}})";
  std::vector<uint8_t> image(8, 0);
  image[0] = uint8_t(json.size());
  image.insert(image.end(), json.begin(), json.end());
  for (uint8_t i = 0; i < 7; ++i) image.push_back(i);
  Collector c;
  SafetensorsStreamParser parser = MakeParser(image.size(), &c);
  ASSERT_TRUE(parser.Feed(image).ok());
  EXPECT_EQ(c.tensors["a"], (std::vector<uint8_t>{0, 1}));
  EXPECT_EQ(c.tensors["b"], (std::vector<uint8_t>{5, 6}));
}

TEST(SafetensorsStreamParser, RejectsMoreBytesThanAnnounced) {
  std::vector<uint8_t> image = SampleImage();
  SafetensorsStreamParser parser(image.size() - 1);
  Status s = parser.Feed(image);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_FALSE(parser.done());
}

TEST(SafetensorsStreamParser, FinishReportsFewerBytesThanAnnounced) {
  std::vector<uint8_t> image = SampleImage();
  SafetensorsStreamParser parser(image.size());
  ASSERT_TRUE(parser.Feed(std::span(image).first(image.size() - 3)).ok());
  EXPECT_FALSE(parser.done());
  Status s = parser.Finish();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "stream ended after " + std::to_string(image.size() - 3) + " of " +
                             std::to_string(image.size()) + " bytes");
}

TEST(SafetensorsStreamParser, RejectsAHeaderLargerThanTheStreamAfterEightBytes) {
  std::vector<uint8_t> first8 = {0, 0, 0, 0x10, 0, 0, 0, 0};  // 256 MiB
  SafetensorsStreamParser parser(1000);
  Status s = parser.Feed(first8);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(parser.Feed(first8).message(), s.message()) << "errors are sticky";
}

TEST(SafetensorsStreamParser, RejectsABadHeaderAndStaysFailed) {
  std::string json = R"({"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})";
  std::vector<uint8_t> image(8, 0);
  image[0] = uint8_t(json.size());
  image.insert(image.end(), json.begin(), json.end());
  image.push_back(0);
  SafetensorsStreamParser parser(image.size());
  Status s = parser.Feed(image);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(parser.Feed({}).ok());
  EXPECT_FALSE(parser.Finish().ok());
}

TEST(SafetensorsStreamParser, ReturnsTheCallbacksError) {
  std::vector<uint8_t> image = SampleImage();
  SafetensorsStreamParser parser(image.size());
  parser.on_data = [](const TensorInfo& t, uint64_t, std::span<const uint8_t>) {
    return t.name == "h" ? Status::Aborted("stop at h") : Status::Ok();
  };
  Status s = parser.Feed(image);
  EXPECT_EQ(s.code(), StatusCode::kAborted);
}

}  // namespace
}  // namespace ember::tensor
