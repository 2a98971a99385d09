// The request-plane conformance suite: the call model every plane must give,
// asserted the same way for each. A plane joins by adding itself to
// kPlanes (and ConfigFor, if it needs settings); no assertion changes.
//
// What it covers: each method kind; deadlines (carried to the server,
// enforced on both sides, readable by the handler); cancellation (by the
// caller, by dropping a stream, by a dying server); metadata both ways;
// status; flow control and fairness; ordering; large messages near the
// limit; many concurrent streams; error paths.
#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "dynrpc/testing/echo.dynrpc.pb.h"
#include "grpc/health/v1/health.dynrpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/echo_service.h"
#include "support/nats_server.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"
#include "support/wait_for.h"

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
using ::dynrpc::testing::StreamMessage;
using ::dynrpc::testing::StreamRequest;
using ::dynrpc::testing::StreamSummary;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Every request plane this build has. NATS runs through the suite's shared
// nats-server (SharedNatsUrl(): ./scripts/test's, or one the test starts).
const RequestPlaneKind kPlanes[] = {RequestPlaneKind::kTcp,
                                     RequestPlaneKind::kHttp,
                                     RequestPlaneKind::kNats};

// This process's NATS namespace: test processes that share a nats-server
// (ctest -j) must not answer each other's calls.
const std::string& NatsNamespace() {
  static const std::string name_space =
      dynrpc::testing::UniqueNatsNamespace("conformance");
  return name_space;
}

// A configuration for `plane` that serves on loopback.
Config ConfigFor(RequestPlaneKind plane) {
  Config config;
  config.request_plane = plane;
  config.tcp.host = "127.0.0.1";
  config.http.host = "127.0.0.1";
  config.http.port = 0;
  // A fixed window, so SlowReaderHoldsBackTheWriter knows its bound (the
  // adaptive one is tested in tests/http).
  config.http.adaptive_window = false;
  if (plane == RequestPlaneKind::kNats) {
    config.nats.server = dynrpc::testing::SharedNatsUrl();
    config.nats.name_space = NatsNamespace();
  }
  return config;
}

// The plane's settings the suite depends on; a plane adds its own here.
// Bytes a stream's writer may send ahead of its reader.
int64_t WindowBytes(RequestPlaneKind plane) {
  switch (plane) {
    case RequestPlaneKind::kHttp:
      // The fixed stream window, plus what a writer queues before it waits.
      return (2 << 20) + (64 << 10);
    case RequestPlaneKind::kNats:
      // The same per-stream credit as TCP: 1 MiB.
    case RequestPlaneKind::kTcp:
    default:
      return 1 << 20;
  }
}

// `config` with the largest message either side accepts set to `bytes`.
// For NATS this is the plane's own limit, below the NATS server's
// max_payload (8 MB for the suite's shared server,
// tests/nats/nats-server.conf), which must leave room for `bytes` and the
// plane's headers.
Config WithMaxMessage(Config config, std::size_t bytes) {
  config.tcp.max_message_size = bytes;
  config.http.max_message_size = bytes;
  config.nats.max_message_size = bytes;
  return config;
}

// The environment for a server in another process on `plane`.
std::vector<std::string> EnvironmentFor(RequestPlaneKind plane) {
  std::vector<std::string> env = {
      "DYN_REQUEST_PLANE=" + std::string(RequestPlaneName(plane)),
      "DYN_TCP_RPC_HOST=127.0.0.1", "DYN_TCP_RPC_PORT=0",
      "DYN_HTTP_RPC_HOST=127.0.0.1", "DYN_HTTP_RPC_PORT=0",
      "DYN_HTTP2_ADAPTIVE_WINDOW=false"};
  if (plane == RequestPlaneKind::kNats) {
    env.push_back("NATS_SERVER=" + dynrpc::testing::SharedNatsUrl());
    env.push_back("DYN_NAMESPACE=" + NatsNamespace());
  }
  return env;
}

class ConformanceTest : public ::testing::TestWithParam<RequestPlaneKind> {
 protected:
  void SetUp() override { StartServer(ConfigFor(GetParam())); }

  void StartServer(Config config) {
    server_.reset();
    server_ = std::make_unique<Server>(runtime_.executor(), config);
    EXPECT_TRUE(server_->AddService(service_).ok());
    ASSERT_THAT(server_->Start(), IsOk());
    address_ = server_->address();
  }

  std::unique_ptr<EchoService::Stub> NewStub(
      std::optional<Config> config = std::nullopt) {
    absl::StatusOr<std::shared_ptr<Channel>> channel = Channel::Create(
        runtime_.executor(), address_, config.value_or(ConfigFor(GetParam())));
    EXPECT_THAT(channel, IsOk());
    channel_ = *channel;
    return std::make_unique<EchoService::Stub>(*channel);
  }

  template <typename T>
  T Run(asio::awaitable<T> op) {
    return asio::co_spawn(runtime_.executor(), std::move(op), asio::use_future)
        .get();
  }

  template <typename T>
  std::future<T> Spawn(asio::awaitable<T> op) {
    return asio::co_spawn(runtime_.executor(), std::move(op), asio::use_future);
  }

  // Reads a whole stream; fails the test on an error.
  template <typename Reader>
  asio::awaitable<std::vector<StreamMessage>> ReadAll(Reader& reader) {
    std::vector<StreamMessage> out;
    for (;;) {
      absl::StatusOr<std::optional<StreamMessage>> m = co_await reader.Read();
      EXPECT_THAT(m, IsOk());
      if (!m.ok() || !m->has_value()) co_return out;
      out.push_back(**m);
    }
  }

  Runtime runtime_{2};
  EchoServiceImpl service_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<Channel> channel_;
  std::string address_;
};

StreamRequest Count(int64_t count, int64_t payload_bytes = 0) {
  StreamRequest request;
  request.set_count(count);
  request.set_payload_bytes(payload_bytes);
  return request;
}

StreamRequest Forever(int64_t payload_bytes = 0) {
  StreamRequest request;
  request.set_forever(true);
  request.set_payload_bytes(payload_bytes);
  return request;
}

StreamMessage Numbered(int64_t i, std::string payload = "") {
  StreamMessage m;
  m.set_sequence(i);
  m.set_payload(std::move(payload));
  return m;
}

