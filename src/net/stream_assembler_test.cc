#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include "net/stream_assembler.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ember::net {
namespace {

using wire::Frame;
using wire::FrameType;

Frame Head(uint32_t id, uint64_t body_size, bool end = false) {
  wire::Json h = {{"kind", "fire"}, {"topic", "t"}, {"body_size", body_size}};
  return {{FrameType::kHead, static_cast<uint16_t>(end ? wire::kFlagEnd : 0), id, 0}, h.dump()};
}

Frame Data(uint32_t id, std::string bytes, bool end = false) {
  return {{FrameType::kData, static_cast<uint16_t>(end ? wire::kFlagEnd : 0), id,
           static_cast<uint32_t>(bytes.size())},
          std::move(bytes)};
}

std::string BodyOf(const IncomingMessage& m) {
  if (!m.body) return "";
  return std::string(reinterpret_cast<const char*>(m.body->contiguous()), m.body->size());
}

TEST(StreamAssembler, ReassemblesInterleavedStreams) {
  StreamAssembler a({}, nullptr);
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 4), &out).ok());
  ASSERT_TRUE(a.OnFrame(Head(3, 2), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(1, "ab"), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(3, "xy", true), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(1, "cd", true), &out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(BodyOf(out[0]), "xy");
  EXPECT_EQ(BodyOf(out[1]), "abcd");
  EXPECT_TRUE(out[1].status.ok());
  EXPECT_EQ(out[1].header["topic"], "t");
  EXPECT_EQ(a.open_streams(), 0u);
}

TEST(StreamAssembler, DeliversAMessageWithoutBodyAtItsHead) {
  StreamAssembler a({}, nullptr);
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 0, true), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].body, nullptr);
}

TEST(StreamAssembler, RejectsAnOversizedBodyWithoutAllocatingAndKeepsGoing) {
  int sinks_made = 0;
  StreamAssembler a({.max_body_size = 3, .max_open_streams = 8},
                    [&](const wire::Json&, uint64_t size) {
                      ++sinks_made;
                      return MakeBufferingSink(size);
                    });
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 1ull << 40), &out).ok());
  EXPECT_EQ(sinks_made, 0);
  ASSERT_TRUE(a.OnFrame(Head(2, 1), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(1, "abcd"), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(2, "z", true), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(BodyOf(out[0]), "z");
  ASSERT_TRUE(a.OnFrame(Frame{{FrameType::kAbort, 0, 1, 2}, "{}"}, &out).ok());
  EXPECT_EQ(a.open_streams(), 0u);
}

TEST(StreamAssembler, DeliversARejectedMessageWithItsReasonAtEnd) {
  StreamAssembler a({.max_body_size = 3, .max_open_streams = 8}, nullptr);
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 5), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(1, "abcde", true), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(out[0].body, nullptr);
  EXPECT_EQ(out[0].header["topic"], "t");
}

TEST(StreamAssembler, TreatsStreamRuleViolationsAsProtocolErrors) {
  std::vector<IncomingMessage> out;
  {
    StreamAssembler a({}, nullptr);
    EXPECT_FALSE(a.OnFrame(Data(9, "x"), &out).ok()) << "unknown stream";
  }
  {
    StreamAssembler a({}, nullptr);
    ASSERT_TRUE(a.OnFrame(Head(1, 2), &out).ok());
    EXPECT_FALSE(a.OnFrame(Data(1, "xyz"), &out).ok()) << "more than body_size";
  }
  {
    StreamAssembler a({}, nullptr);
    ASSERT_TRUE(a.OnFrame(Head(1, 2), &out).ok());
    EXPECT_FALSE(a.OnFrame(Data(1, "x", true), &out).ok()) << "END before body_size";
  }
  {
    StreamAssembler a({}, nullptr);
    ASSERT_TRUE(a.OnFrame(Head(1, 2), &out).ok());
    EXPECT_FALSE(a.OnFrame(Head(1, 2), &out).ok()) << "HEAD reopens a stream";
    EXPECT_FALSE(a.OnFrame(Head(2, 2, true), &out).ok()) << "END with a body";
    EXPECT_FALSE(a.OnFrame(Frame{{FrameType::kHead, 0, 5, 3}, "[1]"}, &out).ok()) << "not an object";
  }
  {
    StreamAssembler a({.max_body_size = 10, .max_open_streams = 1}, nullptr);
    ASSERT_TRUE(a.OnFrame(Head(1, 2), &out).ok());
    EXPECT_FALSE(a.OnFrame(Head(2, 2), &out).ok()) << "too many streams";
  }
  EXPECT_TRUE(out.empty());
}

TEST(StreamAssembler, DropsAStreamThePeerAborts) {
  StreamAssembler a({}, nullptr);
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 4), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(1, "ab"), &out).ok());
  ASSERT_TRUE(a.OnFrame(Frame{{FrameType::kAbort, 0, 1, 0}, R"({"code":"internal","message":"x"})"}, &out).ok());
  EXPECT_EQ(a.open_streams(), 0u);
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(a.OnFrame(Data(1, "cd", true), &out).ok());
}

// A sink that consumes chunks as they come: the hook later layers use to stream.
class RecordingSink final : public StreamSink {
 public:
  explicit RecordingSink(std::vector<std::string>* chunks) : chunks_(chunks) {}
  Status Write(std::span<const uint8_t> c) override {
    chunks_->emplace_back(reinterpret_cast<const char*>(c.data()), c.size());
    return Status::Ok();
  }
  Result<std::shared_ptr<wire::BodySource>> Finish() override {
    return std::shared_ptr<wire::BodySource>();
  }

 private:
  std::vector<std::string>* chunks_;
};

TEST(StreamAssembler, HandsEachChunkToACustomSinkAsItArrives) {
  std::vector<std::string> chunks;
  StreamAssembler a({}, [&](const wire::Json& head, uint64_t) -> Result<std::unique_ptr<StreamSink>> {
    EXPECT_EQ(head["topic"], "t");
    return std::unique_ptr<StreamSink>(std::make_unique<RecordingSink>(&chunks));
  });
  std::vector<IncomingMessage> out;
  ASSERT_TRUE(a.OnFrame(Head(1, 4), &out).ok());
  ASSERT_TRUE(a.OnFrame(Data(1, "ab"), &out).ok());
  EXPECT_EQ(chunks, (std::vector<std::string>{"ab"}));
  ASSERT_TRUE(a.OnFrame(Data(1, "cd", true), &out).ok());
  EXPECT_EQ(chunks, (std::vector<std::string>{"ab", "cd"}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].body, nullptr);
}

}  // namespace
}  // namespace ember::net
