// The core's client call over a fake framed plane: what the core sends
// through a plane's ClientLink, in what order, and when, whatever the plane.
#include "core/client_call.h"

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/bind_cancellation_slot.hpp"
#include "boost/asio/cancellation_signal.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/use_awaitable.hpp"
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
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr std::size_t kMax = 1024;

// What the plane was asked to do, in order.
using Log = std::vector<std::string>;

class FakeLink final : public ClientLink {
 public:
  explicit FakeLink(std::shared_ptr<Log> log) : log_(std::move(log)) {}
  absl::Status CheckMessage(std::size_t bytes) const override {
    if (bytes <= kMax) return absl::OkStatus();
    return absl::ResourceExhaustedError("over kMax");
  }
  absl::Status SendMessage(std::string message, bool compressed) override {
    log_->push_back("message " + message);
    if (message == "refused") return absl::ResourceExhaustedError("refused");
    return absl::OkStatus();
  }
  void SendHalfClose() override { log_->push_back("half-close"); }
  void SendWindow(uint32_t bytes) override {
    log_->push_back("window " + std::to_string(bytes));
  }
  void SendCancel() override { log_->push_back("cancel"); }
  void Release() override { log_->push_back("release"); }

 private:
  std::shared_ptr<Log> log_;
};

// A plane that opens at once, or (hold_open) only when the test lets it or
// the core cancels the opening.
class FakePlane final : public FramedPlaneClient {
 public:
  explicit FakePlane(asio::any_io_executor executor)
      : executor_(std::move(executor)), let_open_(executor_, 1) {}

  asio::awaitable<absl::StatusOr<std::shared_ptr<ClientLink>>> Open(
      std::string_view target, CallRequest& head, std::string* first_message,
      bool streaming, std::shared_ptr<StreamState> state,
      OpenCancel& cancel) override {
    std::string entry = "open " + head.method;
    if (first_message != nullptr) entry += " with " + *first_message;
    if (hold_open) {
      std::shared_ptr<Signal> stop = cancel.Arm(executor_);
      auto let = [this]() -> asio::awaitable<absl::Status> {
        (void)co_await let_open_.async_receive(
            asio::as_tuple(asio::use_awaitable));
        co_return absl::OkStatus();
      };
      absl::Status waited = co_await WithDeadline(
          let(), Clock::time_point::max(), "", nullptr, stop);
      if (!waited.ok() && !open_despite_cancel) {
        log->push_back("open abandoned");
        co_return waited;
      }
    }
    log->push_back(entry);
    states.push_back(std::move(state));
    co_return std::make_shared<FakeLink>(log);
  }
  std::size_t max_message_size() const override { return kMax; }
  const asio::any_io_executor& executor() const override { return executor_; }
  Clock::duration default_timeout() const override {
    return std::chrono::seconds(10);
  }
  std::string_view default_timeout_variable() const override {
    return "FAKE_TIMEOUT";
  }

  void LetOpen() { let_open_.try_send(boost::system::error_code{}); }

  const std::shared_ptr<Log> log = std::make_shared<Log>();
  // The states of the calls it opened, for the test to play the reader.
  std::vector<std::shared_ptr<StreamState>> states;
  bool hold_open = false;
  bool open_despite_cancel = false;

 private:
  asio::any_io_executor executor_;
  Signal let_open_;
};

class ClientCallTest : public ::testing::Test,
                       protected ::dynrpc::testing::PolledIo {
 protected:
  static CallRequest Head(std::string method) {
    CallRequest head;
    head.method = std::move(method);
    head.deadline = Clock::now() + std::chrono::seconds(60);
    return head;
  }
  static CallResult Ok(std::string payload) {
    CallResult result;
    result.has_message = true;
    result.payload = std::move(payload);
    return result;
  }

  std::shared_ptr<FakePlane> plane_ =
      std::make_shared<FakePlane>(io().get_executor());
};

