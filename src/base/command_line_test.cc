#include "base/command_line.h"

#include <gtest/gtest.h>

namespace ember::base {
namespace {

using Words = std::vector<std::string>;

Words Split(std::string_view s) {
  Result<Words> r = SplitCommandLine(s);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Words{};
}

TEST(SplitCommandLine, SeparatesWordsOnAnyRunOfBlanks) {
  EXPECT_EQ(Split("  python\ttrain.py \n --lr   0.1 "), (Words{"python", "train.py", "--lr", "0.1"}));
}

TEST(SplitCommandLine, ReturnsNoWordsForABlankLine) {
  EXPECT_EQ(Split(""), Words{});
  EXPECT_EQ(Split(" \t\n"), Words{});
}

TEST(SplitCommandLine, KeepsSingleQuotedTextLiteral) {
  EXPECT_EQ(Split(R"(echo 'a  b' 'x\"y$z')"), (Words{"echo", "a  b", R"(x\"y$z)"}));
}

TEST(SplitCommandLine, HonoursPosixEscapesInsideDoubleQuotes) {
  EXPECT_EQ(Split(R"(echo "say \"hi\" \\ \$HOME \n")"), (Words{"echo", R"(say "hi" \ $HOME \n)"}));
}

TEST(SplitCommandLine, EscapesTheNextCharacterOutsideQuotes) {
  EXPECT_EQ(Split(R"(my\ file \'q \\)"), (Words{"my file", "'q", "\\"}));
}

TEST(SplitCommandLine, JoinsAdjacentQuotedAndPlainPartsIntoOneWord) {
  EXPECT_EQ(Split(R"(--name="a b"'c d'e)"), (Words{"--name=a bc de"}));
}

TEST(SplitCommandLine, MakesEmptyWordsFromEmptyQuotes) {
  EXPECT_EQ(Split(R"(a '' "" b)"), (Words{"a", "", "", "b"}));
}

TEST(SplitCommandLine, TreatsBackslashNewlineAsLineContinuation) {
  EXPECT_EQ(Split("python \\\ntrain.py \"a\\\nb\""), (Words{"python", "train.py", "ab"}));
}

TEST(SplitCommandLine, RejectsAnUnterminatedSingleQuoteNamingTheInput) {
  Result<Words> r = SplitCommandLine("python 'train.py");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("unterminated single quote"), std::string::npos);
  EXPECT_NE(r.status().message().find("python 'train.py"), std::string::npos);
}

TEST(SplitCommandLine, RejectsAnUnterminatedDoubleQuoteAndATrailingBackslash) {
  Result<Words> r = SplitCommandLine(R"(echo "abc\")");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unterminated double quote"), std::string::npos);
  EXPECT_FALSE(SplitCommandLine("echo abc\\").ok());
}

TEST(JoinCommandLine, QuotesOnlyWordsThatNeedIt) {
  EXPECT_EQ(JoinCommandLine({"python", "train.py", "--lr=0.1"}), "python train.py --lr=0.1");
  EXPECT_EQ(JoinCommandLine({"echo", "a b", "", "it's"}), R"(echo 'a b' '' 'it'\''s')");
}

TEST(JoinCommandLine, RoundTripsThroughSplit) {
  Words argv = {"sh", "-c", "echo \"$HOME\" \\ 'x' && exit 3", "", "tab\there", "new\nline"};
  EXPECT_EQ(Split(JoinCommandLine(argv)), argv);
}

}  // namespace
}  // namespace ember::base
