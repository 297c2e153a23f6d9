#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "wire/frame.h"
#include "wire/frame_decoder.h"

namespace ember::wire {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string Header(FrameType type, uint16_t flags, uint32_t stream, uint32_t length) {
  std::string s(kFrameHeaderSize, '\0');
  EncodeFrameHeader({.type = type, .flags = flags, .stream_id = stream, .length = length},
                    {reinterpret_cast<uint8_t*>(s.data()), s.size()});
  return s;
}

Status DecodeHeaderOf(std::string bytes) { return DecodeFrameHeader(Bytes(bytes)).status(); }

TEST(FrameCodec, WritesTheDocumentedByteLayout) {
  std::string f = EncodeFrame(FrameType::kHead, kFlagEnd, 0x01020304, "{}");
  const std::string expected("\x45\x4d\x01\x02\x01\x00\x00\x00\x04\x03\x02\x01\x02\x00\x00\x00{}", 18);
  EXPECT_EQ(f, expected);
}

TEST(FrameCodec, RoundTripsEveryFrameType) {
  for (int t = 1; t <= 8; ++t) {
    auto type = static_cast<FrameType>(t);
    bool conn_level = type == FrameType::kHello || type == FrameType::kPing ||
                      type == FrameType::kPong || type == FrameType::kGoaway;
    uint32_t stream = conn_level ? 0 : 77;
    uint32_t length = type == FrameType::kCredit ? 8 : std::min<uint32_t>(MaxPayload(type), 5);
    Result<FrameHeader> h = DecodeFrameHeader(Bytes(Header(type, kFlagEnd, stream, length)));
    ASSERT_TRUE(h.ok()) << FrameTypeName(type) << ": " << h.status().ToString();
    EXPECT_EQ(h->type, type);
    EXPECT_TRUE(h->end());
    EXPECT_EQ(h->stream_id, stream);
    EXPECT_EQ(h->length, length);
  }
}

TEST(FrameCodec, RejectsBadMagic) {
  std::string h = Header(FrameType::kPing, 0, 0, 0);
  h[0] = 'X';
  Status s = DecodeHeaderOf(h);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("magic"), std::string::npos) << s.ToString();
}

TEST(FrameCodec, RejectsUnknownVersionTypeFlagsAndReserved) {
  std::string h = Header(FrameType::kPing, 0, 0, 0);
  std::string v = h, t = h, f = h, r = h;
  v[2] = 2;
  t[3] = 9;
  f[4] = 2;
  r[7] = 1;
  EXPECT_NE(DecodeHeaderOf(v).message().find("version"), std::string::npos);
  EXPECT_NE(DecodeHeaderOf(t).message().find("type"), std::string::npos);
  EXPECT_NE(DecodeHeaderOf(f).message().find("flags"), std::string::npos);
  EXPECT_NE(DecodeHeaderOf(r).message().find("reserved"), std::string::npos);
}

TEST(FrameCodec, RejectsStreamIdsThatBreakTheRules) {
  EXPECT_FALSE(DecodeHeaderOf(Header(FrameType::kHello, 0, 3, 2)).ok());
  EXPECT_FALSE(DecodeHeaderOf(Header(FrameType::kData, 0, 0, 2)).ok());
}

TEST(FrameCodec, RejectsCreditOnStreamZeroOrOfTheWrongLength) {
  EXPECT_TRUE(DecodeHeaderOf(Header(FrameType::kCredit, 0, 7, 8)).ok());
  EXPECT_NE(DecodeHeaderOf(Header(FrameType::kCredit, 0, 0, 8)).message().find("stream 0"), std::string::npos);
  EXPECT_FALSE(DecodeHeaderOf(Header(FrameType::kCredit, 0, 7, 4)).ok());
}