TEST_F(ClientCallTest, UnarySendsItsHeadWithTheMessageAndReleasesOnce) {
  auto hook = std::make_shared<CancelHook>();
  CallRequest request = Head("/s/M");
  request.payload = "hi";
  auto call = Start(plane_->Unary("t", std::move(request), hook));
  ASSERT_FALSE(Ready(call));
  ASSERT_EQ(plane_->states.size(), 1u);
  plane_->states[0]->End(Ok("reply"));
  Poll();
  ASSERT_TRUE(Ready(call));
  CallResult result = call.get();
  EXPECT_THAT(result.status, IsOk());
  EXPECT_EQ(result.payload, "reply");
  hook->Cancel(absl::CancelledError("late"));  // after the end: nothing
  EXPECT_THAT(*plane_->log, ElementsAre("open /s/M with hi", "release"));
}

TEST_F(ClientCallTest, UnaryCancelledBeforeItIsSentNeverOpens) {
  auto hook = std::make_shared<CancelHook>();
  hook->Cancel(absl::CancelledError("early"));
  auto call = Start(plane_->Unary("t", Head("/s/M"), hook));
  ASSERT_TRUE(Ready(call));
  EXPECT_THAT(call.get().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(*plane_->log, IsEmpty());
}

TEST_F(ClientCallTest, UnaryCancelledOnceOpenTellsTheServerOnce) {
  auto hook = std::make_shared<CancelHook>();
  auto call = Start(plane_->Unary("t", Head("/s/M"), hook));
  hook->Cancel(absl::DeadlineExceededError("deadline"));
  hook->Cancel(absl::CancelledError("again"));
  Poll();
  ASSERT_TRUE(Ready(call));
  EXPECT_THAT(call.get().status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(*plane_->log,
              ElementsAre("open /s/M with ", "cancel", "release"));
}

TEST_F(ClientCallTest, UnaryCancelledWhileOpeningStopsTheOpening) {
  plane_->hold_open = true;
  auto hook = std::make_shared<CancelHook>();
  auto call = Start(plane_->Unary("t", Head("/s/M"), hook));
  ASSERT_FALSE(Ready(call));
  hook->Cancel(absl::CancelledError("by the caller"));
  Poll();
  ASSERT_TRUE(Ready(call));
  EXPECT_THAT(call.get().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(*plane_->log, ElementsAre("open abandoned"));
}

TEST_F(ClientCallTest, UnaryCancelledAsItOpensIsCancelledAfterItsHead) {
  plane_->hold_open = true;
  plane_->open_despite_cancel = true;  // the head went out regardless
  auto hook = std::make_shared<CancelHook>();
  auto call = Start(plane_->Unary("t", Head("/s/M"), hook));
  hook->Cancel(absl::CancelledError("by the caller"));
  Poll();
  ASSERT_TRUE(Ready(call));
  EXPECT_THAT(call.get().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(*plane_->log,
              ElementsAre("open /s/M with ", "cancel", "release"));
}

TEST_F(ClientCallTest, UnaryWhoseCoroutineIsCancelledCancelsTheCall) {
  auto hook = std::make_shared<CancelHook>();
  asio::cancellation_signal signal;
  auto call = asio::co_spawn(
      io(), plane_->Unary("t", Head("/s/M"), hook),
      asio::bind_cancellation_slot(signal.slot(), asio::use_future));
  Poll();
  ASSERT_FALSE(Ready(call));
  signal.emit(asio::cancellation_type::terminal);
  Poll();
  ASSERT_TRUE(Ready(call));
  EXPECT_THAT(call.get().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(*plane_->log,
              ElementsAre("open /s/M with ", "cancel", "release"));
}

TEST_F(ClientCallTest, ReaderAndWriterOpenTheStreamOnce) {
  std::unique_ptr<ClientStream> stream =
      plane_->StartStream("t", Head("/s/B"), std::nullopt);
  plane_->hold_open = true;
  auto read = Start(stream->Read());
  auto write = Start(stream->Write("one", false));
  EXPECT_FALSE(Ready(write));
  plane_->LetOpen();
  Poll();
  ASSERT_TRUE(Ready(write));
  EXPECT_THAT(write.get(), IsOk());
  ASSERT_EQ(plane_->states.size(), 1u);
  plane_->states[0]->Deliver("back");
  Poll();
  ASSERT_TRUE(Ready(read));
  EXPECT_EQ(read.get().value(), "back");
  EXPECT_THAT(*plane_->log, ElementsAre("open /s/B", "message one"));
}

TEST_F(ClientCallTest, MessagesGoInOrderAndNoneAfterTheHalfClose) {
  std::unique_ptr<ClientStream> stream =
      plane_->StartStream("t", Head("/s/B"), std::nullopt);
  EXPECT_THAT(Start(stream->Write("one", false)).get(), IsOk());
  EXPECT_THAT(Start(stream->Write("two", false)).get(), IsOk());
  EXPECT_THAT(Start(stream->WritesDone()).get(), IsOk());
  EXPECT_THAT(Start(stream->WritesDone()).get(), IsOk());  // once on the wire
  EXPECT_THAT(Start(stream->Write("three", false)).get(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(*plane_->log, ElementsAre("open /s/B", "message one",
                                        "message two", "half-close"));
}

TEST_F(ClientCallTest, AMessageTheWireRefusesIsNotSentAndTheStreamGoesOn) {
  std::unique_ptr<ClientStream> stream =
      plane_->StartStream("t", Head("/s/B"), std::nullopt);
  EXPECT_THAT(Start(stream->Write(std::string(kMax + 1, 'x'), false)).get(),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(Start(stream->Write("refused", false)).get(),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(Start(stream->Write("fine", false)).get(), IsOk());
  EXPECT_THAT(*plane_->log,
              ElementsAre("open /s/B", "message refused", "message fine"));
}

TEST_F(ClientCallTest, AServerStreamingCallOpensWithItsMessageHalfClosed) {
  std::unique_ptr<ClientStream> stream =
      plane_->StartStream("t", Head("/s/S"), std::string("req"));
  auto read = Start(stream->Read());
  EXPECT_THAT(Start(stream->Write("more", false)).get(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  plane_->states[0]->End(CallResult(absl::OkStatus()));
  Poll();
  ASSERT_TRUE(Ready(read));
  EXPECT_FALSE(read.get().value().has_value());
  EXPECT_THAT(*plane_->log, ElementsAre("open /s/S with req", "release"));
}

TEST_F(ClientCallTest, ReadingGivesTheWindowBack) {
  std::unique_ptr<ClientStream> stream =
      plane_->StartStream("t", Head("/s/B"), std::nullopt);
  EXPECT_THAT(Start(stream->WritesDone()).get(), IsOk());
  // Half a window of messages read: the plane is told to grant it.
  const std::string message(1000, 'm');
  const std::size_t cost = message.size() + StreamState::kMessageOverhead;
  const std::size_t n = StreamState::kInitialWindow / 2 / cost + 1;
  for (std::size_t i = 0; i < n; ++i) plane_->states[0]->Deliver(message);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_THAT(Start(stream->Read()).get(), IsOk());
  }
  EXPECT_THAT(*plane_->log, ElementsAre("open /s/B", "half-close",
                                        "window " + std::to_string(n * cost)));
}

TEST_F(ClientCallTest, CancelWhileOpeningIsSentOnceTheStreamIsOpen) {
  std::unique_ptr<ClientStream> stream =
      plane_->StartStream("t", Head("/s/B"), std::nullopt);
  plane_->hold_open = true;
  plane_->open_despite_cancel = true;
  auto write = Start(stream->Write("one", false));
  stream->Cancel(absl::CancelledError("by the caller"));
  Poll();
  ASSERT_TRUE(Ready(write));
  EXPECT_THAT(write.get(), StatusIs(absl::StatusCode::kCancelled));
  stream.reset();  // dropping an ended stream sends nothing more
  EXPECT_THAT(*plane_->log, ElementsAre("open /s/B", "cancel", "release"));
}

TEST_F(ClientCallTest, FinishHalfClosesWaitsForTheEndAndReleasesOnce) {
  std::unique_ptr<ClientStream> stream =
      plane_->StartStream("t", Head("/s/C"), std::nullopt);
  EXPECT_THAT(Start(stream->Write("one", false)).get(), IsOk());
  auto finish = Start(stream->Finish());
  ASSERT_FALSE(Ready(finish));
  plane_->states[0]->End(CallResult(absl::OkStatus()));
  Poll();
  ASSERT_TRUE(Ready(finish));
  EXPECT_THAT(finish.get().status, IsOk());
  EXPECT_THAT(Start(stream->Read()).get(), IsOk());  // ended: no more
  stream->Cancel(absl::CancelledError("after the end"));
  EXPECT_THAT(*plane_->log,
              ElementsAre("open /s/C", "message one", "half-close", "release"));
}

}  // namespace
}  // namespace dynrpc::internal
