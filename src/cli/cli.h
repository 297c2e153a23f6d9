// The `ember` command line: parses arguments and runs a command. apps/ember/main.cc is
// only `return ember::cli::Main(argc, argv);`.
//
// Exit codes: 0 success, 1 the job failed, 2 bad usage or bad input.
#pragma once

namespace ember::cli {

int Main(int argc, char** argv);

}  // namespace ember::cli