// ---- Unary -----------------------------------------------------------------

TEST_P(ConformanceTest, UnaryCarriesMetadataBothWays) {
  auto stub = NewStub();
  ClientContext context;
  context.AddMetadata("x-echo", "v1");
  EchoRequest request;
  request.set_text("hi");
  absl::StatusOr<EchoReply> reply = Run(stub->Echo(context, request));
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->text(), "hi");
  EXPECT_EQ(FindMetadata(context.server_initial_metadata(), "x-echo-initial"),
            "v1");
  EXPECT_EQ(FindMetadata(context.server_trailing_metadata(), "x-echo-trailing"),
            "v1");
}

TEST_P(ConformanceTest, TraceparentPassesThroughUntouched) {
  auto stub = NewStub();
  const std::string traceparent =
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  ClientContext context;
  context.AddMetadata("traceparent", traceparent);
  EchoRequest request;
  request.set_text("metadata:traceparent");
  absl::StatusOr<EchoReply> reply = Run(stub->Echo(context, request));
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->text(), traceparent);
}

TEST_P(ConformanceTest, HandlerSeesTheDeadlineToPassOn) {
  auto stub = NewStub();
  ClientContext context;
  context.set_timeout(std::chrono::seconds(5));
  EchoRequest request;
  request.set_text("deadline-ms");
  absl::StatusOr<EchoReply> reply = Run(stub->Echo(context, request));
  ASSERT_THAT(reply, IsOk());
  int left_ms = std::stoi(reply->text());
  EXPECT_GT(left_ms, 0);
  EXPECT_LE(left_ms, 5000);
}

