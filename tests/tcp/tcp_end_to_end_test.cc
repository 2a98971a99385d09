// Unary calls over the TCP request plane, end to end: generated stub ->
// Channel -> TCP client -> socket -> TCP server -> dispatcher -> handler.
#include <future>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/use_future.hpp"
#include "boost/asio/write.hpp"
#include "dynrpc/dynrpc.h"
#include "dynrpc/testing/echo.dynrpc.pb.h"
#include "gmock/gmock.h"
#include "net/sockets.h"
#include "gtest/gtest.h"
#include "support/echo_service.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"
#include "tcp/frame.h"

namespace dynrpc {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoService;
using ::dynrpc::testing::EchoServiceImpl;
using ::dynrpc::testing::FailRequest;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::SizeRequest;
using ::dynrpc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

Config LoopbackConfig() {
  Config config;
  config.tcp.host = "127.0.0.1";
  return config;
}

// A port nothing listens on: bound by the OS, then released.
uint16_t UnusedPort() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(
      io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

// A loopback listener whose accept queue is full: the kernel drops further
// SYNs, so a connect to it neither succeeds nor fails until a timeout.
class FullListener {
 public:
  FullListener() : acceptor_(io_), filler_(io_) {
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.bind(endpoint);
    acceptor_.listen(0);
    filler_.connect(acceptor_.local_endpoint());
  }
  std::string target() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::socket filler_;
};

// Raw bytes on a socket, for what no dynrpc client would send.
class RawConnection {
 public:
  explicit RawConnection(const std::string& address) : socket_(io_) {
    std::size_t colon = address.rfind(':');
    socket_.connect(asio::ip::tcp::endpoint(
        asio::ip::make_address(address.substr(0, colon)),
        static_cast<uint16_t>(std::stoi(address.substr(colon + 1)))));
  }
  void Write(const std::string& bytes) {
    asio::write(socket_, asio::buffer(bytes));
  }
  // Reads until the peer closes; returns what came.
  std::string ReadToEnd() {
    std::string out;
    boost::system::error_code ec;
    asio::read(socket_, asio::dynamic_buffer(out), ec);
    return out;
  }
  std::string ReadExactly(std::size_t n) {
    std::string out(n, '\0');
    asio::read(socket_, asio::buffer(out));
    return out;
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
};

class TcpEndToEndTest : public ::testing::Test {
 protected:
  void StartServer(Config config = LoopbackConfig()) {
    server_ = std::make_unique<Server>(runtime_.executor(), config);
    EXPECT_TRUE(server_->AddService(service_).ok());
    ASSERT_THAT(server_->Start(), IsOk());
  }

  std::unique_ptr<EchoService::Stub> NewStub(Config config = LoopbackConfig(),
                                             std::string target = "") {
    absl::StatusOr<std::shared_ptr<Channel>> channel = Channel::Create(
        runtime_.executor(), target.empty() ? server_->address() : target,
        config);
    EXPECT_THAT(channel, IsOk());
    return std::make_unique<EchoService::Stub>(*channel);
  }

  // Runs `op` on the runtime and waits for its result.
  template <typename T>
  T Run(asio::awaitable<T> op) {
    return runtime_.Run(std::move(op));
  }

  absl::StatusOr<EchoReply> Echo(EchoService::Stub& stub, std::string text,
                                 std::string payload = "") {
    ClientContext context;
    EchoRequest request;
    request.set_text(std::move(text));
    request.set_payload(std::move(payload));
    return Run(stub.Echo(context, request));
  }

  // Destroyed in reverse: the server before the service it borrows, both
  // before the runtime whose threads they use.
  Runtime runtime_{2};
  EchoServiceImpl service_;
  std::unique_ptr<Server> server_;
};

TEST_F(TcpEndToEndTest, ServerReportsItsLoopbackAddressAndOsAssignedPort) {
  StartServer();
  EXPECT_THAT(server_->address(), MatchesRegex("127\\.0\\.0\\.1:[0-9]+"));
  EXPECT_NE(server_->address(), "127.0.0.1:0");
}

TEST_F(TcpEndToEndTest, UnaryCallRoundTrips) {
  StartServer();
  auto stub = NewStub();
  absl::StatusOr<EchoReply> reply =
      Echo(*stub, "hello", std::string("\x00\x01\x02", 3));
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->text(), "hello");
  EXPECT_EQ(reply->payload(), std::string("\x00\x01\x02", 3));
}

TEST_F(TcpEndToEndTest, FutureFormWorksWithoutCoroutines) {
  StartServer();
  auto stub = NewStub();
  ClientContext context;
  EchoRequest request;
  request.set_text("from a plain thread");
  std::future<absl::StatusOr<EchoReply>> reply =
      stub->EchoFuture(context, request);
  request.set_text("changed after the call started");  // the call copied it
  absl::StatusOr<EchoReply> result = reply.get();
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->text(), "from a plain thread");
}

// A malformed target fails at Channel::Create, saying what a target is.
TEST_F(TcpEndToEndTest, ChannelCreateRefusesAURLOrATargetWithoutAPort) {
  EXPECT_THAT(Channel::Create(runtime_.executor(), "http://127.0.0.1:8888",
                              LoopbackConfig()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'http://127.0.0.1:8888' is a URL"),
                             HasSubstr("host:port"))));
  EXPECT_THAT(
      Channel::Create(runtime_.executor(), "localhost", LoopbackConfig()),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("invalid target 'localhost'"),
                     HasSubstr("expected host:port"))));
  EXPECT_THAT(Channel::Create(runtime_.executor(), "localhost:50051",
                              LoopbackConfig()),
              IsOk());
}

