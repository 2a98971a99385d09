// NatsServerProcess and SharedNatsUrl: the NATS plane's tests rely on them
// to start, configure, restart and stop nats-server.
#include "support/nats_server.h"

#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace dynrpc::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

std::unique_ptr<NatsServerProcess> MustStart(std::string extra_config = "") {
  absl::StatusOr<std::unique_ptr<NatsServerProcess>> server =
      NatsServerProcess::Start(std::move(extra_config));
  EXPECT_THAT(server, IsOk());
  return server.ok() ? *std::move(server) : nullptr;
}

uint16_t PortOf(const std::string& url) {
  return static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
}

TEST(NatsServerProcessTest, ListensOnLoopbackAndGreetsWithInfo) {
  std::unique_ptr<NatsServerProcess> server = MustStart();
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->url(), MatchesRegex("nats://127\\.0\\.0\\.1:[0-9]+"));
  EXPECT_EQ(PortOf(server->url()), server->port());
  EXPECT_GT(server->pid(), 0);
  // nats-server's defaults: 1 MB messages, no authentication.
  EXPECT_THAT(server->info(), HasSubstr("\"max_payload\":1048576"));
  EXPECT_THAT(server->info(), Not(HasSubstr("\"auth_required\":true")));
  // Anyone connecting is greeted the same way.
  absl::StatusOr<std::string> info = ReadNatsInfo(server->port());
  ASSERT_THAT(info, IsOk());
  EXPECT_THAT(*info, HasSubstr("\"port\":" + std::to_string(server->port())));
}

TEST(NatsServerProcessTest, ExtraConfigurationApplies) {
  std::unique_ptr<NatsServerProcess> server =
      MustStart("max_payload: 8MB\nauthorization { token: \"s3cret\" }");
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->info(), HasSubstr("\"max_payload\":8388608"));
  EXPECT_THAT(server->info(), HasSubstr("\"auth_required\":true"));
}

TEST(NatsServerProcessTest, TwoServersListenOnDifferentPorts) {
  std::unique_ptr<NatsServerProcess> a = MustStart();
  std::unique_ptr<NatsServerProcess> b = MustStart();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->port(), b->port());
}

TEST(NatsServerProcessTest, RestartKeepsThePortAndTheConfiguration) {
  std::unique_ptr<NatsServerProcess> server = MustStart("max_payload: 4MB");
  ASSERT_NE(server, nullptr);
  const std::string url = server->url();
  const pid_t first = server->pid();
  ASSERT_THAT(server->Restart(), IsOk());
  EXPECT_EQ(server->url(), url);
  EXPECT_NE(server->pid(), first);
  EXPECT_EQ(::kill(first, 0), -1) << "the first process still runs";
  EXPECT_THAT(server->info(), HasSubstr("\"max_payload\":4194304"));
  EXPECT_THAT(ReadNatsInfo(server->port()), IsOk());
  // And again: a restart of a restarted server.
  ASSERT_THAT(server->Restart(), IsOk());
  EXPECT_EQ(server->url(), url);
}

TEST(NatsServerProcessTest, StopEndsTheProcessAndIsIdempotent) {
  std::unique_ptr<NatsServerProcess> server = MustStart();
  ASSERT_NE(server, nullptr);
  const pid_t pid = server->pid();
  server->Stop();
  EXPECT_EQ(server->pid(), -1);
  // Reaped, not a zombie: the pid is gone.
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_THAT(ReadNatsInfo(server->port()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(server->log(), HasSubstr("Server Exiting"));
  server->Stop();
  // A stopped server starts again on its port.
  ASSERT_THAT(server->Restart(), IsOk());
  EXPECT_THAT(ReadNatsInfo(server->port()), IsOk());
}

TEST(NatsServerProcessTest, ABadConfigurationFailsWithTheServersLog) {
  EXPECT_THAT(NatsServerProcess::Start("max_payload: {{"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("exited before it was ready")));
}

TEST(NatsServerProcessTest, SharedServerHasTheSuitesSettings) {
  // $NATS_SERVER (./scripts/test's, from tests/nats/nats-server.conf) or
  // the fallback, which reads the same file: either way 8 MB messages.
  std::string url = SharedNatsUrl();
  ASSERT_THAT(url, MatchesRegex("nats://127\\.0\\.0\\.1:[0-9]+"));
  EXPECT_EQ(SharedNatsUrl(), url);  // one per process
  absl::StatusOr<std::string> info = ReadNatsInfo(PortOf(url));
  ASSERT_THAT(info, IsOk());
  EXPECT_THAT(*info, HasSubstr("\"max_payload\":8388608"));
}

TEST(NatsServerProcessTest, UniqueNamespacesDiffer) {
  std::string a = UniqueNatsNamespace(), b = UniqueNatsNamespace();
  EXPECT_NE(a, b);
  EXPECT_THAT(a, MatchesRegex("test_[0-9]+_[0-9]+"));
}

}  // namespace
}  // namespace dynrpc::testing
