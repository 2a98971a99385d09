#include "core/log.h"

#include <cstdio>
#include <ctime>
#include <mutex>
#include <shared_mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "dynrpc/config.h"

namespace dynrpc::internal {
namespace {

std::optional<LogLevel> ParseLevel(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
  if (n == "error") return LogLevel::kError;
  if (n == "warn" || n == "warning") return LogLevel::kWarn;
  if (n == "info") return LogLevel::kInfo;
  if (n == "debug") return LogLevel::kDebug;
  if (n == "trace") return LogLevel::kTrace;
  return std::nullopt;
}

constexpr char kLevels[] = "error, warn, info, debug or trace";

struct State {
  std::shared_mutex mu;
  bool configured = false;  // under mu
  LogSpec spec;             // under mu
  std::function<void(std::string_view)> sink;  // under mu
};

State& GetState() {
  static State* state = new State();
  return *state;
}

// `module` is `prefix`, or starts with `prefix` followed by "::".
bool Covers(std::string_view prefix, std::string_view module) {
  if (!module.starts_with(prefix)) return false;
  return module.size() == prefix.size() ||
         module.substr(prefix.size()).starts_with("::");
}

void ConfigureFromEnvironmentOnce() {
  State& state = GetState();
  {
    std::shared_lock lock(state.mu);
    if (state.configured) return;
  }
  LogSpec spec;
  const absl::StatusOr<Config>& config = Config::Global();
  if (config.ok()) {
    absl::StatusOr<LogSpec> parsed = ParseLogSpec(config->log);
    if (parsed.ok()) spec = *std::move(parsed);
  }
  std::unique_lock lock(state.mu);
  if (state.configured) return;
  state.spec = std::move(spec);
  state.configured = true;
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kTrace:
      return "TRACE";
  }
  return "?";
}

absl::StatusOr<LogSpec> ParseLogSpec(std::string_view value_in) {
  absl::string_view value(value_in.data(), value_in.size());
  LogSpec spec;
  if (absl::StripAsciiWhitespace(value).empty()) return spec;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    if (eq == absl::string_view::npos) {
      std::optional<LogLevel> level = ParseLevel(part);
      if (!level) {
        return absl::InvalidArgumentError(
            absl::StrCat("DYN_LOG='", value, "' is invalid: '", part,
                         "' is not a level (expected ", kLevels, ")"));
      }
      spec.default_level = *level;
      continue;
    }
    absl::string_view module = absl::StripAsciiWhitespace(part.substr(0, eq));
    std::optional<LogLevel> level = ParseLevel(part.substr(eq + 1));
    if (module.empty() || !level) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DYN_LOG='", value, "' is invalid: '", part,
          "' is not module=level (a module such as dynrpc::nats, a level: ",
          kLevels, ")"));
    }
    spec.modules.emplace_back(std::string(module), *level);
  }
  return spec;
}

void Log::Configure(const LogSpec& spec) {
  State& state = GetState();
  std::unique_lock lock(state.mu);
  state.spec = spec;
  state.configured = true;
}

bool Log::Enabled(LogLevel level, std::string_view module) {
  ConfigureFromEnvironmentOnce();
  State& state = GetState();
  std::shared_lock lock(state.mu);
  LogLevel threshold = state.spec.default_level;
  std::size_t longest = 0;
  for (const auto& [prefix, module_level] : state.spec.modules) {
    if (prefix.size() >= longest && Covers(prefix, module)) {
      longest = prefix.size();
      threshold = module_level;
    }
  }
  return level <= threshold;
}

void Log::Write(LogLevel level, std::string_view module,
                std::string_view message) {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc;
  gmtime_r(&now.tv_sec, &utc);
  std::string line = absl::StrFormat(
      "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: %s\n", utc.tm_year + 1900,
      utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
      static_cast<int>(now.tv_nsec / 1'000'000),
      absl::string_view(LogLevelName(level).data(), LogLevelName(level).size()),
      absl::string_view(module.data(), module.size()),
      absl::string_view(message.data(), message.size()));
  State& state = GetState();
  std::shared_lock lock(state.mu);
  if (state.sink) {
    state.sink(line);
    return;
  }
  std::fwrite(line.data(), 1, line.size(), stderr);  // one write per line
}

void Log::SetSinkForTesting(std::function<void(std::string_view)> sink) {
  State& state = GetState();
  std::unique_lock lock(state.mu);
  state.sink = std::move(sink);
}

}  // namespace dynrpc::internal
