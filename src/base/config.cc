#include "base/config.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace ember::base {
namespace {

using Json = nlohmann::json;

constexpr double kKiB = 1024.0;
constexpr double kMaxBytes = 18446744073709549568.0;  // largest double below 2^64
constexpr double kDay = 86400.0;

// The registry. Defaults follow NVFLARE 2.7.2's comm_config where FLARE has the key.
constexpr ConfigKeyInfo kConfigKeys[] = {
    {"streaming_chunk_size", ConfigType::kBytes, "1MiB",
     "Largest DATA frame payload a sender writes. Bigger chunks cost a little latency for "
     "other streams on the connection (a write in progress delays them by one chunk).",
     kKiB, 16 * kKiB * kKiB},
    {"streaming_window_size", ConfigType::kBytes, "32MiB",
     "Flow-control window per stream: a sender may have at most this many body bytes of "
     "one stream sent beyond what the receiver has consumed. Bounds the memory a stream "
     "holds on both sides (a relay holds at most this per relayed stream). Announced to "
     "the peer in HELLO. FLARE uses 16 MiB; 32 MiB keeps a two-hop relay path busy on a "
     "loaded host (docs/benchmarks.md).",
     64 * kKiB, kMaxBytes},
    {"streaming_send_timeout", ConfigType::kSeconds, "30",
     "A socket write that makes no progress for this long closes the connection (a "
     "half-written frame cannot be taken back). 0 disables.",
     0, kDay},
    {"streaming_ack_progress_timeout", ConfigType::kSeconds, "60",
     "A stream waiting for flow-control credit that gets none for this long is aborted, "
     "with an error naming the peer and the stream. 0 disables.",
     0, kDay},
    {"streaming_ack_progress_check_interval", ConfigType::kSeconds, "5",
     "How often senders check their credit-blocked streams against "
     "streaming_ack_progress_timeout.",
     0.01, 3600},
    {"sfm_send_stall_timeout", ConfigType::kSeconds, "45",
     "A connection whose current write has lasted longer than this is reported as "
     "stalled (a warning per check). 0 disables.",
     0, kDay},
    {"sfm_send_stall_consecutive_checks", ConfigType::kCount, "3",
     "How many consecutive stalled checks close the connection when "
     "sfm_close_stalled_connection is true.",
     1, 1000000},
    {"sfm_close_stalled_connection", ConfigType::kBool, "false",
     "Close a connection after sfm_send_stall_consecutive_checks stalled checks, so the "
     "cell reconnects and later traffic goes over a new connection.",
     0, 0},
    {"connection_check_interval", ConfigType::kSeconds, "5",
     "How often each connection checks heartbeats and send stalls (FLARE's heartbeat "
     "monitor tick).",
     0.01, 3600},
    {"heartbeat_interval", ConfigType::kSeconds, "60",
     "A connection that has received nothing for this long sends PING. 0 disables "
     "heartbeats and dead-peer detection.",
     0, kDay},
    {"heartbeat_misses", ConfigType::kCount, "3",
     "A peer that promised in HELLO to answer PING is considered dead, and the "
     "connection closed, after heartbeat_misses x heartbeat_interval with nothing "
     "received.",
     1, 1000},
    {"max_body_size", ConfigType::kBytes, "64GiB",
     "Largest message body a connection accepts; a larger one is drained and refused "
     "with resource_exhausted, the connection stays up.",
     0, kMaxBytes},
    // ---- cells: connecting, reconnecting, closing
    {"connect_timeout", ConfigType::kSeconds, "10",
     "One connection attempt (TCP connect, TLS handshake, HELLO exchange) that has not "
     "finished after this long fails. A cell's first connection to its parent must "
     "succeed within about twice this.",
     0.01, kDay},
    {"reconnect_initial_backoff", ConfigType::kSeconds, "1",
     "A cell that lost its parent waits this long before the first reconnect attempt; "
     "the wait doubles after each failed attempt and resets once connected (FLARE's "
     "connector INIT_WAIT).",
     0.01, 3600},
    {"reconnect_max_backoff", ConfigType::kSeconds, "10",
     "Cap on the doubling wait between reconnect attempts (FLARE's connector MAX_WAIT).",
     0.01, kDay},
    {"goaway_linger", ConfigType::kSeconds, "0.5",
     "A connection shut down sends GOAWAY and closes once it is written, or after this "
     "long if the peer does not read it.",
     0, 60},
    // ---- site <-> server (fl)
    {"communication_timeout", ConfigType::kSeconds, "60",
     "A site's request to the server (register, get_task) without a reply for this long "
     "fails the attempt; timeouts and lost connections are retried.",
     0.01, kDay},
    {"communication_max_attempts", ConfigType::kCount, "10",
     "Attempts a site makes at one request to the server before the job fails at the site.",
     1, 1000000},
    {"communication_retry_interval", ConfigType::kSeconds, "1",
     "Wait between two attempts at a site's request to the server.",
     0, 3600},
    {"task_park_timeout", ConfigType::kSeconds, "5",
     "The server holds a site's get_task this long waiting for a task before telling the "
     "site to ask again.",
     0, 3600},
    {"end_run_drain_timeout", ConfigType::kSeconds, "5",
     "At the end of a job the server waits up to this long for every registered site to "
     "be told the job ended before it stops.",
     0, 3600},
    // ---- training scripts and site processes
    {"script_get_task_timeout", ConfigType::kSeconds, "86400",
     "A C++ training script's Receive() waits this long for its site to hand it a task "
     "(rounds can be long).",
     1, 30 * kDay},
    {"script_transfer_timeout", ConfigType::kSeconds, "3600",
     "A C++ training script's model download (fl.get_model) or result upload "
     "(fl.submit_result) must finish within this.",
     1, 30 * kDay},
    {"script_link_timeout", ConfigType::kSeconds, "60",
     "A C++ training script's small requests to its site (link.submit) time out after this.",
     0.01, kDay},
    {"script_min_shutdown_timeout", ConfigType::kSeconds, "5",
     "After the job ended a training script gets at least this long to exit on its own "
     "(a job's shutdown_timeout may give it more) before it is terminated.",
     0, kDay},
    {"process_terminate_grace", ConfigType::kSeconds, "2",
     "A training script or site process being terminated gets SIGTERM, then SIGKILL if "
     "it is still running this long later.",
     0, 3600},
    {"site_exit_margin", ConfigType::kSeconds, "10",
     "ember simulate: after the job ended each site process gets the scripts' shutdown "
     "time plus this margin to exit before it is terminated.",
     0, kDay},
    // ---- streams (src/stream)
    {"streaming_per_request_timeout", ConfigType::kSeconds, "60",
     "A download's chunk request without a reply for this long is retried (FLARE uses "
     "600 s for a whole-tensor request; Ember asks for one chunk at a time).",
     0.01, kDay},
    {"download_max_retries", ConfigType::kCount, "3",
     "Retries of one download chunk request after its first attempt (FLARE: 3).",
     0, 1000},
    {"download_retry_backoff", ConfigType::kSeconds, "1",
     "Wait before the first retry of a download chunk request; it doubles for each "
     "further retry (1, 2, 4 s).",
     0, 3600},
    {"download_retry_max_backoff", ConfigType::kSeconds, "60",
     "Cap on any one wait between download retries (FLARE: 60 s).",
     0, kDay},
    {"streaming_push_timeout", ConfigType::kSeconds, "600",
     "A push stream (the whole transfer plus the receiver's reply) must finish within this.",
     0.01, 30 * kDay},
};

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "12.5MiB" -> {12.5, "mib"}; nullopt if it does not start with a number.
std::optional<std::pair<double, std::string>> SplitNumber(std::string_view text) {
  std::string s = Trim(text);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end == s.data() || !std::isfinite(v)) return std::nullopt;
  return std::make_pair(v, Lower(Trim(std::string_view(end, s.data() + s.size() - end))));
}