// Runtime::Run() from a plain thread: the coroutine's value, or its
// exception.
TEST_F(TcpEndToEndTest, RuntimeRunReturnsTheCoroutinesResult) {
  auto answer = []() -> asio::awaitable<int> { co_return 42; };
  EXPECT_EQ(runtime_.Run(answer()), 42);
  auto fail = []() -> asio::awaitable<void> {
    throw std::runtime_error("from the coroutine");
    co_return;
  };
  EXPECT_THROW(runtime_.Run(fail()), std::runtime_error);
}

TEST_F(TcpEndToEndTest, MetadataAndAGeneratedRequestIdReachTheHandler) {
  StartServer();
  auto stub = NewStub();
  {
    ClientContext context;
    context.AddMetadata("x-user", "ada");
    EchoRequest request;
    request.set_text("metadata:x-user");
    absl::StatusOr<EchoReply> reply = Run(stub->Echo(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->text(), "ada");
  }
  {
    absl::StatusOr<EchoReply> reply = Echo(*stub, "metadata:x-request-id");
    ASSERT_THAT(reply, IsOk());
    EXPECT_THAT(reply->text(), MatchesRegex("[0-9a-f]{32}"));
  }
  {
    ClientContext context;
    context.AddMetadata("x-request-id", "mine");
    EchoRequest request;
    request.set_text("metadata:x-request-id");
    absl::StatusOr<EchoReply> reply = Run(stub->Echo(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->text(), "mine");
  }
}

TEST_F(TcpEndToEndTest, ThousandConcurrentCallsAreAllAnsweredCorrectly) {
  StartServer();
  auto stub = NewStub();
  constexpr int kCalls = 1000;
  std::vector<std::unique_ptr<ClientContext>> contexts;
  std::vector<EchoRequest> requests(kCalls);
  std::vector<std::future<absl::StatusOr<EchoReply>>> replies;
  for (int i = 0; i < kCalls; ++i) {
    contexts.push_back(std::make_unique<ClientContext>());
    requests[i].set_text("call " + std::to_string(i));
    requests[i].set_payload(std::string(i % 97, static_cast<char>(i)));
  }
  for (int i = 0; i < kCalls; ++i) {
    replies.push_back(asio::co_spawn(runtime_.executor(),
                                     stub->Echo(*contexts[i], requests[i]),
                                     asio::use_future));
  }
  for (int i = 0; i < kCalls; ++i) {
    SCOPED_TRACE(i);
    absl::StatusOr<EchoReply> reply = replies[i].get();
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->text(), requests[i].text());
    EXPECT_EQ(reply->payload(), requests[i].payload());
  }
  EXPECT_EQ(service_.calls(), kCalls);
}

// The payload size that makes a serialized EchoRequest exactly `bytes` long.
std::string PayloadForMessageOf(std::size_t bytes) {
  EchoRequest request;
  std::size_t n = bytes - 8;
  for (;; ++n) {
    request.set_payload(std::string(n, 'p'));
    if (request.ByteSizeLong() >= bytes) break;
  }
  EXPECT_EQ(request.ByteSizeLong(), bytes);
  return request.payload();
}

TEST_F(TcpEndToEndTest, MessageJustUnderTheLimitPassesJustOverIsRefused) {
  constexpr std::size_t kLimit = 1 << 20;
  Config config = LoopbackConfig();
  config.tcp.max_message_size = kLimit;
  // The server would take more: a refusal can only come from the sender.
  Config server_config = LoopbackConfig();
  server_config.tcp.max_message_size = 4 * kLimit;
  StartServer(server_config);
  auto stub = NewStub(config);

  absl::StatusOr<EchoReply> at_limit = Echo(*stub, "", PayloadForMessageOf(kLimit));
  ASSERT_THAT(at_limit, IsOk());
  EXPECT_EQ(at_limit->ByteSizeLong(), kLimit);
  int calls_before = service_.calls();

  EXPECT_THAT(Echo(*stub, "", PayloadForMessageOf(kLimit + 1)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("request message of 1048577 bytes exceeds "
                                 "DYN_TCP_MAX_MESSAGE_SIZE=1048576 bytes")));
  EXPECT_EQ(service_.calls(), calls_before) << "the sender must not send it";
}

TEST_F(TcpEndToEndTest, ReceiverRejectsAnOversizedRequestAndOtherCallsGoOn) {
  Config server_config = LoopbackConfig();
  server_config.tcp.max_message_size = 1 << 20;
  StartServer(server_config);
  Config client_config = LoopbackConfig();
  client_config.tcp.max_message_size = 8 << 20;
  client_config.tcp.pool_size = 1;  // everything on one connection
  auto stub = NewStub(client_config);

  // A call in flight on the same connection while the oversized one arrives.
  ClientContext block_context;
  EchoRequest block_request;
  block_request.set_text("survivor");
  std::future<absl::StatusOr<EchoReply>> blocked = asio::co_spawn(
      runtime_.executor(), stub->Block(block_context, block_request),
      asio::use_future);
  service_.WaitForBlocked(1);

  EXPECT_THAT(Echo(*stub, "", std::string(2 << 20, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("exceeds DYN_TCP_MAX_MESSAGE_SIZE=1048576")));
  absl::StatusOr<EchoReply> after = Echo(*stub, "after");
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->text(), "after");

  service_.ReleaseAll();
  absl::StatusOr<EchoReply> survivor = blocked.get();
  ASSERT_THAT(survivor, IsOk());
  EXPECT_EQ(survivor->text(), "survivor");
}

TEST_F(TcpEndToEndTest, OversizedResponsesFailOnEitherSide) {
  Config server_config = LoopbackConfig();
  server_config.tcp.max_message_size = 4 << 20;
  StartServer(server_config);
  Config client_config = LoopbackConfig();
  client_config.tcp.max_message_size = 1 << 20;
  client_config.tcp.pool_size = 1;
  auto stub = NewStub(client_config);

  SizeRequest request;
  // Over the server's limit: the server refuses to send it.
  request.set_reply_payload_bytes(5 << 20);
  ClientContext c1;
  EXPECT_THAT(Run(stub->Sized(c1, request)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("response message of 5242885 bytes exceeds "
                                 "DYN_TCP_MAX_MESSAGE_SIZE=4194304")));
  // Within the server's limit, over the client's: the client drops it.
  request.set_reply_payload_bytes(2 << 20);
  ClientContext c2;
  EXPECT_THAT(Run(stub->Sized(c2, request)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("exceeds DYN_TCP_MAX_MESSAGE_SIZE=1048576")));
  absl::StatusOr<EchoReply> after = Echo(*stub, "still fine");
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->text(), "still fine");
}

