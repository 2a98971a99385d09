// The core's server call over a fake framed plane: what FramedServerCall
// sends through its ServerLink, whatever the plane.
#include "core/server_call.h"

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/use_future.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace dynrpc::internal {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::size_t kMax = 16;

// A call record that logs what the core sends.
struct FakeCall final : FramedServerCall {
  using FramedServerCall::FramedServerCall;

  absl::Status CheckMessage(std::size_t bytes) const override {
    if (bytes <= kMax) return absl::OkStatus();
    return absl::ResourceExhaustedError("over kMax");
  }
  std::size_t max_message_size() const override { return kMax; }
  absl::Status SendMessage(std::string message,
                           const Metadata* initial_metadata,
                           Compression encoding, bool compressed) override {
    std::string entry = "message " + message;
    if (initial_metadata != nullptr) {
      entry += " with " + std::to_string(initial_metadata->size()) + " initial";
    }
    log.push_back(entry);
    if (message == "refused") return absl::UnavailableError("refused");
    return absl::OkStatus();
  }
  void SendWindow(uint32_t bytes) override {
    log.push_back("window " + std::to_string(bytes));
  }
  void SendEnd(CallResult result, bool initial_sent) override {
    log.push_back(std::string("end ") +
                  absl::StatusCodeToString(result.status.code()) +
                  (result.has_message ? " with " + result.payload : "") +
                  (initial_sent ? " initial sent" : "") + " metadata " +
                  std::to_string(result.initial_metadata.size()));
    end = std::move(result);
  }

  std::vector<std::string> log;
  CallResult end;
};

// Runs what the test gives it as the handler.
class FakeHandler final : public CallHandler {
 public:
  std::function<asio::awaitable<CallResult>()> unary;
  std::function<asio::awaitable<CallResult>(ServerStream&)> stream;

  asio::awaitable<CallResult> HandleUnary(CallRequest,
                                          ServerCallInfo) override {
    co_return co_await unary();
  }
  asio::awaitable<CallResult> HandleStream(CallRequest, ServerCallInfo,
                                           ServerStream& s) override {
    co_return co_await stream(s);
  }
  const MethodEntry* FindMethod(std::string_view) const override {
    return nullptr;
  }
  std::vector<std::string> MethodPaths() const override { return {}; }
};

class ServerCallTest : public ::testing::Test {
 protected:
  // Serves `call` to its end (everything runs on this thread).
  void Serve(const std::shared_ptr<FakeCall>& call) {
    auto done = asio::co_spawn(
        io_, FramedServerCall::Serve(call, handler_, CallRequest(), "peer"),
        asio::use_future);
    io_.run();
    done.get();
  }
  std::shared_ptr<FakeCall> StreamingCall() {
    auto call = std::make_shared<FakeCall>(io_.get_executor());
    call->stream = std::make_shared<StreamState>(kMax);
    return call;
  }

  asio::io_context io_;
  FakeHandler handler_;
};

TEST_F(ServerCallTest, UnarySendsTheHandlersResult) {
  auto call = std::make_shared<FakeCall>(io_.get_executor());
  handler_.unary = []() -> asio::awaitable<CallResult> {
    CallResult result;
    result.has_message = true;
    result.payload = "reply";
    co_return result;
  };
  Serve(call);
  EXPECT_THAT(call->log, ElementsAre("end OK with reply metadata 0"));
}

TEST_F(ServerCallTest, AResponseTheWireCannotCarryEndsTheCallWithItsMetadata) {
  auto call = std::make_shared<FakeCall>(io_.get_executor());
  handler_.unary = []() -> asio::awaitable<CallResult> {
    CallResult result;
    result.has_message = true;
    result.payload = std::string(kMax + 1, 'x');
    result.initial_metadata = {{"k", "v"}};
    co_return result;
  };
  Serve(call);
  EXPECT_THAT(call->log, ElementsAre("end RESOURCE_EXHAUSTED metadata 1"));
  EXPECT_THAT(call->end.status, StatusIs(absl::StatusCode::kResourceExhausted,
                                         HasSubstr("over kMax")));
}

TEST_F(ServerCallTest, InitialMetadataGoesWithTheFirstMessageOnly) {
  auto call = StreamingCall();
  handler_.stream = [](ServerStream& s) -> asio::awaitable<CallResult> {
    Metadata initial = {{"a", "1"}, {"b", "2"}};
    absl::Status one = co_await s.Write("one", initial, Compression::kIdentity, false);
    absl::Status two = co_await s.Write("two", initial, Compression::kIdentity, false);
    co_return CallResult(one.ok() && two.ok() ? absl::OkStatus()
                                              : absl::InternalError("write"));
  };
  Serve(call);
  EXPECT_THAT(call->log,
              ElementsAre("message one with 2 initial", "message two",
                          "end OK initial sent metadata 0"));
}

TEST_F(ServerCallTest, AMessageNotSentIsRetriedWithItsInitialMetadata) {
  auto call = StreamingCall();
  handler_.stream = [](ServerStream& s) -> asio::awaitable<CallResult> {
    Metadata initial = {{"a", "1"}};
    absl::Status refused = co_await s.Write("refused", initial, Compression::kIdentity, false);
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable));
    absl::Status too_big =
        co_await s.Write(std::string(kMax + 1, 'x'), initial, Compression::kIdentity, false);
    EXPECT_THAT(too_big, StatusIs(absl::StatusCode::kResourceExhausted));
    co_return CallResult(co_await s.Write("ok", initial, Compression::kIdentity, false));
  };
  Serve(call);
  EXPECT_THAT(call->log, ElementsAre("message refused with 1 initial",
                                     "message ok with 1 initial",
                                     "end OK initial sent metadata 0"));
}

