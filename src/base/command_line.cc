#include "base/command_line.h"

#include <algorithm>
#include <cctype>

namespace ember::base {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\n'; }

// Inside double quotes a backslash only escapes these (POSIX 2.2.3); otherwise it is literal.
bool EscapableInDoubleQuotes(char c) {
  return c == '$' || c == '`' || c == '"' || c == '\\' || c == '\n';
}

Status Malformed(std::string_view what, std::string_view input) {
  return Status::InvalidArgument(std::string(what) + " in command line \"" + std::string(input) +
                                 "\"");
}

// A tiny scanner: walks the input once, appending to `word` and flushing finished words.
class Splitter {
 public:
  explicit Splitter(std::string_view in) : in_(in) {}

  Result<std::vector<std::string>> Run() {
    while (i_ < in_.size()) {
      char c = in_[i_++];
      Status s = Status::Ok();
      if (IsBlank(c)) {
        FlushWord();
      } else if (c == '\'') {
        s = SingleQuoted();
      } else if (c == '"') {
        s = DoubleQuoted();
      } else if (c == '\\') {
        s = Escaped();
      } else {
        Append(c);
      }
      if (!s.ok()) return s;
    }
    FlushWord();
    return std::move(words_);
  }

 private:
  void Append(char c) {
    word_.push_back(c);
    in_word_ = true;
  }

  void FlushWord() {
    if (in_word_) words_.push_back(std::move(word_));
    word_.clear();
    in_word_ = false;
  }

  Status SingleQuoted() {
    in_word_ = true;  // '' is an empty word
    size_t end = in_.find('\'', i_);
    if (end == std::string_view::npos) return Malformed("unterminated single quote", in_);
    word_.append(in_.substr(i_, end - i_));
    i_ = end + 1;
    return Status::Ok();
  }

  Status DoubleQuoted() {
    in_word_ = true;
    while (i_ < in_.size()) {
      char c = in_[i_++];
      if (c == '"') return Status::Ok();
      if (c == '\\' && i_ < in_.size() && EscapableInDoubleQuotes(in_[i_])) {
        c = in_[i_++];
        if (c == '\n') continue;  // line continuation
      }
      word_.push_back(c);
    }
    return Malformed("unterminated double quote", in_);
  }

  Status Escaped() {
    if (i_ == in_.size()) return Malformed("trailing backslash", in_);
    char c = in_[i_++];
    if (c != '\n') Append(c);  // backslash-newline is a line continuation
    return Status::Ok();
  }

  std::string_view in_;
  size_t i_ = 0;
  std::string word_;
  bool in_word_ = false;
  std::vector<std::string> words_;
};

bool IsShellSafe(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("@%+=:,./_-").find(c) != std::string_view::npos;
}

bool NeedsQuoting(std::string_view word) {
  return word.empty() || !std::all_of(word.begin(), word.end(), IsShellSafe);
}

// 'it'\''s' : single quotes keep everything literal; a quote is closed, escaped, reopened.
std::string QuoteWord(std::string_view word) {
  if (!NeedsQuoting(word)) return std::string(word);
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  out.push_back('\'');
  return out;
}

}  // namespace

Result<std::vector<std::string>> SplitCommandLine(std::string_view command_line) {
  return Splitter(command_line).Run();
}

std::string JoinCommandLine(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& word : argv) {
    if (!out.empty()) out.push_back(' ');
    out += QuoteWord(word);
  }
  return out;
}

}  // namespace ember::base