TEST_F(TcpEndToEndTest, UnknownMethodIsUnimplemented) {
  StartServer();
  absl::StatusOr<std::shared_ptr<Channel>> channel =
      Channel::Create(runtime_.executor(), server_->address(), LoopbackConfig());
  ASSERT_THAT(channel, IsOk());
  ClientContext context;
  EXPECT_THAT(Run((*channel)->CallUnary(
                  context, "/dynrpc.testing.EchoService/NoSuchMethod", "")),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("/dynrpc.testing.EchoService/NoSuchMethod")));
}

TEST_F(TcpEndToEndTest, HandlerErrorReachesTheCallerWithCodeAndMessage) {
  StartServer();
  auto stub = NewStub();
  for (int code = 1; code <= 16; ++code) {
    SCOPED_TRACE(code);
    ClientContext context;
    FailRequest request;
    request.set_code(code);
    request.set_message("reason " + std::to_string(code));
    absl::StatusOr<EchoReply> reply = Run(stub->Fail(context, request));
    EXPECT_EQ(reply.status(),
              absl::Status(static_cast<absl::StatusCode>(code),
                           "reason " + std::to_string(code)));
  }
}

TEST_F(TcpEndToEndTest, UnreachableServerIsUnavailable) {
  std::string target = "127.0.0.1:" + std::to_string(UnusedPort());
  auto stub = NewStub(LoopbackConfig(), target);
  EXPECT_THAT(Echo(*stub, "anyone?"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("cannot connect to " + target)));
}

