// Interoperability of dynrpc's HTTP/2 request plane with gRPC C++ (Debian's
// 1.51), both ways, over the standard gRPC-over-HTTP/2 protocol:
//
//   GrpcClientToDynrpcServer  grpc_echo_client runs each of its scenarios
//                             against echo_server on DYN_REQUEST_PLANE=http
//                             (gRPC calls the bare path /pkg.Service/Method).
//   DynrpcClientToGrpcServer  a dynrpc Channel on the http plane, with root
//                             path "/", calls grpc_echo_server.
//
// gRPC's generated code for echo.proto and dynrpc's have the same class
// names, so gRPC lives only in those two programs (grpc_echo_server.cc,
// grpc_echo_client.cc); this test links dynrpc alone and runs them as
// subprocesses. Every wait has a timeout, and every call a deadline.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "dynrpc/testing/echo.dynrpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/echo_service.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

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
using ::dynrpc::testing::Subprocess;
using ::testing::Contains;
using ::testing::Eq;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// How long a server may take to print its address.
constexpr std::chrono::seconds kStartTimeout(30);
// How long grpc_echo_client may run one scenario (it gives up on its own
// after 40 s).
constexpr std::chrono::seconds kClientTimeout(60);
// How long a server line that an event implies may take to appear.
constexpr std::chrono::seconds kLineTimeout(10);
// Calls that do not test deadlines get kCallTimeout, within what is left of
// the test's kTestBudget: generous for a slow (sanitized) build, and a test
// against a server that answers nothing still ends within ctest's 120 s.
constexpr std::chrono::seconds kCallTimeout(10);
constexpr std::chrono::seconds kTestBudget(50);

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) out += "  " + line + "\n";
  return out.empty() ? "  (nothing)\n" : out;
}

// Reads `process`'s lines until one equals `want` (true), or it ends or
// `timeout` passes (false). Appends every line read to `seen`.
bool WaitForLine(Subprocess& process, std::string_view want,
                 std::chrono::milliseconds timeout,
                 std::vector<std::string>& seen) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left.count() <= 0) return false;
    std::optional<std::string> line = process.ReadLine(left);
    if (!line) return false;
    seen.push_back(*line);
    if (*line == want) return true;
  }
}

// The address from the "listening <address>" line a server prints first, or
// nullopt (with what it printed instead in `seen`).
std::optional<std::string> ReadListeningAddress(
    Subprocess& server, std::vector<std::string>& seen) {
  constexpr std::string_view kPrefix = "listening ";
  std::optional<std::string> line = server.ReadLine(kStartTimeout);
  if (!line) return std::nullopt;
  seen.push_back(*line);
  if (!line->starts_with(kPrefix)) return std::nullopt;
  return line->substr(kPrefix.size());
}

// The host:port of a dynrpc server address, which is what a gRPC target
// names: a scheme ("http://") and a path are dropped, a bare host:port is
// kept as it is.
std::string HostPort(std::string_view address) {
  if (std::size_t scheme = address.find("://");
      scheme != std::string_view::npos) {
    address.remove_prefix(scheme + 3);
  }
  return std::string(address.substr(0, address.find('/')));
}

// `n` bytes running through every byte value, 0x00 and 0xff included.
std::string Pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 256);
  return s;
}

// ---- A gRPC client against a dynrpc server ----------------------------------

class GrpcClientToDynrpcServer : public ::testing::TestWithParam<std::string> {
};

TEST_P(GrpcClientToDynrpcServer, ScenarioPasses) {
  const std::string& scenario = GetParam();
  Subprocess server(DYNRPC_ECHO_SERVER_PATH, {},
                    {"DYN_REQUEST_PLANE=http", "DYN_HTTP_RPC_HOST=127.0.0.1",
                     "DYN_HTTP_RPC_PORT=0", "DYN_HTTP_RPC_ROOT_PATH=/v1/rpc"});
  std::vector<std::string> server_output;
  std::optional<std::string> address =
      ReadListeningAddress(server, server_output);
  ASSERT_TRUE(address.has_value())
      << "echo_server (DYN_REQUEST_PLANE=http) exited or took over "
      << kStartTimeout.count()
      << " s without a \"listening <address>\" line (its stderr, above, "
         "says why); it printed:\n"
      << JoinLines(server_output);

  const std::string target = HostPort(*address);
  Subprocess client(DYNRPC_GRPC_ECHO_CLIENT_PATH, {target, scenario}, {});
  std::vector<std::string> output;
  bool ended = false;
  const auto deadline = Clock::now() + kClientTimeout;
  while (!ended) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left.count() <= 0) break;
    std::optional<std::string> line = client.ReadLine(left);
    if (line) {
      output.push_back(*line);
    } else {
      ended = Clock::now() < deadline;  // end of output, not the timeout
    }
  }
  EXPECT_TRUE(ended) << "grpc_echo_client " << target << " " << scenario
                     << " was still running after " << kClientTimeout.count()
                     << " s";
  EXPECT_THAT(output, Contains("PASS " + scenario))
      << "grpc_echo_client " << target << " " << scenario
      << " (server address \"" << *address << "\") printed:\n"
      << JoinLines(output);
}

