// Connection security settings and the identity a peer proved with its certificate
// (docs/security.md). Plain data: the TLS machinery that uses them is net/tls.h.
//
//   SecurityOptions s{.mode = SecurityMode::kMtls, .cert_file = "startup/site-1.crt",
//                     .key_file = "startup/site-1.key", .ca_file = "startup/rootCA.pem"};
//   EMBER_ASSIGN_OR_RETURN(SecurityOptions s, SecurityOptionsFromJson(config["security"], dir));
//
// Thread-safety: value types.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "wire/message_header.h"

namespace ember::net {

// FLARE's `connection_security`.
enum class SecurityMode {
  kClear,  // plain TCP: simulation and loopback links (a site's training script)
  kTls,    // the server proves who it is; the client stays anonymous
  kMtls,   // both sides present certificates signed by the configured CA (deployments)
};

// "clear" | "tls" | "mtls".
std::string_view SecurityModeName(SecurityMode mode);
Result<SecurityMode> ParseSecurityMode(std::string_view name);

// One side's settings for one kind of link. Paths name PEM files; the key must not be
// encrypted. Which files a mode needs is checked by TlsContext::Create:
//   server side: cert + key always; ca in mtls (to verify clients)
//   client side: ca always; cert + key in mtls
// A default-constructed SecurityOptions is clear, because the in-process links (simulation,
// the script link) are; configuration files default to mtls (SecurityOptionsFromJson).
struct SecurityOptions {
  SecurityMode mode = SecurityMode::kClear;
  std::string cert_file = {};  // our certificate (may be followed by intermediates)
  std::string key_file = {};   // its private key
  std::string ca_file = {};    // root CA(s) a peer's certificate must chain to
};

// Reads FLARE-named keys from a JSON object: "connection_security" (default "mtls"),
// "ssl_cert", "ssl_private_key", "ssl_root_cert". Relative paths are resolved against
// `base_dir` (e.g. the startup kit folder) unless it is empty. Unknown modes and
// non-string values are InvalidArgument.
Result<SecurityOptions> SecurityOptionsFromJson(const wire::Json& config, const std::string& base_dir);

// What the peer proved during the TLS handshake. Empty over clear TCP and for an
// anonymous TLS client.
struct PeerIdentity {
  bool verified = false;                // a certificate chained to our CA was presented
  std::string common_name = {};         // its subject CN
  std::vector<std::string> subject_alt_names = {};  // DNS names and IP addresses
};

}  // namespace ember::net
