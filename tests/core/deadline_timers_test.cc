// The core's table of call deadlines on one timer (core/deadline_timers.h).
#include "core/deadline_timers.h"

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dynrpc::internal {
namespace {

namespace asio = boost::asio;
using std::chrono::hours;
using std::chrono::milliseconds;
using ::testing::ElementsAre;

// Records when it expired, in the order targets expired.
struct Recorder final : DeadlineTimers::Target {
  Recorder(int id, std::vector<int>& order) : id(id), order(order) {}
  void Expired() override {
    at = Clock::now();
    order.push_back(id);
  }
  const int id;
  std::vector<int>& order;
  std::optional<Clock::time_point> at;
};

// A deadline at `at` whose expiry appends `id` to `order`.
DeadlineTimers::Handle AddRecorder(DeadlineTimers& deadlines,
                                   Clock::time_point at, int id,
                                   std::vector<int>& order) {
  return deadlines.Add(at, std::make_shared<Recorder>(id, order));
}

// Runs `io` until `order` holds `n` expiries (the timer's real time).
void RunUntil(asio::io_context& io, const std::vector<int>& order,
              std::size_t n) {
  while (order.size() < n) io.run_one();
}

TEST(DeadlineTimersTest, ATargetExpiresOnceItsDeadlineHasPassed) {
  asio::io_context io;
  DeadlineTimers deadlines(io.get_executor());
  std::vector<int> order;
  auto target = std::make_shared<Recorder>(1, order);
  const Clock::time_point at = Clock::now() + milliseconds(20);
  DeadlineTimers::Handle handle = deadlines.Add(at, target);
  RunUntil(io, order, 1);
  ASSERT_TRUE(target->at.has_value());
  EXPECT_GE(*target->at, at);
  EXPECT_EQ(deadlines.pending(), 0u);
}

TEST(DeadlineTimersTest, TargetsExpireInDeadlineOrderWhateverTheOrderAdded) {
  asio::io_context io;
  DeadlineTimers deadlines(io.get_executor());
  std::vector<int> order;
  const Clock::time_point now = Clock::now();
  // The later first: the earlier one must re-arm the timer.
  DeadlineTimers::Handle late =
      AddRecorder(deadlines, now + milliseconds(40), 40, order);
  DeadlineTimers::Handle early =
      AddRecorder(deadlines, now + milliseconds(10), 10, order);
  DeadlineTimers::Handle middle =
      AddRecorder(deadlines, now + milliseconds(25), 25, order);
  RunUntil(io, order, 3);
  EXPECT_THAT(order, ElementsAre(10, 25, 40));
}

TEST(DeadlineTimersTest, ARemovedDeadlineNeverExpires) {
  asio::io_context io;
  DeadlineTimers deadlines(io.get_executor());
  std::vector<int> order;
  const Clock::time_point now = Clock::now();
  DeadlineTimers::Handle removed =
      AddRecorder(deadlines, now + milliseconds(5), 1, order);
  DeadlineTimers::Handle dropped =
      AddRecorder(deadlines, now + milliseconds(10), 2, order);
  DeadlineTimers::Handle kept =
      AddRecorder(deadlines, now + milliseconds(30), 3, order);
  removed.Cancel();
  { DeadlineTimers::Handle gone = std::move(dropped); }  // destroyed
  EXPECT_EQ(deadlines.pending(), 1u);
  RunUntil(io, order, 1);
  // The later deadline expired, so the earlier ones would have by then.
  EXPECT_THAT(order, ElementsAre(3));
}

// The point of the table: a call that ends before its deadline costs no
// handler (a cancelled Asio timer posts one), and a deadline later than the
// armed one does not touch the timer.
TEST(DeadlineTimersTest, EndingBeforeTheDeadlineRunsNoHandler) {
  asio::io_context io;
  DeadlineTimers deadlines(io.get_executor());
  std::vector<int> order;
  DeadlineTimers::Handle first =
      AddRecorder(deadlines, Clock::now() + hours(1), 1, order);
  for (int i = 0; i < 100; ++i) {
    DeadlineTimers::Handle call =
        AddRecorder(deadlines, Clock::now() + hours(2), 2, order);
  }
  first.Cancel();
  EXPECT_EQ(io.poll(), 0u);
  EXPECT_TRUE(order.empty());

  // What a timer per call costs, for contrast.
  asio::steady_timer timer(io, hours(1));
  timer.async_wait([](const boost::system::error_code&) {});
  timer.cancel();
  io.restart();
  EXPECT_EQ(io.poll(), 1u);
}

TEST(DeadlineTimersTest, RemovedDeadlinesAreNotHeldBeyondTheQueueBound) {
  asio::io_context io;
  DeadlineTimers deadlines(io.get_executor());
  std::vector<int> order;
  std::vector<DeadlineTimers::Handle> live;
  for (int i = 0; i < 10; ++i) {
    live.push_back(AddRecorder(deadlines, Clock::now() + hours(1), i, order));
  }
  for (int i = 0; i < 100000; ++i) {
    DeadlineTimers::Handle call =
        AddRecorder(deadlines, Clock::now() + hours(2), -1, order);
  }
  EXPECT_EQ(deadlines.pending(), 10u);
  EXPECT_LE(deadlines.queued(), 2 * 10u + 64 + 1);
}

TEST(DeadlineTimersTest, DestroyingTheTableDropsWhatIsPending) {
  asio::io_context io;
  std::vector<int> order;
  DeadlineTimers::Handle outliving;
  {
    DeadlineTimers deadlines(io.get_executor());
    outliving =
        AddRecorder(deadlines, Clock::now() + milliseconds(10), 1, order);
  }
  // Nothing is left to wait for: run() returns once the cancelled wait has
  // run, without the deadline's expiry.
  io.run();
  EXPECT_TRUE(order.empty());
  outliving.Cancel();  // a handle may outlive its table
}

}  // namespace
}  // namespace dynrpc::internal
