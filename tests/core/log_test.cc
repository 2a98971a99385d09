// The log: DYN_LOG's levels and per-module thresholds, the line format,
// arguments not evaluated when filtered, and the server's start-up line.
#include "core/log.h"

#include <mutex>
#include <string>
#include <vector>

#include "dynrpc/dynrpc.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/echo_service.h"
#include "support/status_matchers.h"

namespace dynrpc::internal {
namespace {

using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

// Captures the log's lines while it lives; restores the defaults after.
class CapturedLog {
 public:
  explicit CapturedLog(const LogSpec& spec) {
    Log::Configure(spec);
    Log::SetSinkForTesting([this](std::string_view line) {
      std::lock_guard lock(mu_);
      lines_.emplace_back(line);
    });
  }
  ~CapturedLog() {
    Log::SetSinkForTesting(nullptr);
    Log::Configure(LogSpec());
  }
  std::vector<std::string> lines() {
    std::lock_guard lock(mu_);
    return lines_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

LogSpec Parse(std::string_view value) {
  absl::StatusOr<LogSpec> spec = ParseLogSpec(value);
  EXPECT_THAT(spec, IsOk());
  return spec.ok() ? *spec : LogSpec();
}

TEST(LogTest, LevelsFilterPerModuleByLongestPrefix) {
  CapturedLog log(
      Parse("warn, dynrpc::nats=debug, dynrpc::nats::client=error"));
  EXPECT_TRUE(Log::Enabled(LogLevel::kWarn, "dynrpc::tcp"));
  EXPECT_FALSE(Log::Enabled(LogLevel::kInfo, "dynrpc::tcp"));
  EXPECT_TRUE(Log::Enabled(LogLevel::kDebug, "dynrpc::nats"));
  EXPECT_FALSE(Log::Enabled(LogLevel::kTrace, "dynrpc::nats"));
  EXPECT_TRUE(Log::Enabled(LogLevel::kDebug, "dynrpc::nats::server"));
  EXPECT_FALSE(Log::Enabled(LogLevel::kWarn, "dynrpc::nats::client"));
  EXPECT_TRUE(Log::Enabled(LogLevel::kError, "dynrpc::nats::client"));
  // A prefix counts on "::" boundaries only.
  EXPECT_FALSE(Log::Enabled(LogLevel::kDebug, "dynrpc::natsx"));
}

TEST(LogTest, TheDefaultIsInfo) {
  EXPECT_EQ(Parse("").default_level, LogLevel::kInfo);
  EXPECT_EQ(Parse("TRACE").default_level, LogLevel::kTrace);
  EXPECT_EQ(Parse("dynrpc::http=error").default_level, LogLevel::kInfo);
}

TEST(LogTest, AMalformedValueNamesThePartAndTheLevels) {
  EXPECT_THAT(ParseLogSpec("verbose"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("DYN_LOG='verbose'"),
                             HasSubstr("'verbose' is not a level"),
                             HasSubstr("error, warn, info, debug or trace"))));
  EXPECT_THAT(ParseLogSpec("info,dynrpc::nats=loud"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'dynrpc::nats=loud' is not module=level")));
  EXPECT_THAT(Config::FromLookup([](std::string_view name)
                                     -> std::optional<std::string> {
                if (name == "DYN_LOG") return "chatty";
                return std::nullopt;
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("DYN_LOG='chatty'")));
}

TEST(LogTest, ALineHasTimeLevelModuleAndMessage) {
  CapturedLog log(Parse("info"));
  DYNRPC_LOG(kInfo, "dynrpc::test", "hello ", 42);
  DYNRPC_LOG(kDebug, "dynrpc::test", "not shown");
  std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0],
              ContainsRegex("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                            "[0-9]{2}\\.[0-9]{3}Z INFO dynrpc::test: hello 42\n$"));
}

TEST(LogTest, AFilteredRecordsArgumentsAreNotEvaluated) {
  CapturedLog log(Parse("info"));
  int evaluated = 0;
  auto expensive = [&] {
    ++evaluated;
    return std::string("payload");
  };
  DYNRPC_LOG(kDebug, "dynrpc::test", expensive());
  EXPECT_EQ(evaluated, 0);
  DYNRPC_LOG(kInfo, "dynrpc::test", expensive());
  EXPECT_EQ(evaluated, 1);
}

TEST(LogTest, AServerSaysItsPlaneAddressAndLimitsInOneLine) {
  CapturedLog log(Parse("info"));
  Runtime runtime(1);
  dynrpc::testing::EchoServiceImpl service;
  Config config;
  config.tcp.host = "127.0.0.1";
  config.discovery.register_servers = false;
  config.limits.max_handlers = 77;
  Server server(runtime.executor(), config);
  ASSERT_THAT(server.AddService(service), IsOk());
  ASSERT_THAT(server.Start(), IsOk());
  std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0],
              AllOf(HasSubstr("INFO dynrpc::server: serving "
                              "dynrpc.testing.EchoService on the tcp request "
                              "plane at " + server.address()),
                    HasSubstr("discovery: not registered"),
                    HasSubstr("DYN_TCP_MAX_MESSAGE_SIZE=33554432"),
                    HasSubstr("DYN_SERVER_MAX_HANDLERS=77")));
}

}  // namespace
}  // namespace dynrpc::internal