std::optional<double> UnitFactor(ConfigType type, const std::string& unit) {
  if (type == ConfigType::kBytes) {
    if (unit.empty() || unit == "b") return 1.0;
    if (unit == "k" || unit == "kb" || unit == "kib") return kKiB;
    if (unit == "m" || unit == "mb" || unit == "mib") return kKiB * kKiB;
    if (unit == "g" || unit == "gb" || unit == "gib") return kKiB * kKiB * kKiB;
    if (unit == "t" || unit == "tb" || unit == "tib") return kKiB * kKiB * kKiB * kKiB;
    return std::nullopt;
  }
  if (unit.empty() || unit == "s") return 1.0;
  if (unit == "ms") return 0.001;
  if (unit == "m" || unit == "min") return 60.0;
  if (unit == "h") return 3600.0;
  return std::nullopt;
}

std::string_view Expected(ConfigType type) {
  switch (type) {
    case ConfigType::kBytes: return "a byte count such as 1048576 or 1MiB";
    case ConfigType::kSeconds: return "a duration in seconds such as 30, 0.5 or 500ms";
    case ConfigType::kCount: return "a whole number";
    case ConfigType::kBool: return "true or false";
    case ConfigType::kString: return "a string";
  }
  return "a value";
}

std::string_view UnitWord(ConfigType type) {
  return type == ConfigType::kBytes ? " bytes" : type == ConfigType::kSeconds ? " s" : "";
}