TEST_F(TcpEndToEndTest, ConnectTimeoutIsUnavailableOnTime) {
  FullListener full;
  Config config = LoopbackConfig();
  config.tcp.connect_timeout = std::chrono::milliseconds(200);
  auto stub = NewStub(config, full.target());
  EXPECT_THAT(Echo(*stub, "hello?"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("timed out after 200 ms "
                                 "(DYN_TCP_CONNECT_TIMEOUT)")));
}

TEST_F(TcpEndToEndTest, DeadlineGivesDeadlineExceededAndCancelsTheHandler) {
  StartServer();
  auto stub = NewStub();
  ClientContext context;
  context.set_timeout(std::chrono::milliseconds(100));
  EchoRequest request;
  EXPECT_THAT(Run(stub->Block(context, request)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("/dynrpc.testing.EchoService/Block")));
  // The deadline travelled with the call: the server ends the handler too.
  service_.WaitForBlocksEnded(1);
}

TEST_F(TcpEndToEndTest, DefaultRequestTimeoutApplies) {
  StartServer();
  Config config = LoopbackConfig();
  config.tcp.request_timeout = std::chrono::milliseconds(150);
  auto stub = NewStub(config);
  ClientContext context;
  EchoRequest request;
  EXPECT_THAT(Run(stub->Block(context, request)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("150 ms (DYN_TCP_REQUEST_TIMEOUT)")));
  service_.WaitForBlocksEnded(1);
}

TEST_F(TcpEndToEndTest, ServerKilledMidCallGivesUnavailable) {
  dynrpc::testing::Subprocess server(DYNRPC_ECHO_SERVER_PATH, {},
                                     {"DYN_REQUEST_PLANE=tcp",
                                      "DYN_TCP_RPC_HOST=127.0.0.1",
                                      "DYN_TCP_RPC_PORT=0"});
  std::optional<std::string> line =
      server.ReadLine(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value());
  ASSERT_THAT(*line, HasSubstr("listening "));
  std::string address = line->substr(std::string("listening ").size());

  auto stub = NewStub(LoopbackConfig(), address);
  ClientContext context;
  context.set_timeout(std::chrono::seconds(60));  // a hang fails, not blocks
  EchoRequest request;
  std::future<absl::StatusOr<EchoReply>> reply = asio::co_spawn(
      runtime_.executor(), stub->Block(context, request), asio::use_future);
  ASSERT_EQ(server.ReadLine(std::chrono::seconds(30)), "blocked");
  server.Kill();
  EXPECT_THAT(reply.get(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("connection to " + address)));
}

TEST_F(TcpEndToEndTest, PortInUseFailsNamingPortAndVariable) {
  StartServer();
  std::string port = server_->address().substr(server_->address().rfind(':') + 1);
  Config config = LoopbackConfig();
  config.tcp.port = static_cast<uint16_t>(std::stoi(port));
  Server second(runtime_.executor(), config);
  EXPECT_THAT(second.Start(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("address already in use"),
                             HasSubstr("port " + port),
                             HasSubstr("DYN_TCP_RPC_PORT"))));
}

