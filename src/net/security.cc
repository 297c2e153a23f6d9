#include "net/security.h"

#include <fmt/format.h>

#include <filesystem>

namespace ember::net {
namespace {

// Reads config[key] as a path (absent -> ""), resolved against base_dir.
Result<std::string> PathField(const wire::Json& config, const char* key, const std::string& base_dir) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Status::InvalidArgument(fmt::format("'{}' must be a path string", key));
  std::filesystem::path path = it->get<std::string>();
  if (path.empty() || path.is_absolute() || base_dir.empty()) return path.string();
  return (std::filesystem::path(base_dir) / path).string();
}

}  // namespace

std::string_view SecurityModeName(SecurityMode mode) {
  switch (mode) {
    case SecurityMode::kClear: return "clear";
    case SecurityMode::kTls: return "tls";
    case SecurityMode::kMtls: return "mtls";
  }
  return "?";
}

Result<SecurityMode> ParseSecurityMode(std::string_view name) {
  if (name == "clear") return SecurityMode::kClear;
  if (name == "tls") return SecurityMode::kTls;
  if (name == "mtls") return SecurityMode::kMtls;
  return Status::InvalidArgument(fmt::format("connection_security '{}' is not one of mtls, tls, clear", name));
}

Result<SecurityOptions> SecurityOptionsFromJson(const wire::Json& config, const std::string& base_dir) {
  if (!config.is_object()) return Status::InvalidArgument("security settings must be a JSON object");
  SecurityOptions o;
  o.mode = SecurityMode::kMtls;
  if (auto it = config.find("connection_security"); it != config.end()) {
    if (!it->is_string()) return Status::InvalidArgument("'connection_security' must be a string");
    EMBER_ASSIGN_OR_RETURN(o.mode, ParseSecurityMode(it->get<std::string>()));
  }
  EMBER_ASSIGN_OR_RETURN(o.cert_file, PathField(config, "ssl_cert", base_dir));
  EMBER_ASSIGN_OR_RETURN(o.key_file, PathField(config, "ssl_private_key", base_dir));
  EMBER_ASSIGN_OR_RETURN(o.ca_file, PathField(config, "ssl_root_cert", base_dir));
  return o;
}

}  // namespace ember::net
