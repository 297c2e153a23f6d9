// Test-only: certificates made at test time by scripts/gen_certs.sh in temporary
// directories removed when done (keys are never committed). The shared set is made once
// per test process.
//
//   const TestCerts* certs = GetTestCerts();
//   ASSERT_NE(certs, nullptr);
//   SecurityOptions server = certs->For("server", SecurityMode::kMtls);
//
// Thread-safety: GetTestCerts and MakeTestCerts may be called from any thread; a TestCerts
// is immutable.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/subprocess.h"
#include "net/security.h"

namespace ember::net::testing {

struct TestCerts {
  std::string dir;  // holds rootCA.pem, server.*, site-1.*, site-2.*, other/{rootCA.pem,server.*,site-1.*}

  // `name`'s certificate and key (e.g. "server", "site-2", "other/site-1") with our root CA.
  SecurityOptions For(const std::string& name, SecurityMode mode) const {
    return {.mode = mode, .cert_file = dir + "/" + name + ".crt", .key_file = dir + "/" + name + ".key",
            .ca_file = dir + "/rootCA.pem"};
  }
  // An anonymous client that trusts our root CA (tls mode).
  SecurityOptions AnonymousClient() const { return {.mode = SecurityMode::kTls, .ca_file = dir + "/rootCA.pem"}; }

  ~TestCerts() {
    std::error_code ignored;
    if (!dir.empty()) std::filesystem::remove_all(dir, ignored);
  }
};

inline std::string SourceDir() {
  if (const char* env = std::getenv("EMBER_SOURCE_DIR"); env && *env) return env;
#ifdef EMBER_SOURCE_DIR_DEFAULT
  return EMBER_SOURCE_DIR_DEFAULT;
#else
  return ".";
#endif
}

// Runs scripts/gen_certs.sh with `args` into a fresh temporary directory. On failure it
// records a test failure naming the script's last stderr lines and returns nullptr.
inline std::unique_ptr<TestCerts> MakeTestCerts(const std::vector<std::string>& args) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ember-certs-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    ADD_FAILURE() << "mkdtemp failed";
    return nullptr;
  }
  auto made = std::make_unique<TestCerts>();
  made->dir = tmpl;
  std::string script = SourceDir() + "/scripts/gen_certs.sh";
  std::vector<std::string> argv = {"bash", script, made->dir};
  argv.insert(argv.end(), args.begin(), args.end());
  auto proc = base::Subprocess::Spawn({.argv = argv});
  if (!proc.ok()) {
    ADD_FAILURE() << proc.status().ToString();
    return nullptr;
  }
  Result<int> status = (*proc)->Wait(std::chrono::seconds(60));
  if (!status.ok() || base::ExitCodeOf(*status) != 0) {
    std::string err;
    for (const std::string& line : (*proc)->LastStderrLines()) err += line + "\n";
    ADD_FAILURE() << script << " failed (" << (*proc)->DescribeExit() << "):\n" << err;
    return nullptr;
  }
  return made;
}

// The shared set (P-256 keys, sites 1-2), made on first use; nullptr if that failed (it is
// retried on the next call).
inline const TestCerts* GetTestCerts() {
  static std::mutex mu;
  static std::unique_ptr<TestCerts> certs;
  std::lock_guard lock(mu);
  if (!certs) certs = MakeTestCerts({"--sites", "2", "--key", "ec"});
  return certs.get();
}

}  // namespace ember::net::testing
