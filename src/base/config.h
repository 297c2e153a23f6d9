// Config: the runtime's typed settings registry (docs/config.md lists every key). Each
// key has a name, a type, a default and a meaning. A value comes from, last one winning:
// the default, an optional JSON config file (an object of key -> value), and the
// environment variable EMBER_<UPPER_NAME> (e.g. EMBER_STREAMING_CHUNK_SIZE=4MiB).
//
//   EMBER_ASSIGN_OR_RETURN(base::Config config, base::Config::FromEnvironment());
//   uint64_t chunk = config.Get(base::kStreamingChunkSize);              // bytes
//   std::chrono::milliseconds t = config.Get(base::kStreamingSendTimeout);
//
// A bad value is refused with one line naming the key and where it came from, e.g.
// "InvalidArgument: environment variable EMBER_STREAMING_CHUNK_SIZE="12x":
//  streaming_chunk_size must be a byte count such as 1048576 or 1MiB".
//
// Thread-safety: a Config is a value; const methods may be called from any thread.
// Adding a key: one entry in kConfigKeys (config.cc), one typed constant below and one
// row in docs/config.md (config_test checks the doc lists every key). A default is
// written only there: structs that need it read DefaultConfig() (below), and components
// read the process Config they are given.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "base/status.h"

namespace ember::base {

enum class ConfigType {
  kBytes,    // uint64: 1048576, "1048576", "1MiB", "64KiB", "2GiB"
  kSeconds,  // duration: 30, 0.5, "30", "30s", "500ms", "2m"; read as milliseconds
  kCount,    // int64: 3, "3"
  kBool,     // true/false; strings true/false/1/0/yes/no/on/off
  kString,
};

struct ConfigKeyInfo {
  std::string_view name;
  ConfigType type;
  std::string_view default_value;  // as one would write it in the file or env var
  std::string_view meaning;
  double min = 0;  // numeric types: inclusive bounds (bytes, seconds or count)
  double max = 0;
};

// Every registered key, in documentation order.
std::span<const ConfigKeyInfo> ConfigKeys();
// The key named `name`, or nullptr.
const ConfigKeyInfo* FindConfigKey(std::string_view name);
// "EMBER_" + upper-cased name.
std::string ConfigEnvVar(std::string_view name);

template <ConfigType T>
struct ConfigKey {
  std::string_view name;
};
using BytesKey = ConfigKey<ConfigType::kBytes>;
using SecondsKey = ConfigKey<ConfigType::kSeconds>;
using CountKey = ConfigKey<ConfigType::kCount>;
using BoolKey = ConfigKey<ConfigType::kBool>;
using StringKey = ConfigKey<ConfigType::kString>;

// ---- keys (meanings and defaults: config.cc, docs/config.md) ------------------------
inline constexpr BytesKey kStreamingChunkSize{"streaming_chunk_size"};
inline constexpr BytesKey kStreamingWindowSize{"streaming_window_size"};
inline constexpr SecondsKey kStreamingSendTimeout{"streaming_send_timeout"};
inline constexpr SecondsKey kStreamingAckProgressTimeout{"streaming_ack_progress_timeout"};
inline constexpr SecondsKey kStreamingAckProgressCheckInterval{"streaming_ack_progress_check_interval"};
inline constexpr SecondsKey kSfmSendStallTimeout{"sfm_send_stall_timeout"};
inline constexpr CountKey kSfmSendStallConsecutiveChecks{"sfm_send_stall_consecutive_checks"};
inline constexpr BoolKey kSfmCloseStalledConnection{"sfm_close_stalled_connection"};
inline constexpr SecondsKey kConnectionCheckInterval{"connection_check_interval"};
inline constexpr SecondsKey kHeartbeatInterval{"heartbeat_interval"};
inline constexpr CountKey kHeartbeatMisses{"heartbeat_misses"};
inline constexpr BytesKey kMaxBodySize{"max_body_size"};
// cells
inline constexpr SecondsKey kConnectTimeout{"connect_timeout"};
inline constexpr SecondsKey kReconnectInitialBackoff{"reconnect_initial_backoff"};
inline constexpr SecondsKey kReconnectMaxBackoff{"reconnect_max_backoff"};
inline constexpr SecondsKey kGoawayLinger{"goaway_linger"};
// site <-> server
inline constexpr SecondsKey kCommunicationTimeout{"communication_timeout"};
inline constexpr CountKey kCommunicationMaxAttempts{"communication_max_attempts"};
inline constexpr SecondsKey kCommunicationRetryInterval{"communication_retry_interval"};
inline constexpr SecondsKey kTaskParkTimeout{"task_park_timeout"};
inline constexpr SecondsKey kEndRunDrainTimeout{"end_run_drain_timeout"};
// training scripts and site processes
inline constexpr SecondsKey kScriptGetTaskTimeout{"script_get_task_timeout"};
inline constexpr SecondsKey kScriptTransferTimeout{"script_transfer_timeout"};
inline constexpr SecondsKey kScriptLinkTimeout{"script_link_timeout"};
inline constexpr SecondsKey kScriptMinShutdownTimeout{"script_min_shutdown_timeout"};
inline constexpr SecondsKey kProcessTerminateGrace{"process_terminate_grace"};
inline constexpr SecondsKey kSiteExitMargin{"site_exit_margin"};
// streams
inline constexpr SecondsKey kStreamingPerRequestTimeout{"streaming_per_request_timeout"};
inline constexpr CountKey kDownloadMaxRetries{"download_max_retries"};
inline constexpr SecondsKey kDownloadRetryBackoff{"download_retry_backoff"};
inline constexpr SecondsKey kDownloadRetryMaxBackoff{"download_retry_max_backoff"};
inline constexpr SecondsKey kStreamingPushTimeout{"streaming_push_timeout"};

class Config {
 public:
  // Reads one environment variable; nullopt if unset.
  using EnvLookup = std::function<std::optional<std::string>(const std::string& var)>;

