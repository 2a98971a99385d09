// The NATS request plane end to end, through real nats-server processes:
// what it adds to the call model the conformance suite covers. Queue-group
// load sharing and per-instance targets, the server's max_payload, a NATS
// server that restarts, authentication, and a dynrpc server killed mid-call.
//
// Tests that need no nats-server of their own share SharedNatsUrl()'s, each
// in a namespace of its own (other test processes use it at the same time).

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "dynrpc/testing/echo.dynrpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nats/envelope.h"
#include "nats/nats.h"
#include "nats/protocol.h"
#include "support/echo_service.h"
#include "support/nats_server.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace dynrpc {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoService;
using ::dynrpc::testing::EchoServiceImpl;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::NatsServerProcess;
using ::dynrpc::testing::SharedNatsUrl;
using ::dynrpc::testing::SizeRequest;
using ::dynrpc::testing::StatusIs;
using ::dynrpc::testing::StreamMessage;
using ::dynrpc::testing::UniqueNatsNamespace;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr std::size_t kMiB = 1 << 20;
// nats-server's max_payload values, as its INFO reports them.
constexpr int64_t kDefaultMaxPayload = 1048576;  // the default, "1MB"
constexpr int64_t kRaisedMaxPayload = 8388608;   // "max_payload: 8MB"

std::unique_ptr<NatsServerProcess> StartNats(std::string extra_config = "") {
  absl::StatusOr<std::unique_ptr<NatsServerProcess>> nats =
      NatsServerProcess::Start(std::move(extra_config));
  EXPECT_THAT(nats, IsOk());
  return nats.ok() ? *std::move(nats) : nullptr;
}

EchoRequest Payload(std::size_t bytes) {
  EchoRequest request;
  request.set_text("big");
  request.set_payload(std::string(bytes, 'p'));
  return request;
}

class NatsPlaneTest : public ::testing::Test {
 protected:
  // The NATS plane on the NATS server at `url`, in this test's namespace.
  Config NatsConfig(const std::string& url) const {
    Config config;
    config.request_plane = RequestPlaneKind::kNats;
    config.nats.server = url;
    config.nats.name_space = name_space_;
    return config;
  }

  // A started server for `service` (which must outlive it); nullptr, and a
  // failed test, if it does not start.
  std::unique_ptr<Server> StartServer(EchoServiceImpl& service,
                                      const Config& config) {
    auto server = std::make_unique<Server>(runtime_.executor(), config);
    EXPECT_TRUE(server->AddService(service).ok());
    absl::Status started = server->Start();
    EXPECT_THAT(started, IsOk());
    return started.ok() ? std::move(server) : nullptr;
  }

  std::unique_ptr<EchoService::Stub> NewStub(const std::string& target,
                                             const Config& config) {
    absl::StatusOr<std::shared_ptr<Channel>> channel =
        Channel::Create(runtime_.executor(), target, config);
    EXPECT_THAT(channel, IsOk());
    if (!channel.ok()) return nullptr;
    return std::make_unique<EchoService::Stub>(*channel);
  }

  template <typename T>
  std::future<T> Spawn(asio::awaitable<T> op) {
    return asio::co_spawn(runtime_.executor(), std::move(op), asio::use_future);
  }

  // One call, bounded: every call of these tests has a deadline, so that a
  // plane that loses a call fails the test instead of hanging it.
  absl::StatusOr<EchoReply> Echo(EchoService::Stub& stub,
                                 const EchoRequest& request,
                                 Clock::duration timeout = seconds(10)) {
    ClientContext context;
    context.set_timeout(timeout);
    return Spawn(stub.Echo(context, request)).get();
  }

  // Waits up to `timeout` for `call`; if it is still running then, fails the
  // test and cancels the call (through `context`), so that nothing outlives
  // the test.
  template <typename T>
  T Within(std::future<T>& call, ClientContext& context,
           Clock::duration timeout) {
    if (call.wait_for(timeout) != std::future_status::ready) {
      ADD_FAILURE() << "the call did not end within "
                    << std::chrono::duration_cast<milliseconds>(timeout).count()
                    << " ms";
      context.TryCancel();
    }
    return call.get();
  }