TEST_F(ServerCallTest, ReadingGivesTheWindowBack) {
  auto call = StreamingCall();
  const std::string message(kMax, 'm');
  const std::size_t cost = message.size() + StreamState::kMessageOverhead;
  const std::size_t n = StreamState::kInitialWindow / 2 / cost + 1;
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_TRUE(call->stream->Deliver(message));
  call->stream->PeerDone();
  handler_.stream = [](ServerStream& s) -> asio::awaitable<CallResult> {
    for (;;) {
      absl::StatusOr<std::optional<std::string>> m = co_await s.Read();
      if (!m.ok()) co_return CallResult(m.status());
      if (!m->has_value()) co_return CallResult(absl::OkStatus());
    }
  };
  Serve(call);
  EXPECT_THAT(call->log, ElementsAre("window " + std::to_string(n * cost),
                                     "end OK metadata 0"));
}

TEST_F(ServerCallTest, AFaultInWhatTheCallerSentWinsOverTheHandlersStatus) {
  auto call = StreamingCall();
  handler_.stream = [call](ServerStream& s) -> asio::awaitable<CallResult> {
    // The plane found the caller over its window while the handler read.
    call->Cancel(absl::ResourceExhaustedError("beyond the window"));
    absl::StatusOr<std::optional<std::string>> m = co_await s.Read();
    co_return CallResult(absl::AbortedError("the handler's own view: " +
                                            std::string(m.status().message())));
  };
  Serve(call);
  EXPECT_THAT(call->log, ElementsAre("end RESOURCE_EXHAUSTED metadata 0"));
  EXPECT_TRUE(*call->cancelled());
}

TEST_F(ServerCallTest, ACancelledCallKeepsTheHandlersStatus) {
  auto call = StreamingCall();
  handler_.stream = [call](ServerStream&) -> asio::awaitable<CallResult> {
    call->Cancel(absl::CancelledError("the caller cancelled"));
    co_return CallResult(absl::CancelledError("handler saw the cancel"));
  };
  Serve(call);
  EXPECT_THAT(call->log, ElementsAre("end CANCELLED metadata 0"));
  EXPECT_THAT(call->end.status,
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("handler saw")));
}

}  // namespace
}  // namespace dynrpc::internal
