// Logging for every layer: thin macros over spdlog so call sites stay short.
//
//   EMBER_LOG_INFO("round {} done: {} sites, {} bytes", round, n, bytes);
//   ember::log::SetLevel("debug");
//   ember::log::AddFileSink("/ws/site-1/log.txt");
//
// Thread-safety: all functions may be called from any thread.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace ember::log {

// Level names: trace, debug, info, warn, error, off. Unknown names keep the current level.
void SetLevel(std::string_view level);
// Also writes every log line to `path` (appending).
void AddFileSink(const std::string& path);
// Creates a separate named logger writing to stderr and to `path` (used per site).
std::shared_ptr<spdlog::logger> MakeSiteLogger(const std::string& name, const std::string& path);

}  // namespace ember::log

#define EMBER_LOG_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
#define EMBER_LOG_INFO(...) spdlog::info(__VA_ARGS__)
#define EMBER_LOG_WARN(...) spdlog::warn(__VA_ARGS__)
#define EMBER_LOG_ERROR(...) spdlog::error(__VA_ARGS__)