// The number a value is bounded by: bytes, seconds or the count itself.
Status CheckBounds(const ConfigKeyInfo& key, double v) {
  if (v < key.min) {
    return Status::InvalidArgument(fmt::format("is below the minimum {}{}", key.min,
                                               UnitWord(key.type)));
  }
  if (v > key.max) {
    return Status::InvalidArgument(fmt::format("is above the maximum {}{}", key.max,
                                               UnitWord(key.type)));
  }
  return Status::Ok();
}

using Value = std::variant<uint64_t, double, int64_t, bool, std::string>;

Result<Value> NumberValue(const ConfigKeyInfo& key, double v) {
  EMBER_RETURN_IF_ERROR(CheckBounds(key, v));
  if (key.type == ConfigType::kSeconds) return Value(v);
  if (v != std::floor(v)) {
    return Status::InvalidArgument(fmt::format("must be {}", Expected(key.type)));
  }
  if (key.type == ConfigType::kBytes) return Value(static_cast<uint64_t>(v));
  return Value(static_cast<int64_t>(v));
}

Result<Value> ParseBool(const ConfigKeyInfo& key, std::string_view text) {
  std::string s = Lower(Trim(text));
  if (s == "true" || s == "1" || s == "yes" || s == "on") return Value(true);
  if (s == "false" || s == "0" || s == "no" || s == "off") return Value(false);
  return Status::InvalidArgument(fmt::format("must be {}", Expected(key.type)));
}

Result<Value> ParseText(const ConfigKeyInfo& key, std::string_view text) {
  if (key.type == ConfigType::kString) return Value(std::string(text));
  if (key.type == ConfigType::kBool) return ParseBool(key, text);
  auto split = SplitNumber(text);
  std::optional<double> factor;
  if (split && (key.type != ConfigType::kCount || split->second.empty())) {
    factor = key.type == ConfigType::kCount ? 1.0 : UnitFactor(key.type, split->second);
  }
  if (!factor) return Status::InvalidArgument(fmt::format("must be {}", Expected(key.type)));
  return NumberValue(key, split->first * *factor);
}

Result<Value> ParseJson(const ConfigKeyInfo& key, const Json& j) {
  if (j.is_string()) return ParseText(key, j.get<std::string>());
  bool ok = key.type == ConfigType::kBool ? j.is_boolean()
                                          : (j.is_number() && key.type != ConfigType::kString);
  if (!ok) return Status::InvalidArgument(fmt::format("must be {}", Expected(key.type)));
  if (key.type == ConfigType::kBool) return Value(j.get<bool>());
  return NumberValue(key, j.get<double>());
}

