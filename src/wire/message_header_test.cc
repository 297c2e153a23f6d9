#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // partial designated initializers
#include <gtest/gtest.h>

#include "wire/body.h"
#include "wire/message_header.h"

namespace ember::wire {
namespace {

TEST(MessageHeader, ReadsTheRoutingFields) {
  Json head = {{"kind", "req"}, {"topic", "fl.get_task"}, {"src", "site-1"},
               {"dst", "server"}, {"req_id", 42}, {"body_size", 7}, {"hops", 2}};
  Result<MessageFields> f = ReadMessageFields(head);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->kind, MessageKind::kRequest);
  EXPECT_EQ(f->topic, "fl.get_task");
  EXPECT_EQ(f->dst, "server");
  EXPECT_EQ(f->req_id, 42u);
  EXPECT_EQ(f->body_size, 7u);
  EXPECT_EQ(f->hops, 2u);
}

TEST(MessageHeader, RejectsFieldsOfTheWrongType) {
  EXPECT_FALSE(ReadMessageFields({{"kind", "req"}, {"body_size", -1}}).ok());
  EXPECT_FALSE(ReadMessageFields({{"kind", "req"}, {"dst", 3}}).ok());
  EXPECT_FALSE(ReadMessageFields({{"kind", "shout"}}).ok());
  EXPECT_FALSE(ReadMessageFields(Json::object()).ok());
}

TEST(MessageHeader, RejectsPayloadsThatAreNotJsonObjects) {
  EXPECT_FALSE(ParseJsonObject("[1,2]", "HEAD").ok());
  EXPECT_FALSE(ParseJsonObject("{\"a\":", "HEAD").ok());
  EXPECT_TRUE(ParseJsonObject("{}", "HEAD").ok());
}

TEST(Hello, RoundTripsWithAndWithoutToken) {
  Result<Hello> a = DecodeHello(EncodeHello({.name = "site-1", .version = 1, .token = "s3cret"}));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->name, "site-1");
  EXPECT_EQ(a->token, "s3cret");
  EXPECT_EQ(EncodeHello({.name = "server", .version = 1, .token = ""}), R"({"name":"server","version":1})");
}

TEST(Hello, CarriesTheWindowAndThePingPromiseOnlyWhenSet) {
  EXPECT_EQ(EncodeHello({.name = "a", .version = 1}), R"({"name":"a","version":1})");
  std::string s = EncodeHello({.name = "a", .version = 1, .window = 1 << 20, .answers_ping = true});
  Result<Hello> h = DecodeHello(s);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->window, 1u << 20);
  EXPECT_TRUE(h->answers_ping);
  EXPECT_FALSE(DecodeHello(R"({"name":"a","version":1,"window":-1})").ok());
  EXPECT_FALSE(DecodeHello(R"({"name":"a","version":1,"answers_ping":1})").ok());
}

TEST(Hello, RejectsABadNameOrVersion) {
  EXPECT_FALSE(DecodeHello(R"({"name":"a..b","version":1})").ok());
  EXPECT_FALSE(DecodeHello(R"({"name":"a","version":2})").ok());
}

TEST(Goaway, RoundTripsTheReason) {
  Result<std::string> r = DecodeGoaway(EncodeGoaway("bad token"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "bad token");
}

TEST(Fqcn, AcceptsDotJoinedPartsOnly) {
  EXPECT_TRUE(IsValidFqcn("server"));
  EXPECT_TRUE(IsValidFqcn("site-1.job_42"));
  EXPECT_FALSE(IsValidFqcn(""));
  EXPECT_FALSE(IsValidFqcn(".a"));
  EXPECT_FALSE(IsValidFqcn("a."));
  EXPECT_FALSE(IsValidFqcn("a b"));
}

TEST(Fqcn, MatchesAPrefixOnlyAtADot) {
  EXPECT_TRUE(IsSameOrUnder("site-1", "site-1"));
  EXPECT_TRUE(IsSameOrUnder("site-1.job", "site-1"));
  EXPECT_FALSE(IsSameOrUnder("site-10", "site-1"));
  EXPECT_FALSE(IsSameOrUnder("site", "site-1"));
}

TEST(WireStatus, MapsEveryCodeToANameAndBack) {
  for (int c = 0; c <= static_cast<int>(StatusCode::kUnimplemented); ++c) {
    auto code = static_cast<StatusCode>(c);
    EXPECT_EQ(StatusCodeFromWire(WireStatusName(code)), code) << WireStatusName(code);
  }
  EXPECT_EQ(StatusCodeFromWire("unreachable"), StatusCode::kUnavailable);
  EXPECT_EQ(StatusCodeFromWire("closed"), StatusCode::kUnavailable);
  EXPECT_EQ(StatusCodeFromWire("no_handler"), StatusCode::kUnimplemented);
  EXPECT_EQ(StatusCodeFromWire("weird"), StatusCode::kInternal);
}

TEST(Body, ReadsAtAnOffsetAndStopsAtTheEnd) {
  auto b = BytesBody("hello");
  uint8_t buf[4];
  Result<size_t> n = b->ReadAt(3, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), 2), "lo");
  EXPECT_FALSE(b->ReadAt(6, buf).ok());
}

}  // namespace
}  // namespace ember::wire