  const std::string name_space_ = UniqueNatsNamespace("nats_plane");
  Runtime runtime_{2};
};

// ---- Routing ----------------------------------------------------------------

TEST_F(NatsPlaneTest, InstancesOfAServiceShareCallsToAnyInstance) {
  EchoServiceImpl a_service, b_service;
  Config config = NatsConfig(SharedNatsUrl());
  std::unique_ptr<Server> a = StartServer(a_service, config);
  std::unique_ptr<Server> b = StartServer(b_service, config);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);

  constexpr int kCalls = 200;
  for (int i = 0; i < kCalls; ++i) {
    SCOPED_TRACE(i);
    EchoRequest request;
    request.set_text("call " + std::to_string(i));
    absl::StatusOr<EchoReply> reply = Echo(*stub, request);
    ASSERT_THAT(reply, IsOk());
    ASSERT_EQ(reply->text(), request.text());
  }
  // The NATS server picks a queue member per message at random: with 200
  // calls, fewer than 21 on either side has odds below 1e-20.
  EXPECT_GT(a_service.calls(), 20);
  EXPECT_GT(b_service.calls(), 20);
  EXPECT_EQ(a_service.calls() + b_service.calls(), kCalls);
}

// A message on a method subject that is not a dynrpc call (no envelope: a
// plain NATS request) is answered with why, not run and not dropped.
TEST_F(NatsPlaneTest, AForeignMessageOnAMethodSubjectIsAnsweredWithWhy) {
  EchoServiceImpl service;
  Config config = NatsConfig(SharedNatsUrl());
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);

  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, SharedNatsUrl().c_str()), NATS_OK);
  natsSubscription* inbox = nullptr;
  ASSERT_EQ(natsConnection_SubscribeSync(&inbox, nc, "foreign.inbox"), NATS_OK);
  const std::string subject =
      name_space_ + ".rpc.dynrpc.testing.EchoService.Echo";
  ASSERT_EQ(natsConnection_PublishRequestString(nc, subject.c_str(),
                                                "foreign.inbox", "hello"),
            NATS_OK);
  natsMsg* answer = nullptr;
  ASSERT_EQ(natsSubscription_NextMsg(&answer, inbox, 10000), NATS_OK);
  internal::nats::NatsMessage m;
  std::optional<std::size_t> payload = internal::nats::ReadEnvelope(
      std::string_view(natsMsg_GetData(answer),
                       static_cast<std::size_t>(natsMsg_GetDataLength(answer))),
      m.headers);
  natsMsg_Destroy(answer);
  natsSubscription_Destroy(inbox);
  natsConnection_Destroy(nc);

  ASSERT_TRUE(payload.has_value());
  ASSERT_NE(m.Header(internal::nats::kType), nullptr);
  EXPECT_EQ(*m.Header(internal::nats::kType), "end");
  EXPECT_THAT(
      internal::nats::StatusFrom(m),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("malformed call")));
  EXPECT_EQ(service.calls(), 0);
}

TEST_F(NatsPlaneTest, AnInstanceIdReachesThatInstanceOnly) {
  EchoServiceImpl a_service, b_service;
  Config config = NatsConfig(SharedNatsUrl());
  std::unique_ptr<Server> a = StartServer(a_service, config);
  std::unique_ptr<Server> b = StartServer(b_service, config);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_THAT(a->address(), MatchesRegex("[0-9a-f]{16}"));
  EXPECT_THAT(b->address(), MatchesRegex("[0-9a-f]{16}"));
  EXPECT_NE(a->address(), b->address());

  auto stub = NewStub(a->address(), config);
  ASSERT_NE(stub, nullptr);
  for (int i = 0; i < 50; ++i) {
    SCOPED_TRACE(i);
    ASSERT_THAT(Echo(*stub, EchoRequest()), IsOk());
  }
  EXPECT_EQ(a_service.calls(), 50);
  EXPECT_EQ(b_service.calls(), 0);
}