// The scenarios of grpc_echo_client (see grpc_echo_client.cc for what each
// checks); "all" is left out so that each fails on its own.
INSTANTIATE_TEST_SUITE_P(Scenarios, GrpcClientToDynrpcServer,
                         ::testing::Values("unary", "error", "deadline",
                                           "cancel", "server_streaming",
                                           "client_streaming", "bidi",
                                           "unknown_method", "large",
                                           "health", "compression",
                                           "reflection"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// ---- A dynrpc client against a gRPC server ----------------------------------

class DynrpcClientToGrpcServer : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc_server_ = std::make_unique<Subprocess>(DYNRPC_GRPC_ECHO_SERVER_PATH,
                                                std::vector<std::string>{},
                                                std::vector<std::string>{});
    std::optional<std::string> address =
        ReadListeningAddress(*grpc_server_, server_output_);
    ASSERT_TRUE(address.has_value())
        << "grpc_echo_server exited or took over " << kStartTimeout.count()
        << " s without a \"listening <address>\" line; it printed:\n"
        << JoinLines(server_output_);
    address_ = *address;
    budget_end_ = Clock::now() + kTestBudget;

    stub_ = NewStub();
    ASSERT_NE(stub_, nullptr);
  }

  // A stub on a channel of its own to the gRPC server, whose message size
  // limit is `max_message` when given.
  std::unique_ptr<EchoService::Stub> NewStub(
      std::optional<std::size_t> max_message = std::nullopt) {
    Config config;
    config.request_plane = RequestPlaneKind::kHttp;
    config.http.root_path = "/";  // the bare gRPC path, as gRPC serves it
    if (max_message) config.http.max_message_size = *max_message;
    absl::StatusOr<std::shared_ptr<Channel>> channel =
        Channel::Create(runtime_.executor(), address_, config);
    EXPECT_THAT(channel, IsOk());
    if (!channel.ok()) return nullptr;
    channel_ = *channel;
    return std::make_unique<EchoService::Stub>(channel_);
  }

  // Gives a call that does not test deadlines its deadline.
  void SetTimeout(ClientContext& context) const {
    context.set_deadline(std::min(Clock::now() + kCallTimeout, budget_end_));
  }

  // Whether the gRPC server prints `line` within kLineTimeout (lines before
  // it are skipped).
  ::testing::AssertionResult ServerPrints(std::string_view line) {
    if (WaitForLine(*grpc_server_, line, kLineTimeout, server_output_)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << "grpc_echo_server did not print \"" << line << "\" within "
           << kLineTimeout.count() << " s; it printed:\n"
           << JoinLines(server_output_);
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

  // Declared first: killed after the channel and the runtime are gone.
  std::unique_ptr<Subprocess> grpc_server_;
  std::vector<std::string> server_output_;
  Runtime runtime_{2};
  std::string address_;
  Clock::time_point budget_end_;
  std::shared_ptr<Channel> channel_;
  std::unique_ptr<EchoService::Stub> stub_;
};

TEST_F(DynrpcClientToGrpcServer, UnaryEchoCarriesPayloadAndMetadataBothWays) {
  ClientContext context;
  SetTimeout(context);
  context.AddMetadata("x-echo", "v1");
  EchoRequest request;
  request.set_text("hello");
  request.set_payload(Pattern(1024));
  absl::StatusOr<EchoReply> reply = Run(stub_->Echo(context, request));
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->text(), "hello");
  EXPECT_EQ(reply->payload(), request.payload());
  EXPECT_EQ(FindMetadata(context.server_initial_metadata(), "x-echo-initial"),
            "v1");
  EXPECT_EQ(FindMetadata(context.server_trailing_metadata(), "x-echo-trailing"),
            "v1");
}

TEST_F(DynrpcClientToGrpcServer, HandlerSeesTheCallersMetadata) {
  struct Case {
    std::optional<std::string> sent;  // x-plain's value, if any
    std::string want;
  };
  for (const Case& c :
       {Case{"hello world", "hello world"}, Case{std::nullopt, "<absent>"}}) {
    SCOPED_TRACE(c.want);
    ClientContext context;
    SetTimeout(context);
    if (c.sent) context.AddMetadata("x-plain", *c.sent);
    EchoRequest request;
    request.set_text("metadata:x-plain");
    absl::StatusOr<EchoReply> reply = Run(stub_->Echo(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->text(), c.want);
  }
}

TEST_F(DynrpcClientToGrpcServer, ErrorStatusArrivesUnchanged) {
  struct Case {
    absl::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases = {
      {absl::StatusCode::kFailedPrecondition, "bad state: ü"},
      {absl::StatusCode::kNotFound, "not found: key 42"},
      // '%' and a line break must survive grpc-message's percent-encoding.
      {absl::StatusCode::kInvalidArgument, "100% wrong\nsecond line"},
      {absl::StatusCode::kUnknown, ""},
  };
  for (int code = 1; code <= 16; ++code) {
    cases.push_back({static_cast<absl::StatusCode>(code),
                     "because " + std::to_string(code)});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::Status(c.code, c.message).ToString());
    ClientContext context;
    SetTimeout(context);
    FailRequest request;
    request.set_code(static_cast<int>(c.code));
    request.set_message(c.message);
    EXPECT_EQ(Run(stub_->Fail(context, request)).status(),
              absl::Status(c.code, c.message));
  }
}

TEST_F(DynrpcClientToGrpcServer, DeadlineEndsABlockedCallOnBothSides) {
  ClientContext context;
  context.set_timeout(std::chrono::milliseconds(300));
  EchoRequest request;
  const auto start = Clock::now();
  EXPECT_THAT(Run(stub_->Block(context, request)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  // The gRPC server's handler ended too (by grpc-timeout or the reset).
  EXPECT_TRUE(ServerPrints("block cancelled"));
}

TEST_F(DynrpcClientToGrpcServer, HandlerSeesTheDeadline) {
  ClientContext context;
  context.set_timeout(std::chrono::seconds(10));
  EchoRequest request;
  request.set_text("deadline-ms");
  absl::StatusOr<EchoReply> reply = Run(stub_->Echo(context, request));
  ASSERT_THAT(reply, IsOk());
  int64_t left_ms = -1;
  const std::string& text = reply->text();
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), left_ms);
  ASSERT_TRUE(ec == std::errc() && end == text.data() + text.size())
      << "\"" << text << "\" is not a number of milliseconds";
  // Bounds that catch grpc-timeout sent in the wrong unit, or not at all
  // ("none").
  EXPECT_GE(left_ms, 5000);
  EXPECT_LE(left_ms, 10000);
}

TEST_F(DynrpcClientToGrpcServer, TryCancelEndsABlockedCallOnBothSides) {
  ClientContext context;
  SetTimeout(context);
  EchoRequest request;
  std::future<absl::StatusOr<EchoReply>> reply =
      Spawn(stub_->Block(context, request));
  const ::testing::AssertionResult blocked = ServerPrints("blocked");
  context.TryCancel();  // also when it never blocked: the call must end
  EXPECT_TRUE(blocked);
  EXPECT_THAT(reply.get(), StatusIs(absl::StatusCode::kCancelled));
  if (blocked) {
    EXPECT_TRUE(ServerPrints("block cancelled"));
  }
}

TEST_F(DynrpcClientToGrpcServer, ServerStreamDeliversEveryMessageInOrder) {
  for (int64_t count : {100, 0}) {
    SCOPED_TRACE(count);
    ClientContext context;
    SetTimeout(context);
    context.AddMetadata("x-echo", "stream");
    StreamRequest request;
    request.set_count(count);
    request.set_payload_bytes(10);
    ClientReader<StreamMessage> reader = stub_->Generate(context, request);
    std::vector<StreamMessage> got = Run(ReadAll(reader));
    ASSERT_EQ(got.size(), static_cast<std::size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      ASSERT_EQ(got[i].sequence(), i);
      ASSERT_EQ(got[i].payload(), std::string(10, 'g'));
    }
    EXPECT_THAT(Run(reader.Finish()), IsOk());
    if (count > 0) {
      EXPECT_EQ(
          FindMetadata(context.server_initial_metadata(), "x-echo-initial"),
          "stream");
    }
    EXPECT_EQ(
        FindMetadata(context.server_trailing_metadata(), "x-echo-trailing"),
        "stream");
  }
}

TEST_F(DynrpcClientToGrpcServer, ServerStreamErrorFollowsTheMessagesBeforeIt) {
  ClientContext context;
  SetTimeout(context);
  StreamRequest request;
  request.set_count(100);
  request.set_fail_after(3);
  ClientReader<StreamMessage> reader = stub_->Generate(context, request);
  for (int64_t i = 0; i < 3; ++i) {
    absl::StatusOr<std::optional<StreamMessage>> m = Run(reader.Read());
    ASSERT_THAT(m, IsOk());
    ASSERT_TRUE(m->has_value())
        << "the stream ended after " << i << " messages";
    EXPECT_EQ((*m)->sequence(), i);
  }
  EXPECT_THAT(Run(reader.Read()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("failed after 3 messages")));
}

TEST_F(DynrpcClientToGrpcServer, TryCancelEndsAnEndlessServerStream) {
  ClientContext context;
  SetTimeout(context);
  StreamRequest request;
  request.set_forever(true);
  request.set_payload_bytes(10);
  ClientReader<StreamMessage> reader = stub_->Generate(context, request);
  for (int64_t i = 0; i < 3; ++i) {
    absl::StatusOr<std::optional<StreamMessage>> m = Run(reader.Read());
    ASSERT_THAT(m, IsOk());
    ASSERT_TRUE(m->has_value())
        << "the stream ended after " << i << " messages";
    EXPECT_EQ((*m)->sequence(), i);
  }
  context.TryCancel();
  // Messages that had already arrived may still be read; then CANCELLED.
  absl::StatusOr<std::optional<StreamMessage>> m = Run(reader.Read());
  for (int i = 0; i < 100000 && m.ok() && m->has_value(); ++i) {
    m = Run(reader.Read());
  }
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kCancelled));
  // The gRPC server's writes failed: the cancellation reached it.
  EXPECT_TRUE(ServerPrints("generate cancelled"));
}

