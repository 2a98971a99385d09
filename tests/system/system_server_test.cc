// The system server (DYN_SYSTEM_PORT): /metrics after known traffic shows
// the exact counts; /health follows the process's servers; /live; and its
// bounds (request size and time).
#include "system/system_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "dynrpc/testing/echo.dynrpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/echo_service.h"
#include "support/nats_server.h"
#include "support/status_matchers.h"

namespace dynrpc {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoService;
using ::dynrpc::testing::EchoServiceImpl;
using ::dynrpc::testing::FailRequest;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::dynrpc::testing::StreamMessage;
using ::dynrpc::testing::StreamRequest;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// What came back for `request` sent raw to the system server (the whole
// response, status line to body).
std::string Raw(uint16_t port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "connect failed";
  }
  std::size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent,
                     MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string response;
  char buffer[4096];
  for (;;) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  return response;
}

std::string Get(uint16_t port, const std::string& path) {
  return Raw(port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n\r\n"));
}

std::string Body(const std::string& response) {
  std::size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

class SystemServerTest : public ::testing::TestWithParam<RequestPlaneKind> {
 protected:
  void SetUp() override {
    Config config;
    config.request_plane = GetParam();
    config.tcp.host = "127.0.0.1";
    config.http.host = "127.0.0.1";
    config.http.port = 0;
    config.discovery.register_servers = false;
    config.system_port = 0;  // the OS picks
    if (GetParam() == RequestPlaneKind::kNats) {
      config.nats.server = dynrpc::testing::SharedNatsUrl();
      config.nats.name_space =
          dynrpc::testing::UniqueNatsNamespace("system_server");
    }
    config_ = config;
    server_ = std::make_unique<Server>(runtime_.executor(), config);
    ASSERT_THAT(server_->AddService(service_), IsOk());
    ASSERT_THAT(server_->Start(), IsOk());
    internal::SystemServer* system = internal::SystemServer::Running();
    ASSERT_NE(system, nullptr);
    port_ = system->port();
  }

  template <typename T>
  T Run(asio::awaitable<T> op) {
    return asio::co_spawn(runtime_.executor(), std::move(op), asio::use_future)
        .get();
  }

  // The sample `name{labels}`'s value in `metrics`, or "absent".
  static std::string Sample(const std::string& metrics, const std::string& name,
                            const std::string& labels) {
    const std::string head = absl::StrCat(name, "{", labels, "} ");
    std::size_t at = metrics.find("\n" + head);
    if (at == std::string::npos) return "absent";
    at += 1 + head.size();
    return metrics.substr(at, metrics.find('\n', at) - at);
  }

  Runtime runtime_{2};
  EchoServiceImpl service_;
  Config config_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

TEST_P(SystemServerTest, MetricsShowTheExactCountsOfKnownTraffic) {
  absl::StatusOr<std::shared_ptr<Channel>> channel =
      Channel::Create(runtime_.executor(), server_->address(), config_);
  ASSERT_THAT(channel, IsOk());
  EchoService::Stub stub(*channel);
  EchoRequest echo;
  echo.set_text("counted");
  echo.set_payload(std::string(5000, 'p'));
  for (int i = 0; i < 3; ++i) {
    ClientContext context;
    if (i == 2) context.set_compression(Compression::kGzip);
    ASSERT_THAT(Run(stub.Echo(context, echo)), IsOk());
  }
  for (int i = 0; i < 2; ++i) {
    ClientContext context;
    FailRequest fail;
    fail.set_code(5);
    EXPECT_THAT(Run(stub.Fail(context, fail)),
                StatusIs(absl::StatusCode::kNotFound));
  }
  {
    ClientContext context;
    StreamRequest request;
    request.set_count(4);
    ClientReader<StreamMessage> reader = stub.Generate(context, request);
    StreamMessage m;
    int n = 0;
    while (Run(reader.Next(m))) ++n;
    ASSERT_EQ(n, 4);
    ASSERT_THAT(Run(reader.Finish()), IsOk());
  }
  const std::string response = Get(port_, "/metrics");
  ASSERT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response,
              HasSubstr("Content-Type: text/plain; version=0.0.4"));
  const std::string metrics = Body(response);
  const std::string plane(RequestPlaneName(GetParam()));
  auto labels = [&](const std::string& method) {
    return absl::StrCat("service=\"dynrpc.testing.EchoService\",method=\"",
                        method, "\",plane=\"", plane, "\"");
  };
  for (const char* side : {"dynrpc_server_", "dynrpc_client_"}) {
    SCOPED_TRACE(side);
    const std::string s(side);
    EXPECT_EQ(Sample(metrics, s + "calls_started_total", labels("Echo")), "3");
    EXPECT_EQ(Sample(metrics, s + "calls_total", labels("Echo") + ",code=\"OK\""),
              "3");
    EXPECT_EQ(Sample(metrics, s + "calls_total",
                     labels("Fail") + ",code=\"NOT_FOUND\""),
              "2");
    EXPECT_EQ(Sample(metrics, s + "calls_total", labels("Fail") + ",code=\"OK\""),
              "absent");
    EXPECT_EQ(Sample(metrics, s + "calls_in_flight", labels("Echo")), "0");
    EXPECT_EQ(Sample(metrics, s + "call_duration_seconds_count", labels("Echo")),
              "3");
    EXPECT_EQ(Sample(metrics, s + "call_duration_seconds_bucket",
                     labels("Echo") + ",le=\"+Inf\""),
              "3");
    EXPECT_EQ(Sample(metrics, s + "calls_total",
                     labels("Generate") + ",code=\"OK\""),
              "1");
    // Bytes: three requests of the client, three replies of the server,
    // one of each pair compressed on the wire (the gzip call's request; its
    // reply goes uncompressed: the server's default is identity).
    const std::string sent_bytes =
        Sample(metrics, s + "sent_bytes_total", labels("Echo"));
    EXPECT_EQ(sent_bytes, std::to_string(3 * echo.ByteSizeLong()));
  }
  EXPECT_EQ(Sample(metrics, "dynrpc_server_messages_sent_total",
                   labels("Generate")),
            "4");
  EXPECT_EQ(Sample(metrics, "dynrpc_client_messages_received_total",
                   labels("Generate")),
            "4");
  EXPECT_EQ(Sample(metrics, "dynrpc_server_messages_received_total",
                   labels("Echo")),
            "3");
  EXPECT_EQ(Sample(metrics, "dynrpc_server_received_bytes_total",
                   labels("Echo")),
            std::to_string(3 * echo.ByteSizeLong()));
  // One request went compressed: fewer bytes on the wire, both ways of
  // counting them; the replies did not.
  for (const char* wire_counter : {"dynrpc_client_sent_wire_bytes_total",
                                   "dynrpc_server_received_wire_bytes_total"}) {
    SCOPED_TRACE(wire_counter);
    const uint64_t wire =
        std::stoull(Sample(metrics, wire_counter, labels("Echo")));
    EXPECT_LT(wire, 3 * echo.ByteSizeLong());
    EXPECT_GT(wire, 2 * echo.ByteSizeLong());
  }
  EXPECT_EQ(Sample(metrics, "dynrpc_client_received_wire_bytes_total",
                   labels("Echo")),
            std::to_string(3 * echo.ByteSizeLong()));
  EXPECT_THAT(metrics,
              HasSubstr("# TYPE dynrpc_server_call_duration_seconds histogram\n"));
  // One connection carried every call: the server holds it, the channel's
  // pool has it.
  if (GetParam() != RequestPlaneKind::kNats) {
    EXPECT_EQ(Sample(metrics, "dynrpc_server_connections",
                     "plane=\"" + plane + "\""),
              "1");
    EXPECT_EQ(Sample(metrics, "dynrpc_client_connections",
                     "plane=\"" + plane + "\""),
              "1");
  } else {
    // The server and the channel share the process's NATS connection.
    EXPECT_THAT(metrics, HasSubstr("\ndynrpc_nats_connected 1\n"));
    EXPECT_THAT(metrics, HasSubstr("\ndynrpc_nats_reconnects_total 0\n"));
  }
}

TEST_P(SystemServerTest, HealthFollowsTheServersAndLiveIsAlwaysUp) {
  EXPECT_EQ(Get(port_, "/health"),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            "Content-Length: 21\r\nConnection: close\r\n\r\n"
            "{\"status\":\"SERVING\"}\n");
  EXPECT_THAT(Get(port_, "/live"), StartsWith("HTTP/1.1 200 OK\r\n"));
  server_->Shutdown();
  std::string after = Get(port_, "/health");
  EXPECT_THAT(after, StartsWith("HTTP/1.1 503 Service Unavailable\r\n"));
  EXPECT_EQ(Body(after), "{\"status\":\"NOT_SERVING\"}\n");
  EXPECT_THAT(Get(port_, "/live"), StartsWith("HTTP/1.1 200 OK\r\n"));
}

TEST_P(SystemServerTest, BadRequestsGetClearAnswers) {
  EXPECT_THAT(Get(port_, "/nope"), StartsWith("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_THAT(Raw(port_, "POST /metrics HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  EXPECT_THAT(Raw(port_, "garbage\r\n\r\n"),
              StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  // HEAD: the headers only.
  std::string head = Raw(port_, "HEAD /live HTTP/1.1\r\n\r\n");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_EQ(Body(head), "");
}

// A request past 8 KiB is refused at 8 KiB, not read on.
TEST_P(SystemServerTest, ARequestOverTheSizeBoundIsRefused) {
  std::string huge = "GET /metrics HTTP/1.1\r\nX-Pad: " +
                     std::string(internal::SystemServer::kMaxRequestBytes, 'a') +
                     "\r\n\r\n";
  std::string response = Raw(port_, huge);
  EXPECT_THAT(response, StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_EQ(Body(response), "request too large\n");
}

// A caller that never finishes its request is answered 408 after the time
// bound (5 s), and the server serves the next one.
TEST_P(SystemServerTest, ARequestOverTheTimeBoundIsRefused) {
  const auto start = std::chrono::steady_clock::now();
  std::string response = Raw(port_, "GET /metrics HTTP/1.1\r\n");  // no end
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(response, StartsWith("HTTP/1.1 408 Request Timeout\r\n"));
  EXPECT_GE(took, std::chrono::milliseconds(
                      internal::SystemServer::kRequestTimeoutMs - 100));
  EXPECT_THAT(Get(port_, "/live"), StartsWith("HTTP/1.1 200 OK\r\n"));
}

INSTANTIATE_TEST_SUITE_P(Planes, SystemServerTest,
                         ::testing::Values(RequestPlaneKind::kTcp,
                                           RequestPlaneKind::kHttp,
                                           RequestPlaneKind::kNats),
                         [](const ::testing::TestParamInfo<RequestPlaneKind>& i) {
                           return std::string(RequestPlaneName(i.param));
                         });

}  // namespace
}  // namespace dynrpc
