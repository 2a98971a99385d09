// dynrpc's log: levels, per-module thresholds from DYN_LOG, one line per
// record on stderr. Debian's Abseil (20220623) has no absl/log, and the
// runtime logs little: a small logger of our own.
//
//   DYNRPC_LOG(kInfo, "dynrpc::server", "serving on ", address);
//
// The arguments are absl::StrCat's, evaluated only when the record passes
// its module's threshold. Message payloads are logged at kDebug and below
// only.
#ifndef DYNRPC_RUNTIME_SRC_CORE_LOG_H_
#define DYNRPC_RUNTIME_SRC_CORE_LOG_H_

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace dynrpc::internal {

enum class LogLevel { kError = 0, kWarn, kInfo, kDebug, kTrace };

std::string_view LogLevelName(LogLevel level);  // "ERROR", "WARN", ...

// DYN_LOG's value: a default level and per-module overrides, e.g.
// "info,dynrpc::nats=debug". A module's threshold is its longest matching
// prefix on "::" boundaries ("dynrpc::nats" covers "dynrpc::nats::client").
struct LogSpec {
  LogLevel default_level = LogLevel::kInfo;
  std::vector<std::pair<std::string, LogLevel>> modules;
};

// Empty: the default (info). INVALID_ARGUMENT naming the part at fault and
// the valid levels.
absl::StatusOr<LogSpec> ParseLogSpec(std::string_view value);

class Log {
 public:
  // Sets the thresholds (thread-safe). Until called, the first record
  // configures the log from Config::Global()'s DYN_LOG.
  static void Configure(const LogSpec& spec);
  static bool Enabled(LogLevel level, std::string_view module);
  // One line: "<UTC time> <LEVEL> <module>: <message>".
  static void Write(LogLevel level, std::string_view module,
                    std::string_view message);
  // Where lines go instead of stderr (null: stderr again). For tests.
  static void SetSinkForTesting(std::function<void(std::string_view)> sink);
};

}  // namespace dynrpc::internal

#define DYNRPC_LOG(level, module, ...)                                     \
  do {                                                                     \
    if (::dynrpc::internal::Log::Enabled(                                  \
            ::dynrpc::internal::LogLevel::level, module)) {                \
      ::dynrpc::internal::Log::Write(::dynrpc::internal::LogLevel::level,  \
                                     module, ::absl::StrCat(__VA_ARGS__)); \
    }                                                                      \
  } while (0)

#endif  // DYNRPC_RUNTIME_SRC_CORE_LOG_H_
