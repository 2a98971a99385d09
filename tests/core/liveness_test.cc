// The core's liveness policy: its decisions at given times (Liveness), and
// the watcher that carries them out for a connection (WatchedConnection).
#include "core/liveness.h"

#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/use_future.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/polled_io.h"
#include "support/status_matchers.h"

namespace dynrpc::internal {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Action = Liveness::Action;
using std::chrono::milliseconds;

const Clock::time_point kT0 = Clock::now();

Liveness::Policy Probing(
    std::optional<Clock::duration> idle_close = std::nullopt) {
  return Liveness::Policy{.interval = milliseconds(100),
                          .timeout = milliseconds(50),
                          .idle_close = idle_close,
                          .probe_name = "PING",
                          .timeout_setting = "X_TIMEOUT=50 ms",
                          .idle_setting = "X_IDLE=1 s"};
}

std::shared_ptr<const Liveness::Policy> Shared(Liveness::Policy policy) {
  return std::make_shared<const Liveness::Policy>(std::move(policy));
}

Clock::time_point At(int ms) { return kT0 + milliseconds(ms); }

TEST(LivenessTest, APeerSilentWithCallsOpenIsProbedAfterTheInterval) {
  Liveness liveness(Shared(Probing()), kT0);
  ASSERT_TRUE(liveness.SetCallsOpen(true, kT0));
  Liveness::Step step = liveness.Next(At(10), kT0);
  EXPECT_EQ(step.action, Action::kWait);
  EXPECT_EQ(step.at, At(100));
  // Heard from meanwhile: the probe moves on.
  step = liveness.Next(At(100), At(60));
  EXPECT_EQ(step.action, Action::kWait);
  EXPECT_EQ(step.at, At(160));
  EXPECT_EQ(liveness.Next(At(160), At(60)).action, Action::kProbe);
}

TEST(LivenessTest, AnAnsweredProbeStartsTheIntervalAgain) {
  Liveness liveness(Shared(Probing()), kT0);
  ASSERT_TRUE(liveness.SetCallsOpen(true, kT0));
  ASSERT_EQ(liveness.Next(At(100), kT0).action, Action::kProbe);
  liveness.Probed(At(100));
  Liveness::Step step = liveness.Next(At(110), kT0);
  EXPECT_EQ(step.action, Action::kWait);
  EXPECT_EQ(step.at, At(150));  // the answer's deadline
  step = liveness.Next(At(130), At(120));  // the answer came at 120
  EXPECT_EQ(step.action, Action::kWait);
  EXPECT_EQ(step.at, At(220));
}

TEST(LivenessTest, AnUnansweredProbeLosesThePeerNamingTheSetting) {
  Liveness liveness(Shared(Probing()), kT0);
  ASSERT_TRUE(liveness.SetCallsOpen(true, kT0));
  ASSERT_EQ(liveness.Next(At(100), kT0).action, Action::kProbe);
  liveness.Probed(At(100));
  EXPECT_EQ(liveness.Next(At(149), kT0).action, Action::kWait);
  EXPECT_EQ(liveness.Next(At(150), kT0).action, Action::kLost);
  EXPECT_THAT(liveness.LostError("the server at 1.2.3.4:5"),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("the server at 1.2.3.4:5"),
                             HasSubstr("X_TIMEOUT=50 ms"),
                             HasSubstr("PING"))));
}