TEST_P(ConformanceTest, DeadlinePropagatesDownAChain) {
  // caller --Relay--> this server --Block--> a second server: the second
  // server's handler is cancelled by the caller's deadline, passed on by the
  // first handler, not by a default timeout of its own.
  service_.set_downstream_config(ConfigFor(GetParam()));
  EchoServiceImpl downstream_service;
  Server downstream(runtime_.executor(), ConfigFor(GetParam()));
  EXPECT_TRUE(downstream.AddService(downstream_service).ok());
  ASSERT_THAT(downstream.Start(), IsOk());

  auto stub = NewStub();
  ClientContext context;
  context.set_timeout(std::chrono::milliseconds(300));
  EchoRequest request;
  request.set_text(downstream.address());
  EXPECT_THAT(Run(stub->Relay(context, request)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  downstream_service.WaitForBlocksEnded(1);
  // The second handler ran under the caller's 300 ms, not a default 10 s.
  std::optional<Clock::duration> left = downstream_service.last_block_time_left();
  ASSERT_TRUE(left.has_value());
  EXPECT_LE(*left, std::chrono::milliseconds(300));
  downstream.Shutdown();
}

TEST_P(ConformanceTest, EveryStatusCodeArrivesUnchanged) {
  auto stub = NewStub();
  for (int code = 1; code <= 16; ++code) {
    SCOPED_TRACE(code);
    ClientContext context;
    FailRequest request;
    request.set_code(code);
    request.set_message("because " + std::to_string(code));
    EXPECT_EQ(Run(stub->Fail(context, request)).status(),
              absl::Status(static_cast<absl::StatusCode>(code),
                           "because " + std::to_string(code)));
  }
}

TEST_P(ConformanceTest, TryCancelEndsAUnaryCallAndItsHandler) {
  auto stub = NewStub();
  ClientContext context;
  EchoRequest request;
  std::future<absl::StatusOr<EchoReply>> reply =
      Spawn(stub->Block(context, request));
  service_.WaitForBlocked(1);
  context.TryCancel();
  EXPECT_THAT(reply.get(), StatusIs(absl::StatusCode::kCancelled));
  service_.WaitForBlocksEnded(1);  // the server's handler was cancelled too
}

TEST_P(ConformanceTest, CancelBeforeStartNeverReachesTheServer) {
  auto stub = NewStub();
  ClientContext context;
  context.TryCancel();
  EchoRequest request;
  EXPECT_THAT(Run(stub->Echo(context, request)),
              StatusIs(absl::StatusCode::kCancelled));
  // A call after it, on the same channel: the server sees that one only.
  ClientContext next;
  ASSERT_THAT(Run(stub->Echo(next, request)), IsOk());
  EXPECT_EQ(service_.calls(), 1);
}

// ---- Server streaming --------------------------------------------------------

TEST_P(ConformanceTest, ServerStreamDeliversEveryMessageInOrder) {
  auto stub = NewStub();
  for (int64_t count : {0, 1, 1000}) {
    SCOPED_TRACE(count);
    ClientContext context;
    ClientReader<StreamMessage> reader =
        stub->Generate(context, Count(count, 100));
    std::vector<StreamMessage> got = Run(ReadAll(reader));
    ASSERT_EQ(got.size(), static_cast<std::size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      ASSERT_EQ(got[i].sequence(), i);
      ASSERT_EQ(got[i].payload().size(), 100u);
    }
    EXPECT_THAT(Run(reader.Finish()), IsOk());
  }
}

TEST_P(ConformanceTest, ServerStreamCarriesMetadataBothWays) {
  auto stub = NewStub();
  ClientContext context;
  context.AddMetadata("x-echo", "stream");
  ClientReader<StreamMessage> reader = stub->Generate(context, Count(3));
  EXPECT_EQ(Run(ReadAll(reader)).size(), 3u);
  EXPECT_EQ(FindMetadata(context.server_initial_metadata(), "x-echo-initial"),
            "stream");
  EXPECT_EQ(FindMetadata(context.server_trailing_metadata(), "x-echo-trailing"),
            "stream");
}

// The gRPC-style loop: Next() yields every message, then false at the
// error, which Finish() reports.
TEST_P(ConformanceTest, NextStopsAtAStreamErrorThatFinishReports) {
  auto stub = NewStub();
  ClientContext context;
  StreamRequest request = Count(100);
  request.set_fail_after(5);
  ClientReader<StreamMessage> reader = stub->Generate(context, request);
  StreamMessage message;
  std::vector<int64_t> seen;
  while (Run(reader.Next(message))) seen.push_back(message.sequence());
  EXPECT_THAT(seen, ::testing::ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(Run(reader.Finish()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("failed after 5 messages")));
}

// A URL is never a target, on any plane: Channel::Create says what one is.
TEST_P(ConformanceTest, AURLTargetIsRefusedByChannelCreate) {
  EXPECT_THAT(Channel::Create(runtime_.executor(), "http://127.0.0.1:8888",
                              ConfigFor(GetParam())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is a URL; a target is the address a "
                                 "server reports")));
}

// Server::Wait() returns 0 once Shutdown() is called on another thread,
// and the server answers no more.
TEST_P(ConformanceTest, WaitReturnsOnceTheServerIsShutDown) {
  auto stub = NewStub();
  ClientContext first;
  EchoRequest request;
  ASSERT_THAT(Run(stub->Echo(first, request)), IsOk());
  std::thread stopper([this] { server_->Shutdown(); });
  EXPECT_EQ(server_->Wait(), 0);
  stopper.join();
  ClientContext after;
  after.set_timeout(std::chrono::seconds(5));
  EXPECT_THAT(Run(stub->Echo(after, request)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_P(ConformanceTest, ServerStreamErrorFollowsTheMessagesBeforeIt) {
  auto stub = NewStub();
  ClientContext context;
  StreamRequest request = Count(100);
  request.set_fail_after(5);
  ClientReader<StreamMessage> reader = stub->Generate(context, request);
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<std::optional<StreamMessage>> m = Run(reader.Read());
    ASSERT_THAT(m, IsOk());
    ASSERT_TRUE(m->has_value());
    EXPECT_EQ((*m)->sequence(), i);
  }
  EXPECT_THAT(Run(reader.Read()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("failed after 5 messages")));
  EXPECT_THAT(Run(reader.Finish()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// ---- Client streaming and bidi ----------------------------------------------

asio::awaitable<absl::StatusOr<StreamSummary>> Upload(
    EchoService::Stub& stub, ClientContext& context, int count,
    std::size_t payload_bytes) {
  ClientWriter<StreamMessage, StreamSummary> writer = stub.Collect(context);
  for (int i = 0; i < count; ++i) {
    absl::Status s =
        co_await writer.Write(Numbered(i, std::string(payload_bytes, 'c')));
    if (!s.ok()) break;  // Finish() says why
  }
  co_return co_await writer.Finish();
}

TEST_P(ConformanceTest, ClientStreamIsCollectedInOrder) {
  auto stub = NewStub();
  for (int count : {0, 1, 2000}) {
    SCOPED_TRACE(count);
    ClientContext context;
    absl::StatusOr<StreamSummary> summary =
        Run(Upload(*stub, context, count, 500));
    ASSERT_THAT(summary, IsOk());
    EXPECT_EQ(summary->count(), count);
    EXPECT_EQ(summary->bytes(), count * 500);
    EXPECT_TRUE(summary->in_order());
  }
}

// A writer and a reader coroutine on one bidi stream at once.
asio::awaitable<absl::Status> ChatConcurrently(EchoService::Stub& stub,
                                               ClientContext& context,
                                               int count,
                                               std::vector<int64_t>* echoed) {
  using namespace asio::experimental::awaitable_operators;
  ClientReaderWriter<StreamMessage, StreamMessage> stream = stub.Chat(context);
  auto writer = [&]() -> asio::awaitable<absl::Status> {
    for (int i = 0; i < count; ++i) {
      DYNRPC_CO_RETURN_IF_ERROR(co_await stream.Write(Numbered(i, "chat")));
    }
    co_return co_await stream.WritesDone();
  };
  auto reader = [&]() -> asio::awaitable<absl::Status> {
    for (;;) {
      absl::StatusOr<std::optional<StreamMessage>> m = co_await stream.Read();
      if (!m.ok()) co_return m.status();
      if (!m->has_value()) co_return absl::OkStatus();
      echoed->push_back((*m)->sequence());
    }
  };
  // Both at once, each its own coroutine; waiting for them blocks no runtime
  // thread (a blocking wait here once stalled every thread, with 100 such
  // streams on two).
  auto [read, wrote] = co_await (reader() && writer());
  DYNRPC_CO_RETURN_IF_ERROR(read);
  DYNRPC_CO_RETURN_IF_ERROR(wrote);
  co_return co_await stream.Finish();
}

TEST_P(ConformanceTest, BidiEchoesWhileWritingAndReadingConcurrently) {
  auto stub = NewStub();
  ClientContext context;
  std::vector<int64_t> echoed;
  ASSERT_THAT(Run(ChatConcurrently(*stub, context, 5000, &echoed)), IsOk());
  ASSERT_EQ(echoed.size(), 5000u);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(echoed[i], i);
}

TEST_P(ConformanceTest, FinishWhileAnotherCoroutineReads) {
  auto stub = NewStub();
  ClientContext context;
  ClientReaderWriter<StreamMessage, StreamMessage> stream = stub->Chat(context);
  ASSERT_THAT(Run(stream.Write(Numbered(0))), IsOk());
  ASSERT_THAT(Run(stream.Read()), IsOk());  // the echo
  // A reader waits for more while another coroutine half-closes and
  // finishes: the server ends the call, and both must see it.
  std::future<absl::StatusOr<std::optional<StreamMessage>>> reading =
      Spawn(stream.Read());
  auto finish = [&]() -> asio::awaitable<absl::Status> {
    DYNRPC_CO_RETURN_IF_ERROR(co_await stream.WritesDone());
    co_return co_await stream.Finish();
  };
  EXPECT_THAT(Run(finish()), IsOk());
  absl::StatusOr<std::optional<StreamMessage>> last = reading.get();
  ASSERT_THAT(last, IsOk());
  EXPECT_FALSE(last->has_value());
}

// A caller that stops reading a stream of large messages half-way (one may
// be part-received then) still gets the server's status from Finish().
TEST_P(ConformanceTest, FinishPartWayThroughLargeMessagesEndsWithTheStatus) {
  auto stub = NewStub();
  ClientContext context;
  ClientReader<StreamMessage> reader =
      stub->Generate(context, Count(8, 1 << 20));
  absl::StatusOr<std::optional<StreamMessage>> first = Run(reader.Read());
  ASSERT_THAT(first, IsOk());
  ASSERT_TRUE(first->has_value());
  EXPECT_THAT(Run(reader.Finish()), IsOk());
}

TEST_P(ConformanceTest, ManyConcurrentStreamsStayIndependent) {
  auto stub = NewStub();
  constexpr int kStreams = 100, kMessages = 200;
  std::vector<std::unique_ptr<ClientContext>> contexts;
  std::vector<std::vector<int64_t>> echoed(kStreams);
  std::vector<std::future<absl::Status>> done;
  for (int s = 0; s < kStreams; ++s) {
    contexts.push_back(std::make_unique<ClientContext>());
    done.push_back(
        Spawn(ChatConcurrently(*stub, *contexts[s], kMessages, &echoed[s])));
  }
  for (int s = 0; s < kStreams; ++s) {
    SCOPED_TRACE(s);
    ASSERT_THAT(done[s].get(), IsOk());
    ASSERT_EQ(echoed[s].size(), static_cast<std::size_t>(kMessages));
    for (int i = 0; i < kMessages; ++i) ASSERT_EQ(echoed[s][i], i);
  }
}

// ---- Deadlines and cancellation ---------------------------------------------

TEST_P(ConformanceTest, StreamDeadlineEndsTheStreamAndCancelsTheHandler) {
  auto stub = NewStub();
  ClientContext context;
  context.set_timeout(std::chrono::milliseconds(200));
  ClientReader<StreamMessage> reader = stub->Generate(context, Forever(1000));
  absl::Status end;
  for (;;) {
    absl::StatusOr<std::optional<StreamMessage>> m = Run(reader.Read());
    if (!m.ok()) {
      end = m.status();
      break;
    }
    ASSERT_TRUE(m->has_value()) << "a stream without end ended";
  }
  EXPECT_THAT(end, StatusIs(absl::StatusCode::kDeadlineExceeded));
  service_.WaitForCancelledStreams(1);
}

TEST_P(ConformanceTest, TryCancelEndsAStreamAndTheHandlerSeesIt) {
  auto stub = NewStub();
  ClientContext context;
  ClientReader<StreamMessage> reader = stub->Generate(context, Forever());
  for (int i = 0; i < 10; ++i) ASSERT_THAT(Run(reader.Read()), IsOk());
  std::thread other([&] { context.TryCancel(); });  // from any thread
  other.join();
  EXPECT_THAT(Run(reader.Read()), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(Run(reader.Finish()), StatusIs(absl::StatusCode::kCancelled));
  service_.WaitForCancelledStreams(1);
}

TEST_P(ConformanceTest, DroppingAStreamCancelsIt) {
  auto stub = NewStub();
  {
    ClientContext context;
    ClientReader<StreamMessage> reader = stub->Generate(context, Forever());
    for (int i = 0; i < 5; ++i) ASSERT_THAT(Run(reader.Read()), IsOk());
  }  // dropped unfinished
  service_.WaitForCancelledStreams(1);
}

TEST_P(ConformanceTest, ServerKilledMidStreamIsUnavailable) {
  dynrpc::testing::Subprocess server(DYNRPC_ECHO_SERVER_PATH, {},
                                     EnvironmentFor(GetParam()));
  std::optional<std::string> line = server.ReadLine(std::chrono::seconds(30));
  ASSERT_TRUE(line.has_value());
  address_ = line->substr(std::string("listening ").size());
  auto stub = NewStub();
  ClientContext context;
  context.set_timeout(std::chrono::seconds(60));  // a hang fails, not blocks
  ClientReader<StreamMessage> reader = stub->Generate(context, Forever(100));
  for (int i = 0; i < 10; ++i) ASSERT_THAT(Run(reader.Read()), IsOk());
  server.Kill();
  absl::Status end;
  for (;;) {  // what was already received may still be read
    absl::StatusOr<std::optional<StreamMessage>> m = Run(reader.Read());
    if (!m.ok()) {
      end = m.status();
      break;
    }
    ASSERT_TRUE(m->has_value());
  }
  EXPECT_THAT(end, StatusIs(absl::StatusCode::kUnavailable));
}

// A server that stops answering while its connection stays open (SIGSTOP: a
// hung process, or a half-open connection) is found by the core's liveness
// policy on every plane (a PING on TCP and HTTP/2, heartbeats on NATS): the
// call ends UNAVAILABLE saying so, long before its deadline.
TEST_P(ConformanceTest, AServerThatStopsAnsweringIsFoundByLiveness) {
  dynrpc::testing::Subprocess server(DYNRPC_ECHO_SERVER_PATH, {},
                                     EnvironmentFor(GetParam()));
  std::optional<std::string> line = server.ReadLine(std::chrono::seconds(30));
  ASSERT_TRUE(line && line->starts_with("listening ")) << line.value_or("");
  address_ = line->substr(std::string("listening ").size());
  Config config = ConfigFor(GetParam());
  config.tcp.keepalive_interval = std::chrono::milliseconds(200);
  config.tcp.keepalive_timeout = std::chrono::milliseconds(300);
  config.http.keep_alive_interval = std::chrono::seconds(1);  // the least
  config.http.keep_alive_timeout = std::chrono::seconds(1);
  // NATS: the plane's fixed heartbeats (every 1 s, lost after 4 s).
  auto stub = NewStub(config);
  ClientContext context;
  context.set_timeout(std::chrono::seconds(60));
  EchoRequest request;
  std::future<absl::StatusOr<EchoReply>> call =
      Spawn(stub->Block(context, request));
  ASSERT_EQ(server.ReadLine(std::chrono::seconds(30)).value_or(""), "blocked");
  ASSERT_TRUE(dynrpc::testing::StopChild(server.pid()));
  // Bounded, so that a plane without liveness fails here instead of
  // waiting for the deadline.
  const bool ended =
      call.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  dynrpc::testing::ContinueChild(server.pid());
  ASSERT_TRUE(ended) << "the call still waited 30 s after its server stopped";
  // Naming the setting that bounded the wait.
  const char* bound = GetParam() == RequestPlaneKind::kTcp
                          ? "DYN_TCP_KEEPALIVE_TIMEOUT=300 ms"
                      : GetParam() == RequestPlaneKind::kHttp
                          ? "DYN_HTTP2_KEEP_ALIVE_TIMEOUT_SECS=1"
                          : "3000 ms after a heartbeat";
  EXPECT_THAT(call.get(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("stopped answering"), HasSubstr(bound))));
}

// ---- Flow control ------------------------------------------------------------

// However slowly the client reads, the server can be at most one window
// ahead of it: buffering is bounded on both sides.
TEST_P(ConformanceTest, SlowReaderHoldsBackTheWriter) {
  auto stub = NewStub();
  constexpr int64_t kPayload = 1000, kCount = 20000;  // 20 MB in all
  const int64_t kWindowMessages = WindowBytes(GetParam()) / kPayload;
  ClientContext context;
  ClientReader<StreamMessage> reader =
      stub->Generate(context, Count(kCount, kPayload));
  int64_t max_ahead = 0;
  for (int64_t read = 0; read < kCount; ++read) {
    absl::StatusOr<std::optional<StreamMessage>> m = Run(reader.Read());
    ASSERT_THAT(m, IsOk());
    ASSERT_TRUE(m->has_value());
    ASSERT_EQ((*m)->sequence(), read);
    max_ahead = std::max(max_ahead, service_.generated() - read);
    ASSERT_LE(service_.generated(), read + kWindowMessages + 4)
        << "the server ran ahead of its window";
  }
  EXPECT_THAT(Run(reader.Finish()), IsOk());
  // It did fill the window (the bound above is not vacuous).
  EXPECT_GE(max_ahead, kWindowMessages / 2);
}

TEST_P(ConformanceTest, AMillionSmallMessagesArriveInOrder) {
  auto stub = NewStub();
  constexpr int64_t kCount = 1'000'000;
  ClientContext context;
  context.set_timeout(std::chrono::minutes(5));
  ClientReader<StreamMessage> reader = stub->Generate(context, Count(kCount, 16));
  auto read_all = [&]() -> asio::awaitable<int64_t> {
    int64_t n = 0;
    for (;;) {
      absl::StatusOr<std::optional<StreamMessage>> m = co_await reader.Read();
      if (!m.ok() || !m->has_value()) break;
      if ((*m)->sequence() != n) break;
      ++n;
    }
    co_return n;
  };
  EXPECT_EQ(Run(read_all()), kCount);
  EXPECT_THAT(Run(reader.Finish()), IsOk());
}

TEST_P(ConformanceTest, AStalledStreamDoesNotStarveOtherCalls) {
  auto stub = NewStub();
  ClientContext flood_context;
  ClientReader<StreamMessage> flood =
      stub->Generate(flood_context, Forever(64 * 1024));
  ASSERT_THAT(Run(flood.Read()), IsOk());  // opens it
  service_.WaitForGenerated(8);            // it is filling its window
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE(i);
    ClientContext context;
    context.set_timeout(std::chrono::seconds(30));
    EchoRequest request;
    request.set_text("through");
    EXPECT_THAT(Run(stub->Echo(context, request)), IsOk());
  }
  flood_context.TryCancel();
}

// ---- Sizes and error paths ---------------------------------------------------

TEST_P(ConformanceTest, StreamedMessagesNearTheLimitPassOverItAreRefused) {
  Config config = WithMaxMessage(ConfigFor(GetParam()), 4 << 20);
  StartServer(config);
  auto stub = NewStub(config);
  ClientContext context;
  ClientReaderWriter<StreamMessage, StreamMessage> stream = stub->Chat(context);
  StreamMessage big = Numbered(0, std::string((4 << 20) - 64, 'b'));
  ASSERT_THAT(Run(stream.Write(big)), IsOk());
  absl::StatusOr<std::optional<StreamMessage>> back = Run(stream.Read());
  ASSERT_THAT(back, IsOk());
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ((*back)->payload().size(), big.payload().size());

  StreamMessage too_big = Numbered(1, std::string(4 << 20, 'b'));
  EXPECT_THAT(Run(stream.Write(too_big)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("exceeds")));
  ASSERT_THAT(Run(stream.WritesDone()), IsOk());
  EXPECT_THAT(Run(stream.Finish()), IsOk());
}

// A response over the server's limit ends the call RESOURCE_EXHAUSTED naming
// the limit, and the caller still gets the handler's initial metadata.
TEST_P(ConformanceTest, AResponseOverTheLimitIsRefusedWithItsMetadata) {
  Config config = WithMaxMessage(ConfigFor(GetParam()), 1 << 20);
  StartServer(config);
  auto stub = NewStub(config);
  ClientContext context;
  context.AddMetadata("x-echo", "kept");
  SizeRequest request;
  request.set_reply_payload_bytes(2 << 20);
  EXPECT_THAT(Run(stub->Sized(context, request)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("exceeds")));
  EXPECT_EQ(FindMetadata(context.server_initial_metadata(), "x-echo-initial"),
            "kept");
}

TEST_P(ConformanceTest, UnknownStreamingMethodIsUnimplemented) {
  NewStub();
  ClientContext context;
  std::unique_ptr<RawClientStream> stream = channel_->StartStream(
      context, "/dynrpc.testing.EchoService/NoSuchStream", std::nullopt);
  EXPECT_THAT(Run(stream->Read()),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("/dynrpc.testing.EchoService/NoSuchStream")));
}

TEST_P(ConformanceTest, UnaryMethodCalledAsAStreamIsUnimplemented) {
  NewStub();
  ClientContext context;
  std::unique_ptr<RawClientStream> stream = channel_->StartStream(
      context, "/dynrpc.testing.EchoService/Echo", std::nullopt);
  EXPECT_THAT(Run(stream->Finish()),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("is a unary method")));
}

TEST_P(ConformanceTest, StreamingMethodCalledAsUnaryIsUnimplemented) {
  NewStub();
  ClientContext context;
  StreamRequest request;
  EXPECT_THAT(Run(channel_->CallUnary(context,
                                      "/dynrpc.testing.EchoService/Generate",
                                      request.SerializeAsString())),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("is a streaming method")));
}

TEST_P(ConformanceTest, UnreachableServerFailsTheStreamsFirstOperation) {
  {
    // A port the OS just handed out and took back: nothing listens there.
    asio::io_context io;
    asio::ip::tcp::acceptor probe(
        io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    address_ = "127.0.0.1:" + std::to_string(probe.local_endpoint().port());
  }
  auto stub = NewStub();
  ClientContext context;
  ClientReader<StreamMessage> reader = stub->Generate(context, Count(1));
  EXPECT_THAT(Run(reader.Read()), StatusIs(absl::StatusCode::kUnavailable));
}

// ---- Compression --------------------------------------------------------------
//
// Whether a message went compressed is seen through the sender's size limit,
// which counts the bytes on the wire: a 1 MiB compressible message passes a
// 64 KiB limit only compressed.

constexpr std::size_t kSmallLimit = 64 << 10;
constexpr std::size_t kCompressible = 1 << 20;

EchoRequest BigEcho(std::size_t bytes, char fill = 'e') {
  EchoRequest request;
  request.set_text("big");
  request.set_payload(std::string(bytes, fill));
  request.set_no_payload_back(true);
  return request;
}

TEST_P(ConformanceTest, CompressedCallsOfEveryKindRoundTrip) {
  auto stub = NewStub();
  for (Compression c : {Compression::kDeflate, Compression::kGzip}) {
    SCOPED_TRACE(CompressionName(c));
    const std::string name(CompressionName(c));
    {
      ClientContext context;
      context.set_compression(c);
      context.AddMetadata("x-compress", name);
      EchoRequest request;
      request.set_text("unary");
      request.set_payload(std::string(200 << 10, 'u'));
      absl::StatusOr<EchoReply> reply = Run(stub->Echo(context, request));
      ASSERT_THAT(reply, IsOk());
      EXPECT_EQ(reply->payload(), request.payload());
    }
    {
      ClientContext context;
      context.set_compression(c);
      context.AddMetadata("x-compress", name);
      ClientReader<StreamMessage> reader =
          stub->Generate(context, Count(3, 100 << 10));
      std::vector<StreamMessage> got = Run(ReadAll(reader));
      ASSERT_EQ(got.size(), 3u);
      for (const StreamMessage& m : got) {
        EXPECT_EQ(m.payload(), std::string(100 << 10, 'g'));
      }
      EXPECT_THAT(Run(reader.Finish()), IsOk());
    }
    {
      ClientContext context;
      context.set_compression(c);
      ClientWriter<StreamMessage, StreamSummary> writer =
          stub->Collect(context);
      for (int i = 0; i < 3; ++i) {
        ASSERT_THAT(Run(writer.Write(Numbered(i, std::string(100 << 10, 'c')))),
                    IsOk());
      }
      absl::StatusOr<StreamSummary> summary = Run(writer.Finish());
      ASSERT_THAT(summary, IsOk());
      EXPECT_EQ(summary->count(), 3);
      EXPECT_EQ(summary->bytes(), 300 << 10);
      EXPECT_TRUE(summary->in_order());
    }
    {
      ClientContext context;
      context.set_compression(c);
      context.AddMetadata("x-compress", name);
      ClientReaderWriter<StreamMessage, StreamMessage> chat =
          stub->Chat(context);
      for (const char* text : {"compressed", "uncompressed"}) {
        StreamMessage m = Numbered(0, std::string(100 << 10, 'b'));
        m.set_text(text);
        ASSERT_THAT(Run(chat.Write(m)), IsOk());
        absl::StatusOr<std::optional<StreamMessage>> back = Run(chat.Read());
        ASSERT_THAT(back, IsOk());
        ASSERT_TRUE(back->has_value());
        EXPECT_EQ((*back)->text(), text);
        EXPECT_EQ((*back)->payload(), m.payload());
      }
      ASSERT_THAT(Run(chat.WritesDone()), IsOk());
      EXPECT_THAT(Run(chat.Finish()), IsOk());
    }
  }
}

// Requests: what the context asks, else the channel's default; under the
// threshold, or with WriteOptions::no_compression, a message goes as it is.
TEST_P(ConformanceTest, RequestsGoCompressedAsTheContextOrChannelSays) {
  Config small = WithMaxMessage(ConfigFor(GetParam()), kSmallLimit);
  auto plain = NewStub(small);
  {
    ClientContext context;
    EXPECT_THAT(Run(plain->Echo(context, BigEcho(kCompressible))),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr("exceeds")));
  }
  {
    ClientContext context;
    context.set_compression(Compression::kGzip);
    EXPECT_THAT(Run(plain->Echo(context, BigEcho(kCompressible))), IsOk());
  }
  Config by_default = small;
  by_default.compression = Compression::kDeflate;
  auto compressing = NewStub(by_default);
  {
    ClientContext context;
    EXPECT_THAT(Run(compressing->Echo(context, BigEcho(kCompressible))),
                IsOk());
    // A context may still turn it off.
    ClientContext off;
    off.set_compression(Compression::kIdentity);
    EXPECT_THAT(Run(compressing->Echo(off, BigEcho(kCompressible))),
                StatusIs(absl::StatusCode::kResourceExhausted));
  }
  {
    // Message by message on a stream.
    ClientContext context;
    ClientWriter<StreamMessage, StreamSummary> writer =
        compressing->Collect(context);
    StreamMessage m = Numbered(0, std::string(kCompressible, 'w'));
    ASSERT_THAT(Run(writer.Write(m)), IsOk());
    WriteOptions as_is;
    as_is.no_compression = true;
    EXPECT_THAT(Run(writer.Write(Numbered(1, m.payload()), as_is)),
                StatusIs(absl::StatusCode::kResourceExhausted));
    absl::StatusOr<StreamSummary> summary = Run(writer.Finish());
    ASSERT_THAT(summary, IsOk());
    EXPECT_EQ(summary->count(), 1);  // the stream went on without it
  }
  Config high_threshold = by_default;
  high_threshold.compression_min_bytes = 2 << 20;
  auto threshold = NewStub(high_threshold);
  ClientContext context;
  EXPECT_THAT(Run(threshold->Echo(context, BigEcho(kCompressible))),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

// Responses: what the handler asks, else the server's default.
TEST_P(ConformanceTest, ResponsesGoCompressedAsTheHandlerOrServerSays) {
  Config small = WithMaxMessage(ConfigFor(GetParam()), kSmallLimit);
  StartServer(small);
  auto stub = NewStub();
  SizeRequest request;
  request.set_reply_payload_bytes(kCompressible);
  {
    ClientContext context;
    EXPECT_THAT(Run(stub->Sized(context, request)),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr("exceeds")));
  }
  {
    ClientContext context;
    context.AddMetadata("x-compress", "gzip");
    absl::StatusOr<EchoReply> reply = Run(stub->Sized(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->payload().size(), kCompressible);
  }
  {
    ClientContext context;
    context.AddMetadata("x-compress", "deflate");
    ClientReader<StreamMessage> reader =
        stub->Generate(context, Count(2, kCompressible));
    EXPECT_EQ(Run(ReadAll(reader)).size(), 2u);
    EXPECT_THAT(Run(reader.Finish()), IsOk());
  }
  Config by_default = small;
  by_default.compression = Compression::kGzip;
  StartServer(by_default);
  stub = NewStub();
  {
    ClientContext context;
    absl::StatusOr<EchoReply> reply = Run(stub->Sized(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->payload().size(), kCompressible);
  }
  // Every response compressed, however small: a client stream's one
  // response too.
  by_default.compression_min_bytes = 0;
  StartServer(by_default);
  stub = NewStub();
  ClientContext context;
  ClientWriter<StreamMessage, StreamSummary> writer = stub->Collect(context);
  StreamMessage m = Numbered(0);
  m.set_text(std::string(32 << 10, 't'));
  ASSERT_THAT(Run(writer.Write(m)), IsOk());
  absl::StatusOr<StreamSummary> summary = Run(writer.Finish());
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->texts(), m.text());
}

// A small compressed message that inflates past the receiver's limit is
// RESOURCE_EXHAUSTED naming the limit, both ways (the inflation stops at
// the limit: see compression_test).
TEST_P(ConformanceTest, InflationBombsAreRefusedNamingTheLimit) {
  constexpr std::size_t kLimit = 1 << 20;
  constexpr std::size_t kBomb = 16 << 20;
  const std::string names_limit =
      "inflates past the message size limit of " + std::to_string(kLimit);
  StartServer(WithMaxMessage(ConfigFor(GetParam()), kLimit));
  auto stub = NewStub();
  {
    ClientContext context;
    context.set_compression(Compression::kGzip);
    EXPECT_THAT(Run(stub->Echo(context, BigEcho(kBomb, '\0'))),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr(names_limit)));
  }
  {
    ClientContext context;
    context.set_compression(Compression::kDeflate);
    ClientWriter<StreamMessage, StreamSummary> writer = stub->Collect(context);
    (void)Run(writer.Write(Numbered(0, std::string(kBomb, '\0'))));
    EXPECT_THAT(Run(writer.Finish()),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr(names_limit)));
  }
  EXPECT_EQ(service_.calls(), 0);  // Echo's handler never ran

  StartServer(ConfigFor(GetParam()));
  stub = NewStub(WithMaxMessage(ConfigFor(GetParam()), kLimit));
  {
    ClientContext context;
    context.AddMetadata("x-compress", "gzip");
    SizeRequest request;
    request.set_reply_payload_bytes(kBomb);
    EXPECT_THAT(Run(stub->Sized(context, request)),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr(names_limit)));
  }
  {
    ClientContext context;
    context.AddMetadata("x-compress", "gzip");
    ClientReader<StreamMessage> reader =
        stub->Generate(context, Count(1, kBomb));
    EXPECT_THAT(Run(reader.Read()),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr(names_limit)));
    EXPECT_THAT(Run(reader.Finish()),
                StatusIs(absl::StatusCode::kResourceExhausted));
  }
}

// ---- Parity: promises whose copies once drifted between planes -------------

// One message, then a wait the call's end must cut short: Generate with
// then_wait_ms (its second wait is a "later co_await").
StreamRequest OneThenWait() {
  StreamRequest request;
  request.set_count(1);
  request.set_then_wait_ms(60'000);
  return request;
}

std::string InitialMetadata(const ClientContext& context,
                            std::string_view key) {
  return std::string(
      FindMetadata(context.server_initial_metadata(), key).value_or(""));
}

TEST_P(ConformanceTest, TryCancelKeepsInitialMetadataAndEndsTheHandlersWaits) {
  auto stub = NewStub();
  ClientContext context;
  context.AddMetadata("x-echo", "kept");
  ClientReader<StreamMessage> reader = stub->Generate(context, OneThenWait());
  ASSERT_THAT(Run(reader.Read()), IsOk());  // the headers came before it
  context.TryCancel();
  EXPECT_THAT(Run(reader.Finish()), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(InitialMetadata(context, "x-echo-initial"), "kept");
  // The handler's co_await after the one the cancel cut short ends too (a
  // 60 s timer: 30 s is long enough to tell).
  EXPECT_TRUE(service_.WaitForLaterWaitsEnded(1, std::chrono::seconds(30)))
      << "the handler's later co_await ran on after the call was cancelled";
}

TEST_P(ConformanceTest, DeadlineKeepsInitialMetadataAndEndsTheHandlersWaits) {
  auto stub = NewStub();
  ClientContext context;
  context.AddMetadata("x-echo", "kept");
  context.set_timeout(std::chrono::milliseconds(500));
  ClientReader<StreamMessage> reader = stub->Generate(context, OneThenWait());
  ASSERT_THAT(Run(reader.Read()), IsOk());
  EXPECT_THAT(Run(reader.Read()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(InitialMetadata(context, "x-echo-initial"), "kept");
  EXPECT_TRUE(service_.WaitForLaterWaitsEnded(1, std::chrono::seconds(30)))
      << "the handler's later co_await ran on after the deadline";
}

// A call whose deadline has already passed is never sent: the handler
// never runs, on any plane (unary and streaming).
TEST_P(ConformanceTest, ACallPastItsDeadlineNeverRunsTheHandler) {
  auto stub = NewStub();
  for (int i = 0; i < 20; ++i) {
    ClientContext context;
    context.set_deadline(Clock::now() - std::chrono::milliseconds(1));
    EchoRequest request;
    EXPECT_THAT(Run(stub->Echo(context, request)),
                StatusIs(absl::StatusCode::kDeadlineExceeded));
    ClientContext stream_context;
    stream_context.set_deadline(Clock::now() - std::chrono::milliseconds(1));
    ClientReader<StreamMessage> reader =
        stub->Generate(stream_context, Count(1));
    EXPECT_THAT(Run(reader.Read()),
                StatusIs(absl::StatusCode::kDeadlineExceeded));
  }
  // A call after them reaches the server, on the same channel: the server
  // saw that one only.
  ClientContext next;
  const EchoRequest request;
  ASSERT_THAT(Run(stub->Echo(next, request)), IsOk());
  EXPECT_EQ(service_.calls(), 1);
  EXPECT_EQ(service_.generated(), 0);
}

// A reader and a writer coroutine start a stream at the same time: both
// wait for the one open, and both succeed.
TEST_P(ConformanceTest, ReaderAndWriterCanOpenAStreamAtOnce) {
  auto stub = NewStub();
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE(round);
    ClientContext context;
    ClientReaderWriter<StreamMessage, StreamMessage> stream =
        stub->Chat(context);
    const StreamMessage message = Numbered(round);
    std::future<absl::StatusOr<std::optional<StreamMessage>>> read =
        Spawn(stream.Read());
    std::future<absl::Status> written = Spawn(stream.Write(message));
    ASSERT_THAT(written.get(), IsOk());
    absl::StatusOr<std::optional<StreamMessage>> echoed = read.get();
    ASSERT_THAT(echoed, IsOk());
    ASSERT_TRUE(echoed->has_value());
    EXPECT_EQ((*echoed)->sequence(), round);
    ASSERT_THAT(Run(stream.WritesDone()), IsOk());
    EXPECT_THAT(Run(stream.Finish()), IsOk());
  }
}

// DYN_SERVER_MAX_HANDLERS (the core's admission limit): a call past it ends
// at once with RESOURCE_EXHAUSTED naming the limit, without running; the
// handlers within it go on.
TEST_P(ConformanceTest, CallsPastTheHandlerLimitAreRefusedWithoutRunning) {
  Config config = ConfigFor(GetParam());
  config.limits.max_handlers = 2;
  StartServer(config);
  auto stub = NewStub();
  ClientContext first, second;
  EchoRequest request;
  std::future<absl::StatusOr<EchoReply>> a = Spawn(stub->Block(first, request));
  std::future<absl::StatusOr<EchoReply>> b =
      Spawn(stub->Block(second, request));
  service_.WaitForBlocked(2);
  ClientContext third;
  EXPECT_THAT(Run(stub->Echo(third, request)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("DYN_SERVER_MAX_HANDLERS=2")));
  EXPECT_EQ(service_.calls(), 2);  // the refused call never ran
  service_.ReleaseAll();
  EXPECT_THAT(a.get(), IsOk());
  EXPECT_THAT(b.get(), IsOk());
  ClientContext after;
  EXPECT_THAT(Run(stub->Echo(after, request)), IsOk());
}

// ---- Health and drain -------------------------------------------------------

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

TEST_P(ConformanceTest, EveryServerAnswersHealthChecks) {
  NewStub();
  Health::Stub health(channel_);
  auto check = [&](std::string service) {
    ClientContext context;
    HealthCheckRequest request;
    request.set_service(std::move(service));
    return Run(health.Check(context, request));
  };
  for (std::string service : {"", "dynrpc.testing.EchoService"}) {
    absl::StatusOr<HealthCheckResponse> r = check(service);
    ASSERT_THAT(r, IsOk()) << service;
    EXPECT_EQ(r->status(), HealthCheckResponse::SERVING) << service;
  }
  EXPECT_THAT(check("no.Such"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no.Such")));
}

// Health watches are handlers: DYN_SERVER_MAX_HANDLERS bounds how many a
// peer holds open (and the health service's list of them).
TEST_P(ConformanceTest, HealthWatchesCountAgainstTheHandlerLimit) {
  Config config = ConfigFor(GetParam());
  config.limits.max_handlers = 2;
  StartServer(config);
  NewStub();
  Health::Stub health(channel_);
  HealthCheckRequest request;
  ClientContext a, b, c;
  ClientReader<HealthCheckResponse> first = health.Watch(a, request);
  ClientReader<HealthCheckResponse> second = health.Watch(b, request);
  HealthCheckResponse seen;
  ASSERT_TRUE(Run(first.Next(seen)));
  ASSERT_TRUE(Run(second.Next(seen)));
  ClientReader<HealthCheckResponse> third = health.Watch(c, request);
  EXPECT_FALSE(Run(third.Next(seen)));
  EXPECT_THAT(Run(third.Finish()),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("DYN_SERVER_MAX_HANDLERS=2")));
  // One ends: its place is free again.
  a.TryCancel();
  (void)Run(first.Finish());
  EXPECT_TRUE(dynrpc::testing::WaitFor(
      [&] {
        ClientContext d;
        ClientReader<HealthCheckResponse> next = health.Watch(d, request);
        HealthCheckResponse r;
        bool ok = Run(next.Next(r));
        d.TryCancel();
        (void)Run(next.Finish());
        return ok;
      },
      std::chrono::seconds(10)));
}

TEST_P(ConformanceTest, ADrainingServerFinishesCallsInFlightAndRefusesNewOnes) {
  auto stub = NewStub();
  ClientContext held;
  EchoRequest request;
  std::future<absl::StatusOr<EchoReply>> in_flight =
      Spawn(stub->Block(held, request));
  service_.WaitForBlocked(1);
  std::future<bool> drained = std::async(std::launch::async, [&] {
    return server_->Drain(std::chrono::seconds(30));
  });
  Health::Stub health(channel_);
  ASSERT_TRUE(dynrpc::testing::WaitFor(
      [&] {
        ClientContext context;
        HealthCheckRequest check;
        absl::StatusOr<HealthCheckResponse> r =
            Run(health.Check(context, check));
        return r.ok() && r->status() == HealthCheckResponse::NOT_SERVING;
      },
      std::chrono::seconds(10)));
  // A new call is refused without running, marked for a retry elsewhere.
  ClientContext late;
  EXPECT_THAT(Run(stub->Echo(late, request)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("draining")));
  EXPECT_EQ(service_.calls(), 1);
  // The call in flight finishes, then the drain does.
  service_.ReleaseAll();
  EXPECT_THAT(in_flight.get(), IsOk());
  EXPECT_TRUE(drained.get());
}

INSTANTIATE_TEST_SUITE_P(
    Planes, ConformanceTest, ::testing::ValuesIn(kPlanes),
    [](const ::testing::TestParamInfo<RequestPlaneKind>& info) {
      return std::string(RequestPlaneName(info.param));
    });

}  // namespace
}  // namespace dynrpc