TEST_F(NatsPlaneTest, AnUnknownInstanceIdIsUnavailable) {
  EchoServiceImpl service;
  Config config = NatsConfig(SharedNatsUrl());
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  // An id of the right shape that no server has (ids are random).
  std::string unknown = server->address();
  unknown[0] = unknown[0] == '0' ? '1' : '0';
  auto stub = NewStub(unknown, config);
  ASSERT_NE(stub, nullptr);
  EXPECT_THAT(Echo(*stub, EchoRequest()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(service.calls(), 0);
}

TEST_F(NatsPlaneTest, AServiceWithNoInstanceIsUnavailable) {
  Config config = NatsConfig(SharedNatsUrl());
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);
  EXPECT_THAT(Echo(*stub, EchoRequest()),
              StatusIs(absl::StatusCode::kUnavailable));
}

// ---- max_payload ------------------------------------------------------------

TEST_F(NatsPlaneTest, AMessageOverTheDefaultMaxPayloadIsRefused) {
  std::unique_ptr<NatsServerProcess> nats = StartNats();
  ASSERT_NE(nats, nullptr);
  ASSERT_THAT(nats->info(), HasSubstr("\"max_payload\":" +
                                      std::to_string(kDefaultMaxPayload)));
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);

  EchoRequest request = Payload(2 * kMiB);
  EXPECT_THAT(Echo(*stub, request),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr(std::to_string(request.ByteSizeLong())),
                             HasSubstr(std::to_string(kDefaultMaxPayload)),
                             HasSubstr("raise max_payload"))));
  EXPECT_EQ(service.calls(), 0);
  // The refusal is the message's alone: the next call goes through.
  EXPECT_THAT(Echo(*stub, Payload(1000)), IsOk());
}

TEST_F(NatsPlaneTest, AResponseOverMaxPayloadIsRefused) {
  std::unique_ptr<NatsServerProcess> nats = StartNats();
  ASSERT_NE(nats, nullptr);
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);

  ClientContext context;
  context.set_timeout(seconds(10));
  SizeRequest request;
  request.set_reply_payload_bytes(2 * kMiB);
  EXPECT_THAT(Spawn(stub->Sized(context, request)).get(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("max_payload"),
                             HasSubstr(std::to_string(kDefaultMaxPayload)))));
  EXPECT_EQ(service.calls(), 1);
}

TEST_F(NatsPlaneTest, ARaisedMaxPayloadCarriesBiggerMessagesUpToIt) {
  std::unique_ptr<NatsServerProcess> nats = StartNats("max_payload: 8MB");
  ASSERT_NE(nats, nullptr);
  ASSERT_THAT(nats->info(), HasSubstr("\"max_payload\":" +
                                      std::to_string(kRaisedMaxPayload)));
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);

  // Between the default and the raised limit: there and back.
  EchoRequest request = Payload(2 * kMiB);
  absl::StatusOr<EchoReply> reply = Echo(*stub, request);
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->payload(), request.payload());

  EchoRequest too_big = Payload(10 * kMiB);
  EXPECT_THAT(Echo(*stub, too_big),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr(std::to_string(too_big.ByteSizeLong())),
                             HasSubstr(std::to_string(kRaisedMaxPayload)),
                             HasSubstr("raise max_payload"))));
  EXPECT_EQ(service.calls(), 1);
}