TEST(LivenessTest, AConnectionIdleBeforeItsFirstCallIsJudgedFromThatCall) {
  Liveness liveness(Shared(Probing()), kT0);
  // Nothing heard for a long time, but no call was open to ask for it.
  ASSERT_TRUE(liveness.SetCallsOpen(true, At(10'000)));
  Liveness::Step step = liveness.Next(At(10'000), kT0);
  EXPECT_EQ(step.action, Action::kWait);
  EXPECT_EQ(step.at, At(10'100));
}

TEST(LivenessTest, WithoutCallsNothingIsProbedAndNothingLost) {
  Liveness liveness(Shared(Probing()), kT0);
  Liveness::Step step = liveness.Next(At(1'000'000), kT0);
  EXPECT_EQ(step.action, Action::kWait);
  EXPECT_EQ(step.at, Clock::time_point::max());
  // A probe out when the last call ends is forgotten.
  ASSERT_TRUE(liveness.SetCallsOpen(true, kT0));
  ASSERT_EQ(liveness.Next(At(100), kT0).action, Action::kProbe);
  liveness.Probed(At(100));
  ASSERT_TRUE(liveness.SetCallsOpen(false, At(120)));
  EXPECT_EQ(liveness.Next(At(500), kT0).action, Action::kWait);
  EXPECT_FALSE(liveness.SetCallsOpen(false, At(600)));  // no change
}

TEST(LivenessTest, AConnectionUnusedForTheIdleTimeoutCloses) {
  Liveness liveness(Shared(Probing(milliseconds(1000))), kT0);
  ASSERT_TRUE(liveness.SetCallsOpen(true, At(0)));
  ASSERT_TRUE(liveness.SetCallsOpen(false, At(300)));
  Liveness::Step step = liveness.Next(At(400), kT0);
  EXPECT_EQ(step.action, Action::kWait);
  EXPECT_EQ(step.at, At(1300));
  EXPECT_EQ(liveness.Next(At(1300), kT0).action, Action::kIdle);
  EXPECT_THAT(liveness.IdleError(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("X_IDLE=1 s")));
  // In use again: never idle while calls are open.
  ASSERT_TRUE(liveness.SetCallsOpen(true, At(1300)));
  EXPECT_EQ(liveness.Next(At(5000), At(4990)).action, Action::kWait);
}

TEST(LivenessTest, AZeroIdleTimeoutClosesAsSoonAsTheLastCallEnds) {
  Liveness liveness(Shared(Probing(Clock::duration::zero())), kT0);
  EXPECT_EQ(liveness.Next(kT0, kT0).action, Action::kIdle);  // never used
  ASSERT_TRUE(liveness.SetCallsOpen(true, At(0)));
  EXPECT_EQ(liveness.Next(At(10), At(10)).action, Action::kWait);
  ASSERT_TRUE(liveness.SetCallsOpen(false, At(20)));
  EXPECT_EQ(liveness.Next(At(20), At(10)).action, Action::kIdle);
}

TEST(LivenessTest, HeartbeatsGoEveryIntervalWhateverIsHeard) {
  Liveness::Policy policy = Probing();
  policy.peer_answers_probes = false;
  Liveness liveness(Shared(policy), kT0);
  ASSERT_TRUE(liveness.SetCallsOpen(true, kT0));
  // The first at once, then every interval though the peer is heard.
  ASSERT_EQ(liveness.Next(kT0, kT0).action, Action::kProbe);
  liveness.Probed(kT0);
  Liveness::Step step = liveness.Next(At(50), At(50));
  EXPECT_EQ(step.action, Action::kWait);
  EXPECT_EQ(step.at, At(100));
  ASSERT_EQ(liveness.Next(At(100), At(99)).action, Action::kProbe);
  liveness.Probed(At(100));
  ASSERT_EQ(liveness.Next(At(200), At(99)).action, Action::kProbe);
  liveness.Probed(At(200));
  // Lost once silent for interval + timeout.
  EXPECT_EQ(liveness.Next(At(248), At(99)).action, Action::kWait);
  EXPECT_EQ(liveness.Next(At(249), At(99)).action, Action::kLost);
}

TEST(CallLivenessTest, BeatsAtOnceThenEachIntervalAndLosesASilentPeer) {
  Liveness::Policy policy = Probing();
  policy.peer_answers_probes = false;
  policy.interval = std::chrono::hours(1);
  CallLiveness patient(Shared(policy));
  EXPECT_EQ(patient.Tick(), Action::kProbe);
  EXPECT_EQ(patient.Tick(), Action::kWait);  // the next is an hour away
  patient.Heard();
  EXPECT_EQ(patient.Tick(), Action::kWait);

  policy.interval = policy.timeout = Clock::duration::zero();
  CallLiveness impatient(Shared(policy));
  EXPECT_EQ(impatient.Tick(), Action::kLost);
  EXPECT_THAT(impatient.LostError("the caller"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("the caller stopped answering")));
}

// A connection whose peer answers the first `answers` probes at once.
class FakeConnection final : public WatchedConnection {
 public:
  FakeConnection(Liveness::Policy policy, asio::any_io_executor executor,
                 int answers)
      : WatchedConnection(std::move(policy), std::move(executor)),
        answers_(answers) {}

  std::vector<Clock::time_point> probes;
  std::optional<absl::Status> lost;
  Clock::time_point lost_at;
  int idle_refusals = 0;  // CloseIdle() says a call took it this often
  std::optional<absl::Status> closed_idle;
  bool done = false;

 protected:
  void SendProbe() override {
    probes.push_back(Clock::now());
    if (answers_-- > 0) heard_ = Clock::now();
  }
  void Lost(absl::Status why) override {
    lost = std::move(why);
    lost_at = Clock::now();
  }
  bool CloseIdle(absl::Status why) override {
    if (idle_refusals-- > 0) return false;
    closed_idle = std::move(why);
    return true;
  }
  bool WatchingDone() override { return done; }
  std::string peer_name() const override { return "the fake peer"; }
  Clock::time_point last_heard() const override {
    ++looks;
    return heard_;
  }

 public:
  mutable int looks = 0;  // the watcher's decisions

 private:
  int answers_;
  Clock::time_point heard_ = Clock::now();
};

TEST(WatchedConnectionTest, ProbesWhileAnsweredAndEndsWhenNot) {
  asio::io_context io;
  Liveness::Policy policy = Probing();
  policy.interval = milliseconds(5);
  policy.timeout = milliseconds(20);
  auto connection =
      std::make_shared<FakeConnection>(policy, io.get_executor(), 3);
  connection->SetCallsOpen(true);
  auto watch = asio::co_spawn(io, WatchedConnection::Watch(connection),
                              asio::use_future);
  io.run();  // until the watch ends
  ASSERT_TRUE(dynrpc::testing::Ready(watch));
  ASSERT_EQ(connection->probes.size(), 4u);  // three answered, one not
  ASSERT_TRUE(connection->lost.has_value());
  EXPECT_THAT(*connection->lost,
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("the fake peer"),
                             HasSubstr("X_TIMEOUT=50 ms"))));
  EXPECT_GE(connection->lost_at - connection->probes.back(), policy.timeout);
}

TEST(WatchedConnectionTest, AnIdleConnectionClosesUnlessACallTookIt) {
  asio::io_context io;
  auto connection = std::make_shared<FakeConnection>(
      Probing(milliseconds(10)), io.get_executor(), 0);
  connection->idle_refusals = 1;
  auto watch = asio::co_spawn(io, WatchedConnection::Watch(connection),
                              asio::use_future);
  io.run();
  ASSERT_TRUE(dynrpc::testing::Ready(watch));
  EXPECT_EQ(connection->idle_refusals, -1);  // asked again after the refusal
  ASSERT_TRUE(connection->closed_idle.has_value());
  EXPECT_THAT(*connection->closed_idle, StatusIs(absl::StatusCode::kUnavailable,
                                                 HasSubstr("X_IDLE=1 s")));
  EXPECT_TRUE(connection->probes.empty());
  EXPECT_FALSE(connection->lost.has_value());
}

TEST(WatchedConnectionTest, StopWatchingEndsAWatcherWaitingForACall) {
  dynrpc::testing::PolledIo io;
  auto connection = std::make_shared<FakeConnection>(
      Probing(), io.io().get_executor(), 0);
  std::future<void> watch = io.Start(WatchedConnection::Watch(connection));
  io.Poll();
  EXPECT_FALSE(dynrpc::testing::Ready(watch));  // no calls: waits for ever
  connection->done = true;
  connection->StopWatching();
  io.Poll();
  EXPECT_TRUE(dynrpc::testing::Ready(watch));
  EXPECT_TRUE(connection->probes.empty());
}

TEST(WatchedConnectionTest, CallsOneAtATimeDoNotWakeTheWatcher) {
  dynrpc::testing::PolledIo io;
  auto connection = std::make_shared<FakeConnection>(
      Probing(), io.io().get_executor(), 0);
  std::future<void> watch = io.Start(WatchedConnection::Watch(connection));
  const int idle_looks = connection->looks;
  connection->SetCallsOpen(true);  // it waited for ever: woken
  io.Poll();
  const int busy_looks = connection->looks;
  EXPECT_GT(busy_looks, idle_looks);
  // It now waits until the probe is due; calls coming and going meanwhile
  // need nothing earlier.
  for (int i = 0; i < 100; ++i) {
    connection->SetCallsOpen(false);
    connection->SetCallsOpen(true);
  }
  io.Poll();
  EXPECT_EQ(connection->looks, busy_looks);
  connection->done = true;
  connection->StopWatching();
  io.Poll();
  EXPECT_TRUE(dynrpc::testing::Ready(watch));
}

}  // namespace
}  // namespace dynrpc::internal