// A server reachable from other machines says so, and why (computed, not
// bound: the tests serve on loopback only).
TEST(NonLoopbackNoticeTest, SaysWhyAndHowToKeepTheServerLocal) {
  using internal::net::ListenSpec;
  using internal::net::NonLoopbackNotice;
  ListenSpec detected{"", 0, "DYN_TCP_RPC_HOST", "DYN_TCP_RPC_PORT"};
  EXPECT_EQ(NonLoopbackNotice(asio::ip::make_address("127.0.0.1"),
                              "127.0.0.1:1", detected),
            std::nullopt);
  std::optional<std::string> notice = NonLoopbackNotice(
      asio::ip::make_address("10.1.2.3"), "10.1.2.3:5000", detected);
  ASSERT_TRUE(notice.has_value());
  EXPECT_THAT(*notice,
              AllOf(HasSubstr("serving on 10.1.2.3:5000, which other "
                              "machines can reach"),
                    HasSubstr("DYN_TCP_RPC_HOST is not set"),
                    HasSubstr("set DYN_TCP_RPC_HOST=127.0.0.1")));
  ListenSpec chosen{"0.0.0.0", 0, "DYN_TCP_RPC_HOST", "DYN_TCP_RPC_PORT"};
  EXPECT_THAT(NonLoopbackNotice(asio::ip::make_address("0.0.0.0"),
                                "0.0.0.0:5000", chosen),
              ::testing::Optional(HasSubstr("(DYN_TCP_RPC_HOST=0.0.0.0)")));
}

TEST_F(TcpEndToEndTest, ChannelBufferBoundsCallsInFlightPerConnection) {
  StartServer();
  Config config = LoopbackConfig();
  config.tcp.pool_size = 1;
  config.tcp.channel_buffer = 2;
  auto stub = NewStub(config);
  std::vector<std::unique_ptr<ClientContext>> contexts;
  EchoRequest request;
  std::vector<std::future<absl::StatusOr<EchoReply>>> replies;
  for (int i = 0; i < 3; ++i) {
    contexts.push_back(std::make_unique<ClientContext>());
    replies.push_back(asio::co_spawn(runtime_.executor(),
                                     stub->Block(*contexts[i], request),
                                     asio::use_future));
  }
  service_.WaitForBlocked(2);
  ASSERT_TRUE(service_.ReleaseOne());
  service_.WaitForBlocksEnded(1);
  service_.WaitForBlocked(2);  // the third call got the freed slot
  service_.ReleaseAll();
  for (auto& reply : replies) EXPECT_THAT(reply.get(), IsOk());
  EXPECT_EQ(service_.max_blocked(), 2);
}