// The NATS counterpart of the conformance suite's
// StreamedMessagesNearTheLimitPassOverItAreRefused: the limit is the NATS
// server's, and counts the plane's headers, so "near" leaves them 1 KiB.
TEST_F(NatsPlaneTest, StreamedMessagesUnderMaxPayloadPassOverItAreRefused) {
  std::unique_ptr<NatsServerProcess> nats = StartNats();
  ASSERT_NE(nats, nullptr);
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);

  ClientContext context;
  context.set_timeout(seconds(30));
  ClientReaderWriter<StreamMessage, StreamMessage> stream = stub->Chat(context);
  auto run = [&]<typename T>(asio::awaitable<T> op) {
    return Spawn(std::move(op)).get();
  };
  StreamMessage near;
  near.set_sequence(0);
  near.set_payload(std::string(kDefaultMaxPayload - 1024, 'n'));
  ASSERT_THAT(run(stream.Write(near)), IsOk());
  absl::StatusOr<std::optional<StreamMessage>> back = run(stream.Read());
  ASSERT_THAT(back, IsOk());
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ((*back)->payload().size(), near.payload().size());

  StreamMessage over;
  over.set_sequence(1);
  over.set_payload(std::string(kDefaultMaxPayload, 'o'));
  EXPECT_THAT(run(stream.Write(over)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("max_payload"),
                             HasSubstr(std::to_string(kDefaultMaxPayload)))));
  // The stream goes on without it: the next message, and its echo, pass
  // (its credit came back, and no sequence number was skipped).
  StreamMessage after;
  after.set_sequence(2);
  after.set_payload(std::string(kDefaultMaxPayload - 1024, 'a'));
  ASSERT_THAT(run(stream.Write(after)), IsOk());
  back = run(stream.Read());
  ASSERT_THAT(back, IsOk());
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ((*back)->sequence(), 2);
  ASSERT_THAT(run(stream.WritesDone()), IsOk());
  EXPECT_THAT(run(stream.Finish()), IsOk());
}

// ---- A NATS server that restarts --------------------------------------------

TEST_F(NatsPlaneTest, CallsInFlightFailWhenNatsRestartsAndLaterCallsSucceed) {
  std::unique_ptr<NatsServerProcess> nats = StartNats();
  ASSERT_NE(nats, nullptr);
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);
  ASSERT_THAT(Echo(*stub, EchoRequest()), IsOk());  // connected

  ClientContext context;
  context.set_timeout(seconds(60));  // longer than any wait below
  const EchoRequest block;           // outlives the call
  std::future<absl::StatusOr<EchoReply>> in_flight =
      Spawn(stub->Block(context, block));
  ASSERT_TRUE(service.WaitForBlocked(1, seconds(10)));

  ASSERT_THAT(nats->Restart(), IsOk());
  EXPECT_THAT(Within(in_flight, context, seconds(20)),
              StatusIs(absl::StatusCode::kUnavailable));
  // The server's handler is cancelled too (its caller went silent).
  EXPECT_TRUE(service.WaitForBlocksEnded(1, seconds(20)));

  // nats.c reconnects by itself (every 250 ms): retry, each attempt a real
  // call with its own deadline, until one succeeds or 20 s have passed.
  const Clock::time_point deadline = Clock::now() + seconds(20);
  absl::Status last = absl::UnknownError("no attempt");
  int attempts = 0;
  while (Clock::now() < deadline) {
    ++attempts;
    EchoRequest request;
    request.set_text("after restart");
    absl::StatusOr<EchoReply> reply = Echo(*stub, request, seconds(2));
    last = reply.status();
    if (reply.ok()) {
      EXPECT_EQ(reply->text(), "after restart");
      break;
    }
    // Only the restart's own failures are expected meanwhile.
    ASSERT_THAT(
        last, ::testing::AnyOf(StatusIs(absl::StatusCode::kUnavailable),
                               StatusIs(absl::StatusCode::kDeadlineExceeded)));
  }
  ASSERT_THAT(last, IsOk()) << "no call succeeded within 20 s of the restart ("
                            << attempts << " attempts)";
  // Both sides are back: calls keep succeeding.
  for (int i = 0; i < 10; ++i) EXPECT_THAT(Echo(*stub, EchoRequest()), IsOk());
}

// ---- Authentication ---------------------------------------------------------

TEST_F(NatsPlaneTest, ATokenTheServerRequiresAuthenticates) {
  std::unique_ptr<NatsServerProcess> nats =
      StartNats("authorization { token: \"s3cret\" }");
  ASSERT_NE(nats, nullptr);
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  config.nats.token = "s3cret";
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);
  EXPECT_THAT(Echo(*stub, EchoRequest()), IsOk());
}

