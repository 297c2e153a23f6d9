#include "base/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace ember::log {

void SetLevel(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") return;
  spdlog::set_level(lvl);
}

void AddFileSink(const std::string& path) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  spdlog::default_logger()->sinks().push_back(std::move(sink));
}

std::shared_ptr<spdlog::logger> MakeSiteLogger(const std::string& name, const std::string& path) {
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  auto err = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(name, spdlog::sinks_init_list{err, file});
  logger->set_level(spdlog::default_logger()->level());
  return logger;
}

}  // namespace ember::log
