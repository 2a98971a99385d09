#include "core/stream_state.h"

#include <future>
#include <memory>
#include <string>

#include "boost/asio/bind_cancellation_slot.hpp"
#include "boost/asio/cancellation_signal.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/use_future.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/polled_io.h"
#include "support/status_matchers.h"

namespace dynrpc::internal {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::Ready;
using ::dynrpc::testing::StatusIs;

constexpr std::size_t kMax = 64 * 1024;
constexpr int64_t kWindow = StreamState::kInitialWindow;
constexpr std::size_t kOverhead = StreamState::kMessageOverhead;

class StreamStateTest : public ::testing::Test,
                        protected ::dynrpc::testing::PolledIo {
 protected:
  StreamState state_{kMax};
};

TEST_F(StreamStateTest, WriterWaitsForWindowAndResumesOnGrant) {
  // Spend the window: a message may be sent while it is positive.
  const std::size_t message = 60 * 1024;
  int sent = 0;
  for (;;) {
    auto f = Start(state_.ReserveSend(message));
    if (!Ready(f)) {
      // Blocked: exactly as many as the window allows went out.
      EXPECT_EQ(sent,
                (kWindow + message + kOverhead - 1) / (message + kOverhead));
      // The window went negative by part of a message; a grant of one
      // message's cost makes it positive again.
      state_.AddSendWindow(message + kOverhead);
      Poll();
      ASSERT_TRUE(Ready(f));
      EXPECT_THAT(f.get(), IsOk());
      return;
    }
    ASSERT_THAT(f.get(), IsOk());
    ++sent;
    ASSERT_LT(sent, 1000) << "the window never ran out";
  }
}

// A peer that grants more than it could have read (4 GiB at a time) does not
// let the writer send more than a window ahead of it.
TEST_F(StreamStateTest, GrantsBeyondTheWindowAreCappedAtTheWindow) {
  for (int i = 0; i < 3; ++i) state_.AddSendWindow(0xffffffffu);
  const std::size_t message = 60 * 1024;
  int sent = 0;
  for (; sent < 1000; ++sent) {
    auto f = Start(state_.ReserveSend(message));
    if (!Ready(f)) break;
    ASSERT_THAT(f.get(), IsOk());
  }
  EXPECT_EQ(sent, (kWindow + message + kOverhead - 1) / (message + kOverhead));
  state_.End(CallResult(absl::CancelledError("done")));
  Poll();
}

TEST_F(StreamStateTest, ReadingGrantsWindowBackInHalves) {
  const std::string message(16 * 1024, 'm');
  int delivered = 0;
  while ((delivered + 1) * (message.size() + kOverhead) <= kWindow) {
    ASSERT_TRUE(state_.Deliver(message));
    ++delivered;
  }
  uint64_t granted = 0;
  int grants = 0;
  for (int i = 0; i < delivered; ++i) {
    uint32_t grant = 0;
    auto f = Start(state_.Read(&grant));
    ASSERT_TRUE(Ready(f));
    ASSERT_THAT(f.get(), IsOk());
    if (grant > 0) {
      ++grants;
      granted += grant;
      EXPECT_GE(grant, static_cast<uint32_t>(kWindow / 2));
    }
  }
  EXPECT_EQ(grants, 1);  // one WINDOW frame for a window's worth of reads
  EXPECT_LE(granted, static_cast<uint64_t>(kWindow));
}

TEST_F(StreamStateTest, APeerOverrunningItsWindowIsRefused) {
  const std::string message(kMax, 'x');
  int accepted = 0;
  while (state_.Deliver(message)) {
    ++accepted;
    ASSERT_LT(accepted, 1000) << "no bound";
  }
  // A window plus the two messages of slack, no more.
  EXPECT_LE(static_cast<int64_t>(accepted) * (kMax + kOverhead),
            kWindow + 2 * static_cast<int64_t>(kMax + kOverhead));
}

TEST_F(StreamStateTest, EndWakesEveryWaiterAndCancelDropsUnread) {
  uint32_t grant1 = 0, grant2 = 0;
  auto reading = Start(state_.Read(&grant1));
  auto finishing = Start(state_.WaitEnd(&grant2));
  ASSERT_FALSE(Ready(reading));
  ASSERT_FALSE(Ready(finishing));
  state_.End(CallResult(absl::CancelledError("gone")), /*discard_unread=*/true);
  Poll();
  ASSERT_TRUE(Ready(reading));
  ASSERT_TRUE(Ready(finishing));
  EXPECT_THAT(reading.get(), StatusIs(absl::StatusCode::kCancelled));
  std::optional<CallResult> end = finishing.get();
  ASSERT_TRUE(end.has_value());
  EXPECT_THAT(end->status, StatusIs(absl::StatusCode::kCancelled));

  // Delivered before a cancelling end: dropped, not read.
  StreamState other(kMax);
  ASSERT_TRUE(other.Deliver("unread"));
  other.End(CallResult(absl::CancelledError("gone")), /*discard_unread=*/true);
  uint32_t grant = 0;
  auto f = Start(other.Read(&grant));
  ASSERT_TRUE(Ready(f));
  EXPECT_THAT(f.get(), StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(StreamStateTest, AnOkEndDeliversWhatCameBeforeIt) {
  ASSERT_TRUE(state_.Deliver("one"));
  ASSERT_TRUE(state_.Deliver("two"));
  state_.End(CallResult(absl::OkStatus()));
  for (const char* want : {"one", "two"}) {
    uint32_t grant = 0;
    auto f = Start(state_.Read(&grant));
    absl::StatusOr<std::optional<std::string>> got = f.get();
    ASSERT_THAT(got, IsOk());
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ(**got, want);
  }
  uint32_t grant = 0;
  auto end = Start(state_.Read(&grant));
  absl::StatusOr<std::optional<std::string>> last = end.get();
  ASSERT_THAT(last, IsOk());
  EXPECT_FALSE(last->has_value());
}

// A unary call's wait for its end: End() resumes it through a posted
// completion, or, asked to (Resume::kInline) from its own executor, in place:
// the waiter has run by the time End() returns.
TEST_F(StreamStateTest, EndResumesTheUnaryWaiterInPlaceWhenAsked) {
  for (StreamState::Resume resume :
       {StreamState::Resume::kPost, StreamState::Resume::kInline}) {
    StreamState state(kMax);
    std::future<CallResult> end = Start(state.TakeEnd());
    ASSERT_FALSE(Ready(end));
    bool resumed_within_end = false;
    asio::post(io(), [&] {
      state.End(CallResult(absl::NotFoundError("gone")),
                /*discard_unread=*/false, resume);
      resumed_within_end = Ready(end);
    });
    Poll();
    EXPECT_EQ(resumed_within_end, resume == StreamState::Resume::kInline);
    ASSERT_TRUE(Ready(end));
    EXPECT_THAT(end.get().status, StatusIs(absl::StatusCode::kNotFound));
  }
}

// Cancelling the wait yields CANCELLED and leaves the stream going: a later
// wait takes the end when it comes.
TEST_F(StreamStateTest, ACancelledEndWaitLeavesTheStreamGoing) {
  asio::cancellation_signal cancel;
  std::future<CallResult> first = asio::co_spawn(
      io(), state_.TakeEnd(),
      asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
  Poll();
  ASSERT_FALSE(Ready(first));
  cancel.emit(asio::cancellation_type::terminal);
  Poll();
  ASSERT_TRUE(Ready(first));
  EXPECT_THAT(first.get().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_FALSE(state_.ended());

  std::future<CallResult> second = Start(state_.TakeEnd());
  ASSERT_FALSE(Ready(second));
  state_.End(CallResult(absl::OkStatus()));
  Poll();
  ASSERT_TRUE(Ready(second));
  EXPECT_THAT(second.get().status, IsOk());
}

// The wait holds its coroutine's handler, which owns the coroutine's frame,
// which here owns the stream: an io_context destroyed meanwhile destroys
// the handler (and so the frame and the stream), as it does its own pending
// operations, instead of leaving the three to keep each other alive.
TEST(StreamStateShutdownTest, AnEndWaitPendingAtShutdownIsDestroyed) {
  std::weak_ptr<StreamState> watched;
  {
    asio::io_context io;
    auto state = std::make_shared<StreamState>(kMax);
    watched = state;
    asio::co_spawn(
        io,
        [](std::shared_ptr<StreamState> state) -> asio::awaitable<void> {
          (void)co_await state->TakeEnd();
        }(std::move(state)),
        [](std::exception_ptr) {});
    io.poll();
    ASSERT_FALSE(watched.expired()) << "the frame should be waiting";
  }
  EXPECT_TRUE(watched.expired());
}

// An io_context destroyed while a coroutine waits on a stream destroys the
// coroutine's frame; what the frame owns may end that stream (a client
// stream's destructor cancels it), which wakes its waiters. The destroyed
// wait must not be among them: Boost 1.81's channel, its receive abandoned
// by the shutdown, crashes on a send (seen with an etcd watch pending when
// its runtime went).
TEST(StreamStateShutdownTest, AFrameDestroyedWhileWaitingEndsItsStreamSafely) {
  auto state = std::make_shared<StreamState>(kMax);
  bool waiting = false;
  {
    asio::io_context io;
    // Ends the stream when the frame that owns it is destroyed.
    struct EndsOnDestruction {
      std::shared_ptr<StreamState> state;
      ~EndsOnDestruction() {
        if (state) state->End(CallResult(absl::CancelledError("gone")));
      }
    };
    asio::co_spawn(
        io,
        [](std::shared_ptr<StreamState> state,
           bool& waiting) -> asio::awaitable<void> {
          EndsOnDestruction owner{state};
          uint32_t grant = 0;
          waiting = true;
          (void)co_await state->Read(&grant);
          waiting = false;  // never: the io_context goes first
        }(state, waiting),
        [](std::exception_ptr) {});
    io.poll();
    ASSERT_TRUE(waiting);
  }  // ~io_context destroys the waiting frame
  EXPECT_TRUE(waiting);
  EXPECT_THAT(state->end_status(), StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace dynrpc::internal