std::string ReadWholeFile(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  *ok = static_cast<bool>(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::span<const ConfigKeyInfo> ConfigKeys() { return kConfigKeys; }

const ConfigKeyInfo* FindConfigKey(std::string_view name) {
  for (const ConfigKeyInfo& k : kConfigKeys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string ConfigEnvVar(std::string_view name) {
  std::string var = "EMBER_";
  for (char c : name) var += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return var;
}

Config::Config() {
  for (const ConfigKeyInfo& k : kConfigKeys) {
    Status s = Set(k.name, k.default_value, "default");
    assert(s.ok() && "a registered default does not parse");
    (void)s;
  }
}

const Config& DefaultConfig() {
  static const Config* const defaults = new Config();
  return *defaults;
}

Result<std::shared_ptr<const Config>> ConfigOrEnvironment(std::shared_ptr<const Config> config) {
  if (config) return config;
  EMBER_ASSIGN_OR_RETURN(Config loaded, Config::FromEnvironment());
  return std::make_shared<const Config>(std::move(loaded));
}

Result<Config> Config::Load(const std::string& file) {
  return Load(file, [](const std::string& var) -> std::optional<std::string> {
    const char* v = std::getenv(var.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
}

Result<Config> Config::Load(const std::string& file, const EnvLookup& env) {
  Config config;
  if (!file.empty()) EMBER_RETURN_IF_ERROR(config.ApplyFile(file));
  EMBER_RETURN_IF_ERROR(config.ApplyEnv(env));
  return config;
}

Result<Config> Config::FromEnvironment() {
  const char* file = std::getenv("EMBER_CONFIG");
  return Load(file ? std::string(file) : std::string());
}

Status Config::Set(std::string_view name, std::string_view text, std::string_view source) {
  const ConfigKeyInfo* key = FindConfigKey(name);
  if (key == nullptr) {
    return Status::InvalidArgument(fmt::format("{}: unknown config key '{}' (docs/config.md lists the keys)",
                                               source, name));
  }
  Result<Value> v = ParseText(*key, text);
  if (!v.ok()) {
    return Status::InvalidArgument(fmt::format("{}: {}=\"{}\" {}", source, name, text, v.status().message()));
  }
  entries_[std::string(name)] = Entry{std::move(*v), std::string(source)};
  return Status::Ok();
}

Status Config::ApplyFile(const std::string& path) {
  std::string source = "config file " + path;
  bool readable = false;
  std::string text = ReadWholeFile(path, &readable);
  if (!readable) return Status::NotFound(fmt::format("{}: cannot be read", source));
  Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::InvalidArgument(fmt::format("{}: not valid JSON", source));
  if (!doc.is_object()) return Status::InvalidArgument(fmt::format("{}: must be a JSON object of key: value", source));
  for (const auto& [name, value] : doc.items()) {
    const ConfigKeyInfo* key = FindConfigKey(name);
    if (key == nullptr) {
      return Status::InvalidArgument(fmt::format("{}: unknown config key '{}' (docs/config.md lists the keys)",
                                                 source, name));
    }
    Result<Value> v = ParseJson(*key, value);
    if (!v.ok()) {
      return Status::InvalidArgument(fmt::format("{}: {}={} {}", source, name, value.dump(), v.status().message()));
    }
    entries_[name] = Entry{std::move(*v), source};
  }
  return Status::Ok();
}

Status Config::ApplyEnv(const EnvLookup& env) {
  for (const ConfigKeyInfo& k : kConfigKeys) {
    std::string var = ConfigEnvVar(k.name);
    std::optional<std::string> text = env(var);
    if (text) EMBER_RETURN_IF_ERROR(Set(k.name, *text, "environment variable " + var));
  }
  return Status::Ok();
}

const Config::Value& Config::Find(std::string_view name) const {
  auto it = entries_.find(name);
  assert(it != entries_.end() && "config key not registered in kConfigKeys");
  return it->second.value;
}

uint64_t Config::Get(BytesKey key) const { return std::get<uint64_t>(Find(key.name)); }

std::chrono::milliseconds Config::Get(SecondsKey key) const {
  double seconds = std::get<double>(Find(key.name));
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(seconds * 1000.0)));
}

int64_t Config::Get(CountKey key) const { return std::get<int64_t>(Find(key.name)); }

bool Config::Get(BoolKey key) const { return std::get<bool>(Find(key.name)); }

std::string Config::Get(StringKey key) const { return std::get<std::string>(Find(key.name)); }

std::string Config::SourceOf(std::string_view name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? std::string() : it->second.source;
}

}  // namespace ember::base