TEST_F(DynrpcClientToGrpcServer, ClientStreamIsCountedInOrder) {
  ClientContext context;
  SetTimeout(context);
  ClientWriter<StreamMessage, StreamSummary> writer = stub_->Collect(context);
  for (int64_t i = 0; i < 50; ++i) {
    StreamMessage message;
    message.set_sequence(i);
    message.set_payload(std::string(100, 'c'));
    ASSERT_THAT(Run(writer.Write(message)), IsOk()) << "message " << i;
  }
  absl::StatusOr<StreamSummary> summary = Run(writer.Finish());
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->count(), 50);
  EXPECT_EQ(summary->bytes(), 5000);
  EXPECT_TRUE(summary->in_order());
}

TEST_F(DynrpcClientToGrpcServer, BidiChatEchoesEachMessageInTurn) {
  ClientContext context;
  SetTimeout(context);
  ClientReaderWriter<StreamMessage, StreamMessage> stream =
      stub_->Chat(context);
  for (int64_t i = 0; i < 20; ++i) {
    SCOPED_TRACE(i);
    StreamMessage sent;
    sent.set_sequence(i);
    sent.set_text("chat " + std::to_string(i));
    sent.set_payload(Pattern(i * 10));
    ASSERT_THAT(Run(stream.Write(sent)), IsOk());
    absl::StatusOr<std::optional<StreamMessage>> got = Run(stream.Read());
    ASSERT_THAT(got, IsOk());
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ((*got)->sequence(), i);
    EXPECT_EQ((*got)->text(), sent.text());
    EXPECT_EQ((*got)->payload(), sent.payload());
  }
  ASSERT_THAT(Run(stream.WritesDone()), IsOk());
  absl::StatusOr<std::optional<StreamMessage>> end = Run(stream.Read());
  ASSERT_THAT(end, IsOk());
  EXPECT_FALSE(end->has_value());
  EXPECT_THAT(Run(stream.Finish()), IsOk());
}