TEST(FrameCodec, RoundTripsACreditPayload) {
  std::string p = EncodeCredit(0x0102030405060708ull);
  EXPECT_EQ(p, std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  EXPECT_EQ(*DecodeCredit(p), 0x0102030405060708ull);
  EXPECT_FALSE(DecodeCredit("1234").ok());
}

TEST(FrameCodec, RejectsOversizedLengths) {
  EXPECT_TRUE(DecodeHeaderOf(Header(FrameType::kHead, 0, 1, kMaxHeaderBytes)).ok());
  EXPECT_FALSE(DecodeHeaderOf(Header(FrameType::kHead, 0, 1, kMaxHeaderBytes + 1)).ok());
  EXPECT_FALSE(DecodeHeaderOf(Header(FrameType::kHello, 0, 0, kMaxHeaderBytes + 1)).ok());
  EXPECT_TRUE(DecodeHeaderOf(Header(FrameType::kData, 0, 1, kMaxFramePayload)).ok());
  EXPECT_FALSE(DecodeHeaderOf(Header(FrameType::kData, 0, 1, kMaxFramePayload + 1)).ok());
  EXPECT_FALSE(DecodeHeaderOf(Header(FrameType::kPing, 0, 0, 1)).ok());
}

TEST(FrameCodec, ReportsATruncatedHeader) {
  std::string h = Header(FrameType::kPing, 0, 0, 0).substr(0, 10);
  EXPECT_EQ(DecodeHeaderOf(h).code(), StatusCode::kDataLoss);
}

std::string SampleStream() {
  return EncodeFrame(FrameType::kHello, 0, 0, R"({"name":"a","version":1})") +
         EncodeFrame(FrameType::kHead, 0, 1, R"({"kind":"fire","body_size":3})") +
         EncodeFrame(FrameType::kPing, 0, 0, "") +
         EncodeFrame(FrameType::kData, kFlagEnd, 1, "abc");
}

void ExpectSampleFrames(const std::vector<Frame>& frames) {
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(frames[0].header.type, FrameType::kHello);
  EXPECT_EQ(frames[1].payload, R"({"kind":"fire","body_size":3})");
  EXPECT_EQ(frames[2].header.type, FrameType::kPing);
  EXPECT_TRUE(frames[2].payload.empty());
  EXPECT_EQ(frames[3].payload, "abc");
  EXPECT_TRUE(frames[3].header.end());
  EXPECT_EQ(frames[3].header.stream_id, 1u);
}

TEST(FrameDecoder, DecodesAWholeBuffer) {
  FrameDecoder d;
  std::vector<Frame> frames;
  ASSERT_TRUE(d.Feed(Bytes(SampleStream()), &frames).ok());
  ExpectSampleFrames(frames);
  EXPECT_TRUE(d.Finish().ok());
}

TEST(FrameDecoder, DecodesTheSameFramesWhenFedOneByteAtATime) {
  std::string s = SampleStream();
  FrameDecoder d;
  std::vector<Frame> frames;
  for (size_t i = 0; i < s.size(); ++i) {
    ASSERT_TRUE(d.Feed(Bytes(s).subspan(i, 1), &frames).ok()) << "at byte " << i;
  }
  ExpectSampleFrames(frames);
  EXPECT_TRUE(d.Finish().ok());
}

TEST(FrameDecoder, RejectsAnOversizedLengthWithoutBufferingIt) {
  FrameDecoder d;
  std::vector<Frame> frames;
  std::string h = Header(FrameType::kData, 0, 1, 0xFFFFFFFF);
  Status s = d.Feed(Bytes(h), &frames);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("exceeds"), std::string::npos) << s.ToString();
  EXPECT_EQ(d.buffered_bytes(), 0u);
  EXPECT_TRUE(frames.empty());
}

TEST(FrameDecoder, StaysFailedAfterAnError) {
  FrameDecoder d;
  std::vector<Frame> frames;
  std::string bad = Header(FrameType::kPing, 0, 0, 0);
  bad[1] = 0;
  EXPECT_FALSE(d.Feed(Bytes(bad), &frames).ok());
  EXPECT_FALSE(d.Feed(Bytes(SampleStream()), &frames).ok());
  EXPECT_TRUE(frames.empty());
}

