// Splitting a command line into argv the way a POSIX shell would, without running a shell:
// the launcher turns a job's `command: "python train.py --lr 0.1"` into Subprocess argv.
//
//   EMBER_ASSIGN_OR_RETURN(std::vector<std::string> argv,
//                          SplitCommandLine(R"(python "my train.py" --tag 'a b')"));
//   // argv == {"python", "my train.py", "--tag", "a b"}
//
// Supported: blanks (space, tab, newline) separate words; '...' is literal; "..." honours
// backslash before $ ` " \ and newline (POSIX); a backslash outside quotes escapes the next
// character; "" and '' make an empty word. Not supported, on purpose: variable and tilde
// expansion, globbing, comments, pipes and redirections (they are kept as literal text).
//
// Thread-safety: pure functions, callable from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ember::base {

// Returns InvalidArgument naming the input on an unterminated quote or a trailing backslash.
Result<std::vector<std::string>> SplitCommandLine(std::string_view command_line);

// The inverse: quotes each word only when needed, so SplitCommandLine(JoinCommandLine(v)) == v.
// Used to show the exact command in logs and error messages.
std::string JoinCommandLine(const std::vector<std::string>& argv);

}  // namespace ember::base
