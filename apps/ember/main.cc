#include "cli/cli.h"

int main(int argc, char** argv) { return ember::cli::Main(argc, argv); }