TEST(FrameDecoder, ReportsAStreamTruncatedInsideAFrame) {
  std::string s = SampleStream();
  FrameDecoder in_header, in_payload;
  std::vector<Frame> frames;
  ASSERT_TRUE(in_header.Feed(Bytes(s).first(5), &frames).ok());
  EXPECT_EQ(in_header.Finish().code(), StatusCode::kDataLoss);
  ASSERT_TRUE(in_payload.Feed(Bytes(s).first(kFrameHeaderSize + 4), &frames).ok());
  Status st = in_payload.Finish();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("HELLO"), std::string::npos) << st.ToString();
}

// Records what a Visitor sees: "F<type>:<payload>" for whole frames, "B<id>" / "P<bytes>"
// / "E<id>" for a DATA frame's begin, pieces and end.
class RecordingVisitor final : public FrameDecoder::Visitor {
 public:
  Status OnFrame(Frame frame) override {
    log.push_back("F" + std::string(FrameTypeName(frame.header.type)) + ":" + frame.payload);
    return Status::Ok();
  }
  Status OnDataBegin(const FrameHeader& h) override {
    log.push_back("B" + std::to_string(h.stream_id));
    return Status::Ok();
  }
  Status OnDataPiece(const FrameHeader&, std::span<const uint8_t> piece) override {
    log.push_back("P" + std::string(reinterpret_cast<const char*>(piece.data()), piece.size()));
    return Status::Ok();
  }
  Status OnDataEnd(const FrameHeader& h) override {
    log.push_back("E" + std::to_string(h.stream_id));
    return Status::Ok();
  }
  std::vector<std::string> log;
};

TEST(FrameDecoder, PassesDataOnInPiecesAsTheBytesArriveWithoutBufferingThem) {
  std::string bytes = EncodeFrame(FrameType::kHead, 0, 3, "{}") + EncodeFrame(FrameType::kData, 0, 3, "abcdef") +
                      EncodeFrame(FrameType::kData, kFlagEnd, 3, "") + EncodeFrame(FrameType::kPing, 0, 0, "");
  FrameDecoder d;
  RecordingVisitor v;
  size_t cut = bytes.find("abc") + 2;  // split inside the first DATA payload
  ASSERT_TRUE(d.Feed(Bytes(bytes.substr(0, cut)), v).ok());
  EXPECT_EQ(d.buffered_bytes(), kFrameHeaderSize + 2);
  EXPECT_FALSE(d.Finish().ok());
  ASSERT_TRUE(d.Feed(Bytes(bytes.substr(cut)), v).ok());
  EXPECT_TRUE(d.Finish().ok());
  EXPECT_EQ(v.log, (std::vector<std::string>{"FHEAD:{}", "B3", "Pab", "Pcdef", "E3", "B3", "E3", "FPING:"}));
}

TEST(FrameDecoder, StopsAtTheFirstVisitorError) {
  class Refuser final : public FrameDecoder::Visitor {
   public:
    Status OnFrame(Frame) override { return Status::Ok(); }
    Status OnDataBegin(const FrameHeader&) override { return Status::InvalidArgument("no data here"); }
    Status OnDataPiece(const FrameHeader&, std::span<const uint8_t>) override { return Status::Ok(); }
    Status OnDataEnd(const FrameHeader&) override { return Status::Ok(); }
  } refuser;
  FrameDecoder d;
  std::string bytes = EncodeFrame(FrameType::kData, 0, 3, "abc") + EncodeFrame(FrameType::kPing, 0, 0, "");
  EXPECT_EQ(d.Feed(Bytes(bytes), refuser).message(), "no data here");
  EXPECT_EQ(d.Feed(Bytes(bytes), refuser).message(), "no data here");
}

}  // namespace
}  // namespace ember::wire