  // Every key at its default.
  Config();

  // Defaults, then `file` (skipped if empty), then the process environment.
  static Result<Config> Load(const std::string& file);
  // Same with an injected environment (tests).
  static Result<Config> Load(const std::string& file, const EnvLookup& env);
  // Load($EMBER_CONFIG or no file).
  static Result<Config> FromEnvironment();

  // Parses and checks `text` for key `name`; `source` names where it came from in errors
  // ("config file x.json", "environment variable EMBER_X", "test").
  Status Set(std::string_view name, std::string_view text, std::string_view source);

  uint64_t Get(BytesKey key) const;
  std::chrono::milliseconds Get(SecondsKey key) const;
  int64_t Get(CountKey key) const;
  bool Get(BoolKey key) const;
  std::string Get(StringKey key) const;

  // Where the value of `name` came from: "default", "config file ...", "environment ...".
  std::string SourceOf(std::string_view name) const;

 private:
  using Value = std::variant<uint64_t, double, int64_t, bool, std::string>;
  struct Entry {
    Value value;
    std::string source;
  };

  Status ApplyFile(const std::string& path);
  Status ApplyEnv(const EnvLookup& env);
  const Value& Find(std::string_view name) const;

  std::map<std::string, Entry, std::less<>> entries_;
};

// Every key at its registered default, built once. Options structs take their member
// defaults from here, so each default is written once (kConfigKeys), e.g.
//   uint64_t window_size = base::DefaultOf(base::kStreamingWindowSize);
const Config& DefaultConfig();
template <ConfigType T>
auto DefaultOf(ConfigKey<T> key) {
  return DefaultConfig().Get(key);
}

// `config` itself if non-null, else Config::FromEnvironment() (components whose options
// carry an optional shared Config, like cell::CellOptions::config).
Result<std::shared_ptr<const Config>> ConfigOrEnvironment(std::shared_ptr<const Config> config);

}  // namespace ember::base