TEST_F(DynrpcClientToGrpcServer, FourMiBMessagesRoundTrip) {
  constexpr std::size_t kBytes = 4u << 20;
  {
    ClientContext context;
    SetTimeout(context);
    EchoRequest request;
    request.set_text("large");
    request.set_payload(Pattern(kBytes));
    absl::StatusOr<EchoReply> reply = Run(stub_->Echo(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->text(), "large");
    EXPECT_EQ(reply->payload().size(), kBytes);
    EXPECT_TRUE(reply->payload() == request.payload());
  }
  {
    ClientContext context;
    SetTimeout(context);
    SizeRequest request;
    request.set_reply_payload_bytes(kBytes);
    absl::StatusOr<EchoReply> reply = Run(stub_->Sized(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->payload().size(), kBytes);
    EXPECT_TRUE(reply->payload() == std::string(kBytes, 'r'));
  }
}

// Our compressed requests inflate at gRPC's server: a 1 MiB request passes
// our 64 KiB limit (which counts the bytes on the wire) only compressed.
TEST_F(DynrpcClientToGrpcServer, CompressedRequestsAreInflatedByGrpc) {
  std::unique_ptr<EchoService::Stub> small = NewStub(64 << 10);
  ASSERT_NE(small, nullptr);
  EchoService::Stub& stub = *small;
  EchoRequest request;
  request.set_text("compressed");
  request.set_payload(std::string(1 << 20, 'c'));
  request.set_no_payload_back(true);
  for (Compression c : {Compression::kGzip, Compression::kDeflate}) {
    SCOPED_TRACE(CompressionName(c));
    ClientContext context;
    SetTimeout(context);
    context.set_compression(c);
    absl::StatusOr<EchoReply> reply = Run(stub.Echo(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->text(), "compressed");
  }
  ClientContext plain;
  SetTimeout(plain);
  EXPECT_THAT(Run(stub.Echo(plain, request)),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

// gRPC's compressed responses (it compresses when asked, "x-compress")
// inflate at our client, unary and streamed, and a stream of ours
// compressed both ways goes through.
TEST_F(DynrpcClientToGrpcServer, CompressedResponsesAreInflatedByUs) {
  for (const char* name : {"gzip", "deflate"}) {
    SCOPED_TRACE(name);
    {
      ClientContext context;
      SetTimeout(context);
      context.AddMetadata("x-compress", name);
      SizeRequest request;
      request.set_reply_payload_bytes(1 << 20);
      absl::StatusOr<EchoReply> reply = Run(stub_->Sized(context, request));
      ASSERT_THAT(reply, IsOk());
      EXPECT_EQ(reply->payload(), std::string(1 << 20, 'r'));
    }
    {
      ClientContext context;
      SetTimeout(context);
      context.AddMetadata("x-compress", name);
      StreamRequest request;
      request.set_count(3);
      request.set_payload_bytes(100 << 10);
      ClientReader<StreamMessage> reader = stub_->Generate(context, request);
      std::vector<StreamMessage> got = Run(ReadAll(reader));
      ASSERT_EQ(got.size(), 3u);
      EXPECT_EQ(got[2].payload(), std::string(100 << 10, 'g'));
      EXPECT_THAT(Run(reader.Finish()), IsOk());
    }
    {
      ClientContext context;
      SetTimeout(context);
      context.AddMetadata("x-compress", name);
      context.set_compression(*ParseCompression(name));
      ClientReaderWriter<StreamMessage, StreamMessage> chat =
          stub_->Chat(context);
      StreamMessage m;
      m.set_payload(std::string(100 << 10, 'b'));
      ASSERT_THAT(Run(chat.Write(m)), IsOk());
      absl::StatusOr<std::optional<StreamMessage>> back = Run(chat.Read());
      ASSERT_THAT(back, IsOk());
      ASSERT_TRUE(back->has_value());
      EXPECT_EQ((*back)->payload(), m.payload());
      ASSERT_THAT(Run(chat.WritesDone()), IsOk());
      EXPECT_THAT(Run(chat.Finish()), IsOk());
    }
  }
}

// A gRPC server's compressed response that inflates past our limit is
// refused, naming it.
TEST_F(DynrpcClientToGrpcServer, AnInflationBombFromGrpcIsRefused) {
  std::unique_ptr<EchoService::Stub> small = NewStub(1 << 20);
  ASSERT_NE(small, nullptr);
  EchoService::Stub& stub = *small;
  ClientContext context;
  SetTimeout(context);
  context.AddMetadata("x-compress", "gzip");
  SizeRequest request;
  request.set_reply_payload_bytes(4 << 20);
  EXPECT_THAT(Run(stub.Sized(context, request)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("inflates past the message size limit of "
                                 "1048576 bytes")));
}

// dynrpc's command line reads a gRPC server's reflection (gRPC's own
// implementation) and calls it, over the HTTP plane.
TEST_F(DynrpcClientToGrpcServer, TheCommandLineListsAndCallsAGrpcServer) {
  auto run = [&](std::vector<std::string> args) {
    Subprocess cli(DYNRPC_CLI_PATH, args,
                   {"DYN_REQUEST_PLANE=http", "DYN_HTTP_RPC_ROOT_PATH=/"});
    std::vector<std::string> out;
    while (std::optional<std::string> line = cli.ReadLine(kLineTimeout)) {
      out.push_back(*line);
    }
    return std::make_pair(cli.Wait(), out);
  };
  auto [listed, services] = run({"list", address_});
  EXPECT_EQ(listed, 0);
  EXPECT_THAT(services, Contains("dynrpc.testing.EchoService"));
  auto [described, text] =
      run({"describe", address_, "dynrpc.testing.EchoService.Sized"});
  EXPECT_EQ(described, 0);
  EXPECT_THAT(text, Contains(HasSubstr("rpc Sized(")));
  auto [called, reply] = run({"call", address_, "dynrpc.testing.EchoService/Echo",
                              R"({"text":"via grpc"})", "--compression",
                              "gzip"});
  EXPECT_EQ(called, 0);
  EXPECT_THAT(reply, ElementsAre(R"({"text":"via grpc"})"));
  auto [failed, nothing] = run({"call", address_,
                                "dynrpc.testing.EchoService/Fail",
                                R"({"code":9,"message":"no"})"});
  EXPECT_EQ(failed, 9);  // FAILED_PRECONDITION
  EXPECT_THAT(nothing, ::testing::IsEmpty());
}

TEST_F(DynrpcClientToGrpcServer, UnknownMethodIsUnimplemented) {
  for (std::string_view method : {"/dynrpc.testing.EchoService/NoSuchMethod",
                                  "/dynrpc.testing.NoSuchService/Echo"}) {
    SCOPED_TRACE(method);
    ClientContext context;
    SetTimeout(context);
    EXPECT_THAT(Run(channel_->CallUnary(context, method, "")),
                StatusIs(absl::StatusCode::kUnimplemented));
  }
}

TEST_F(DynrpcClientToGrpcServer, DeadlinePropagatesThroughAGrpcHop) {
  // dynrpc client --Relay--> grpc_echo_server --Block--> a dynrpc server on
  // the http plane, in this process. gRPC passes the caller's deadline on
  // (ClientContext::FromServerContext); the dynrpc handler must see it.
  std::promise<void> block_started;
  std::once_flag once;
  EchoServiceImpl downstream_service;
  downstream_service.set_on_block(
      [&] { std::call_once(once, [&] { block_started.set_value(); }); });
  Config config;
  config.request_plane = RequestPlaneKind::kHttp;
  config.http.host = "127.0.0.1";
  config.http.port = 0;
  Server downstream(runtime_.executor(), config);
  EXPECT_TRUE(downstream.AddService(downstream_service).ok());
  ASSERT_THAT(downstream.Start(), IsOk());

  ClientContext context;
  context.set_timeout(std::chrono::milliseconds(300));
  EchoRequest request;
  request.set_text(HostPort(downstream.address()));
  EXPECT_THAT(Run(stub_->Relay(context, request)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  ASSERT_EQ(block_started.get_future().wait_for(kLineTimeout),
            std::future_status::ready)
      << "the relayed Block never reached the dynrpc server at "
      << downstream.address();
  std::optional<Clock::duration> left =
      downstream_service.last_block_time_left();
  ASSERT_TRUE(left.has_value()) << "the dynrpc handler saw no deadline";
  // The caller's 300 ms, not a default of seconds. gRPC rounds grpc-timeout
  // up as it encodes it, so allow some slack above 300 ms.
  EXPECT_LE(*left, std::chrono::milliseconds(1000));
  downstream.Shutdown();
}

}  // namespace
}  // namespace dynrpc