TEST_F(TcpEndToEndTest, ConcurrentCallsOpenConnectionsOnlyAsNeeded) {
  // A listener that completes handshakes but never reads: every connection
  // the client opens waits in its accept queue, where we count them.
  asio::io_context io;
  asio::ip::tcp::acceptor silent(
      io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Config config = LoopbackConfig();
  config.tcp.channel_buffer = 100;
  config.tcp.pool_size = 50;
  auto stub = NewStub(config, "127.0.0.1:" + std::to_string(
                                                 silent.local_endpoint().port()));
  constexpr int kCalls = 150;  // fills one connection and half of a second
  std::vector<std::unique_ptr<ClientContext>> contexts;
  EchoRequest request;
  std::vector<std::future<absl::StatusOr<EchoReply>>> replies;
  for (int i = 0; i < kCalls; ++i) {
    contexts.push_back(std::make_unique<ClientContext>());
    contexts.back()->set_timeout(std::chrono::seconds(60));
    replies.push_back(asio::co_spawn(runtime_.executor(),
                                     stub->Echo(*contexts[i], request),
                                     asio::use_future));
  }
  // The two connections the calls need (blocking accepts), then every call
  // is in flight or waiting: no more dials may follow.
  std::vector<asio::ip::tcp::socket> accepted;
  accepted.push_back(silent.accept());
  accepted.push_back(silent.accept());
  for (auto& c : contexts) c->TryCancel();
  for (auto& reply : replies) {
    EXPECT_THAT(reply.get(), StatusIs(absl::StatusCode::kCancelled));
  }
  silent.non_blocking(true);
  boost::system::error_code ec;
  asio::ip::tcp::socket third = silent.accept(ec);
  EXPECT_TRUE(ec) << "a third connection was opened";
}

TEST_F(TcpEndToEndTest, CancellingAStreamEndsItsOpeningAtOnce) {
  // The stream's first Read() waits to connect to a listener that never
  // accepts; TryCancel() must end it, not the 60 s connect timeout.
  FullListener full;
  Config config = LoopbackConfig();
  config.tcp.connect_timeout = std::chrono::seconds(60);
  auto stub = NewStub(config, full.target());
  ClientContext context;
  context.set_timeout(std::chrono::seconds(60));
  dynrpc::testing::StreamRequest request;
  request.set_count(1);
  ClientReader<dynrpc::testing::StreamMessage> reader =
      stub->Generate(context, request);
  auto reading = asio::co_spawn(runtime_.executor(), reader.Read(),
                                asio::use_future);
  context.TryCancel();
  // A liveness bound, far below the 60 s the bug would take.
  ASSERT_EQ(reading.wait_for(std::chrono::seconds(20)),
            std::future_status::ready);
  EXPECT_THAT(reading.get(), StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(TcpEndToEndTest, AnEndedStreamGivesBackItsConnectionSlot) {
  StartServer();
  Config config = LoopbackConfig();
  config.tcp.pool_size = 1;
  config.tcp.channel_buffer = 1;  // one call at a time
  auto stub = NewStub(config);
  ClientContext stream_context;
  dynrpc::testing::StreamRequest request;
  request.set_count(3);
  ClientReader<dynrpc::testing::StreamMessage> reader =
      stub->Generate(stream_context, request);
  for (;;) {
    auto m = Run(reader.Read());
    ASSERT_THAT(m, IsOk());
    if (!m->has_value()) break;
  }
  // `reader` is still alive; its call has ended, so the slot is free.
  ClientContext context;
  context.set_timeout(std::chrono::seconds(10));
  EchoRequest echo;
  echo.set_text("next");
  EXPECT_THAT(Run(stub->Echo(context, echo)), IsOk());
}

TEST_F(TcpEndToEndTest, PeerOverrunningItsWindowIsRefused) {
  Config config = LoopbackConfig();
  config.tcp.max_message_size = 64 * 1024;
  StartServer(config);
  RawConnection raw(server_->address());
  internal::tcp::RequestHead head;
  head.method = "/dynrpc.testing.EchoService/Chat";
  raw.Write(*internal::tcp::EncodeRequestPrefix(3, head, 0,
                                                 internal::tcp::kFlagStreaming));
  // 4 MiB of messages without waiting for window (a well-behaved client
  // stops at 1 MiB until the server grants more; this one never reads).
  dynrpc::testing::StreamMessage message;
  message.set_payload(std::string(60 * 1024, 'x'));
  std::string bytes = message.SerializeAsString();
  std::string burst;
  for (int i = 0; i < 70; ++i) {
    burst += internal::tcp::EncodeMessagePrefix(3, bytes.size()) + bytes;
  }
  std::thread writer([&] { raw.Write(burst); });
  // Frames come back (HEADERS, echoes, WINDOW) until the call's RESPONSE.
  absl::StatusOr<internal::tcp::ResponseHead> response;
  for (;;) {
    absl::StatusOr<internal::tcp::FrameHeader> frame =
        internal::tcp::DecodeFrameHeader(
            raw.ReadExactly(internal::tcp::kFrameHeaderSize));
    ASSERT_THAT(frame, IsOk());
    std::string frame_head = raw.ReadExactly(frame->head_len);
    raw.ReadExactly(frame->payload_len);
    if (frame->type == internal::tcp::FrameType::kResponse) {
      EXPECT_EQ(frame->call_id, 3u);
      response = internal::tcp::DecodeResponseHead(frame_head);
      break;
    }
  }
  writer.join();
  ASSERT_THAT(response, IsOk());
  EXPECT_EQ(response->code, absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(response->message, HasSubstr("flow-control window"));
}

TEST_F(TcpEndToEndTest, ShutdownCancelsRunningHandlersAndFailsTheirCalls) {
  StartServer();
  auto stub = NewStub();
  ClientContext context;
  context.set_timeout(std::chrono::seconds(60));
  EchoRequest request;
  std::future<absl::StatusOr<EchoReply>> reply = asio::co_spawn(
      runtime_.executor(), stub->Block(context, request), asio::use_future);
  service_.WaitForBlocked(1);
  server_->Shutdown();
  EXPECT_EQ(service_.blocks_ended(), 1);
  absl::StatusOr<EchoReply> result = reply.get();
  EXPECT_TRUE(result.status().code() == absl::StatusCode::kUnavailable ||
              result.status().code() == absl::StatusCode::kCancelled)
      << result.status();
}

TEST_F(TcpEndToEndTest, GarbageClosesOnlyItsOwnConnection) {
  StartServer();
  RawConnection raw(server_->address());
  raw.Write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(raw.ReadToEnd(), "");  // closed without an answer
  auto stub = NewStub();
  EXPECT_THAT(Echo(*stub, "still serving"), IsOk());
}

TEST_F(TcpEndToEndTest, FrameClaimingHugePayloadIsAnsweredWithoutAllocating) {
  StartServer();
  RawConnection raw(server_->address());
  internal::tcp::RequestHead head;
  head.method = "/dynrpc.testing.EchoService/Echo";
  std::string prefix = *internal::tcp::EncodeRequestPrefix(5, head, 0);
  for (int i = 16; i < 20; ++i) prefix[i] = '\xff';  // payload: 4 GiB - 1
  raw.Write(prefix);

  std::string header = raw.ReadExactly(internal::tcp::kFrameHeaderSize);
  absl::StatusOr<internal::tcp::FrameHeader> decoded =
      internal::tcp::DecodeFrameHeader(header);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->type, internal::tcp::FrameType::kResponse);
  EXPECT_EQ(decoded->call_id, 5u);
  absl::StatusOr<internal::tcp::ResponseHead> response =
      internal::tcp::DecodeResponseHead(raw.ReadExactly(decoded->head_len));
  ASSERT_THAT(response, IsOk());
  EXPECT_EQ(response->code, absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(response->message,
              HasSubstr("request message of 4294967295 bytes exceeds "
                        "DYN_TCP_MAX_MESSAGE_SIZE=33554432 bytes"));
}

TEST_F(TcpEndToEndTest, MalformedRequestHeadIsAnsweredAndConnectionLivesOn) {
  StartServer();
  RawConnection raw(server_->address());
  // A well-framed request whose head is nonsense, then a valid request.
  std::string garbage_head = "\x01\x02\x03";
  std::string frame = internal::tcp::EncodeCancel(8);
  frame[1] = static_cast<char>(internal::tcp::FrameType::kRequest);
  frame[15] = static_cast<char>(garbage_head.size());  // head_len low byte
  raw.Write(frame + garbage_head);

  std::string header = raw.ReadExactly(internal::tcp::kFrameHeaderSize);
  absl::StatusOr<internal::tcp::FrameHeader> decoded =
      internal::tcp::DecodeFrameHeader(header);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->call_id, 8u);
  absl::StatusOr<internal::tcp::ResponseHead> response =
      internal::tcp::DecodeResponseHead(raw.ReadExactly(decoded->head_len));
  ASSERT_THAT(response, IsOk());
  EXPECT_EQ(response->code, absl::StatusCode::kInternal);
  EXPECT_THAT(response->message, HasSubstr("malformed frame"));

  EchoRequest echo;
  echo.set_text("next");
  std::string payload = echo.SerializeAsString();
  internal::tcp::RequestHead head;
  head.method = "/dynrpc.testing.EchoService/Echo";
  raw.Write(*internal::tcp::EncodeRequestPrefix(9, head, payload.size()) +
            payload);
  header = raw.ReadExactly(internal::tcp::kFrameHeaderSize);
  decoded = internal::tcp::DecodeFrameHeader(header);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->call_id, 9u);
  response = internal::tcp::DecodeResponseHead(
      raw.ReadExactly(decoded->head_len));
  ASSERT_THAT(response, IsOk());
  EXPECT_EQ(response->code, absl::StatusCode::kOk);
  EchoReply reply;
  ASSERT_TRUE(reply.ParseFromString(raw.ReadExactly(decoded->payload_len)));
  EXPECT_EQ(reply.text(), "next");
}

}  // namespace
}  // namespace dynrpc