TEST_F(NatsPlaneTest, AMissingOrWrongTokenIsUnauthenticated) {
  std::unique_ptr<NatsServerProcess> nats =
      StartNats("authorization { token: \"s3cret\" }");
  ASSERT_NE(nats, nullptr);
  for (std::string token : {"", "wrong"}) {
    SCOPED_TRACE("token \"" + token + "\"");
    EchoServiceImpl service;
    Config config = NatsConfig(nats->url());
    config.nats.token = token;
    Server server(runtime_.executor(), config);
    EXPECT_TRUE(server.AddService(service).ok());
    EXPECT_THAT(server.Start(), StatusIs(absl::StatusCode::kUnauthenticated,
                                         AllOf(HasSubstr(nats->url()),
                                               HasSubstr("NATS_AUTH_TOKEN"))));
  }
}

TEST_F(NatsPlaneTest, AUserAndPasswordTheServerRequiresAuthenticate) {
  std::unique_ptr<NatsServerProcess> nats =
      StartNats("authorization { user: a, password: b }");
  ASSERT_NE(nats, nullptr);
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  config.nats.user = "a";
  config.nats.password = "b";
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_NE(stub, nullptr);
  EXPECT_THAT(Echo(*stub, EchoRequest()), IsOk());

  EchoServiceImpl refused_service;
  Config wrong = config;
  wrong.nats.password = "not-b";
  Server refused(runtime_.executor(), wrong);
  EXPECT_TRUE(refused.AddService(refused_service).ok());
  EXPECT_THAT(refused.Start(), StatusIs(absl::StatusCode::kUnauthenticated,
                                        HasSubstr("NATS_AUTH_PASSWORD")));
}

TEST_F(NatsPlaneTest, AnUnreachableNatsServerIsUnavailableNamingIt) {
  std::unique_ptr<NatsServerProcess> nats = StartNats();
  ASSERT_NE(nats, nullptr);
  nats->Stop();  // its port: nothing listens there now
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  Server server(runtime_.executor(), config);
  EXPECT_TRUE(server.AddService(service).ok());
  EXPECT_THAT(server.Start(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(nats->url())));
}

// ---- NATS down: calls fail fast, nothing blocks, and it comes back ----------

// A loopback listener that never accepts: a NATS server that takes the TCP
// connection (the kernel's backlog does) and never says a word.
class SilentListener {
 public:
  SilentListener() : acceptor_(io_) {
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.bind(endpoint);
    acceptor_.listen(4096);
  }
  std::string url() const {
    return "nats://127.0.0.1:" +
           std::to_string(acceptor_.local_endpoint().port());
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
};

class NatsDownTest : public NatsPlaneTest {
 protected:
  static constexpr milliseconds kConnectTimeout{1500};

  // A TCP server in this process, on the same runtime threads, and a stub
  // for it: whether it answers shows the runtime is not blocked.
  std::unique_ptr<EchoService::Stub> StartTcpNeighbour() {
    Config config;
    config.tcp.host = "127.0.0.1";
    tcp_server_ = StartServer(tcp_service_, config);
    if (tcp_server_ == nullptr) return nullptr;
    return NewStub(tcp_server_->address(), config);
  }

  // `n` concurrent Echo calls of `request` (which must outlive them), each
  // with `timeout`.
  struct ManyCalls {
    std::vector<std::unique_ptr<ClientContext>> contexts;
    std::vector<std::future<absl::StatusOr<EchoReply>>> calls;
  };
  ManyCalls SpawnEchoes(EchoService::Stub& stub, const EchoRequest& request,
                        int n, Clock::duration timeout) {
    ManyCalls many;
    for (int i = 0; i < n; ++i) {
      many.contexts.push_back(std::make_unique<ClientContext>());
      many.contexts.back()->set_timeout(timeout);
      many.calls.push_back(Spawn(stub.Echo(*many.contexts.back(), request)));
    }
    return many;
  }

  // Destroyed before the runtime (a member of the base class).
  EchoServiceImpl tcp_service_;
  std::unique_ptr<Server> tcp_server_;

  // With the NATS server at `url` down: a call whose deadline passes while
  // the client connects gets DEADLINE_EXCEEDED (one 1 ns away, at once);
  // 1,000 concurrent calls all end UNAVAILABLE naming NATS_SERVER within
  // 2 x DYN_NATS_CONNECT_TIMEOUT in all; and a TCP server in the same
  // process (the same runtime threads) answers meanwhile.
  void CallsFailFastAndNothingBlocks(const std::string& url) {
    auto tcp_stub = StartTcpNeighbour();
    ASSERT_NE(tcp_stub, nullptr);

    Config config = NatsConfig(url);
    config.nats.connect_timeout = kConnectTimeout;
    const Clock::time_point start = Clock::now();
    auto stub = NewStub("*", config);
    ASSERT_NE(stub, nullptr);
    EXPECT_THAT(Echo(*stub, EchoRequest(), std::chrono::nanoseconds(1)),
                StatusIs(absl::StatusCode::kDeadlineExceeded));

    constexpr int kCalls = 1000;
    const EchoRequest request;
    ManyCalls many = SpawnEchoes(*stub, request, kCalls, seconds(30));
    auto& calls = many.calls;
    // The runtime's threads are free: the TCP plane answers meanwhile.
    for (int i = 0; i < 20; ++i) {
      ASSERT_THAT(Echo(*tcp_stub, EchoRequest(), seconds(10)), IsOk());
    }
    const Clock::time_point bound = start + 2 * kConnectTimeout;
    for (int i = 0; i < kCalls; ++i) {
      SCOPED_TRACE(i);
      ASSERT_EQ(calls[i].wait_until(bound), std::future_status::ready)
          << "a call was still waiting at 2 x DYN_NATS_CONNECT_TIMEOUT";
      EXPECT_THAT(calls[i].get(),
                  StatusIs(absl::StatusCode::kUnavailable,
                           AllOf(HasSubstr("NATS_SERVER"), HasSubstr(url))));
    }
  }
};

TEST_F(NatsDownTest, RefusingServerFailsCallsFastAndCallsSucceedOnceItIsBack) {
  std::unique_ptr<NatsServerProcess> nats = StartNats();
  ASSERT_NE(nats, nullptr);
  nats->Stop();  // its port refuses connections now
  CallsFailFastAndNothingBlocks(nats->url());
  if (HasFatalFailure()) return;

  // NATS comes back on the same port: the client, still retrying in the
  // background, connects; a server starts and calls succeed, with no new
  // channel. Each attempt is a real call with its own deadline.
  ASSERT_THAT(nats->Restart(), IsOk());
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  config.nats.connect_timeout = kConnectTimeout;
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  const Clock::time_point deadline = Clock::now() + seconds(20);
  absl::Status last = absl::UnknownError("no attempt");
  while (Clock::now() < deadline && !last.ok()) {
    last = Echo(*stub, EchoRequest(), seconds(2)).status();
  }
  EXPECT_THAT(last, IsOk()) << "no call succeeded within 20 s of NATS's return";
}

TEST_F(NatsDownTest, SilentServerFailsCallsWithinTheConnectTimeout) {
  SilentListener silent;
  // A deadline shorter than the connect timeout is honoured while the
  // client still waits for the server.
  {
    Config config = NatsConfig(silent.url());
    config.nats.connect_timeout = kConnectTimeout;
    auto stub = NewStub("*", config);
    ASSERT_NE(stub, nullptr);
    EXPECT_THAT(Echo(*stub, EchoRequest(), milliseconds(200)),
                StatusIs(absl::StatusCode::kDeadlineExceeded));
  }
  SilentListener other;  // a connection attempt of its own
  CallsFailFastAndNothingBlocks(other.url());
}

// A NATS server that stops reading (SIGSTOP: its socket buffers fill) must
// not block the runtime's threads for ever: a publish that cannot be written
// within DYN_NATS_CONNECT_TIMEOUT fails, its call with it, and a TCP server in
// the same process answers again. Its calls all end well before their
// deadlines would matter (60 s).
TEST_F(NatsDownTest, StoppedServerDoesNotBlockPublishersForEver) {
  std::unique_ptr<NatsServerProcess> nats = StartNats("max_payload: 8MB");
  ASSERT_NE(nats, nullptr);
  EchoServiceImpl service;
  Config config = NatsConfig(nats->url());
  config.nats.connect_timeout = kConnectTimeout;
  std::unique_ptr<Server> server = StartServer(service, config);
  ASSERT_NE(server, nullptr);
  auto stub = NewStub("*", config);
  ASSERT_THAT(Echo(*stub, EchoRequest()), IsOk());

  auto tcp_stub = StartTcpNeighbour();
  ASSERT_NE(tcp_stub, nullptr);

  ASSERT_TRUE(dynrpc::testing::StopChild(nats->pid()));
  // 64 MiB of requests: far more than the socket buffers between us hold.
  const EchoRequest big = Payload(4 * kMiB);
  constexpr int kCalls = 16;
  ManyCalls many = SpawnEchoes(*stub, big, kCalls, seconds(60));
  auto& calls = many.calls;
  const Clock::time_point bound = Clock::now() + seconds(45);
  bool all_ended = true;
  for (int i = 0; i < kCalls && all_ended; ++i) {
    all_ended = calls[i].wait_until(bound) == std::future_status::ready;
  }
  // The runtime is free again: the TCP plane answers.
  ClientContext tcp_context;
  tcp_context.set_timeout(seconds(20));
  const EchoRequest ping;
  std::future<absl::StatusOr<EchoReply>> tcp =
      Spawn(tcp_stub->Echo(tcp_context, ping));
  bool tcp_answered = tcp.wait_for(seconds(30)) == std::future_status::ready;
  // Whatever happened, NATS runs again, so that nothing stays blocked.
  dynrpc::testing::ContinueChild(nats->pid());
  EXPECT_TRUE(all_ended) << "a call was still blocked 45 s after NATS stopped";
  EXPECT_TRUE(tcp_answered) << "the runtime's threads stayed blocked";
  EXPECT_THAT(tcp.get(), IsOk());
  for (auto& call : calls) {
    absl::StatusOr<EchoReply> reply = call.get();
    // Those published before the buffers filled may even be answered once
    // NATS runs again; the rest fail as unavailable.
    if (!reply.ok()) {
      EXPECT_THAT(reply, ::testing::AnyOf(
                             StatusIs(absl::StatusCode::kUnavailable),
                             StatusIs(absl::StatusCode::kDeadlineExceeded)));
    }
  }
}

// ---- A dynrpc server that dies ----------------------------------------------

TEST_F(NatsPlaneTest, AServerKilledMidCallIsUnavailableWithinSeconds) {
  const std::string url = SharedNatsUrl();
  dynrpc::testing::Subprocess echo_server(
      DYNRPC_ECHO_SERVER_PATH, {},
      {"DYN_REQUEST_PLANE=nats", "NATS_SERVER=" + url,
       "DYN_NAMESPACE=" + name_space_});
  std::optional<std::string> line = echo_server.ReadLine(seconds(30));
  ASSERT_TRUE(line.has_value()) << "echo_server did not start";
  ASSERT_THAT(*line, MatchesRegex("listening [0-9a-f]{16}"));
  const std::string address = line->substr(std::string("listening ").size());

  auto stub = NewStub(address, NatsConfig(url));
  ASSERT_NE(stub, nullptr);
  ClientContext context;
  context.set_timeout(seconds(60));  // a lost call fails, later
  const EchoRequest block;           // outlives the call
  std::future<absl::StatusOr<EchoReply>> call =
      Spawn(stub->Block(context, block));
  ASSERT_EQ(echo_server.ReadLine(seconds(10)), "blocked");

  echo_server.Kill();
  const Clock::time_point killed = Clock::now();
  EXPECT_THAT(Within(call, context, seconds(10)),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_LT(Clock::now() - killed, seconds(10));
}

}  // namespace
}  // namespace dynrpc
