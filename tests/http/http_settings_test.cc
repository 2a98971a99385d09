// Every DYN_HTTP_* / DYN_HTTP2_* setting, tested for its effect (not just
// parsed): the HTTP plane's client is driven directly (it reports what its
// connections saw), against a dynrpc server on the HTTP plane.

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
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/http_client.h"
#include "support/echo_service.h"
#include "support/status_matchers.h"

namespace dynrpc::internal::http {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoService;
using ::dynrpc::testing::EchoServiceImpl;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::SizeRequest;
using ::dynrpc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr auto kWait = std::chrono::seconds(30);

Config HttpOnLoopback() {
  Config config;
  config.request_plane = RequestPlaneKind::kHttp;
  config.http.host = "127.0.0.1";
  config.http.port = 0;
  return config;
}

class HttpSettingsTest : public ::testing::Test {
 protected:
  void StartServer(Config config = HttpOnLoopback()) {
    server_ = std::make_unique<Server>(runtime_.executor(), config);
    EXPECT_TRUE(server_->AddService(service_).ok());
    ASSERT_THAT(server_->Start(), IsOk());
  }

  std::shared_ptr<HttpClient> NewClient(HttpConfig config) {
    return std::make_shared<HttpClient>(std::move(config),
                                        runtime_.executor());
  }

  // Starts a unary call to `method` ("Echo", "Block", "Sized") through the
  // plane client directly; `cancel` ends it.
  std::future<CallResult> Start(HttpClient& client, std::string method,
                                const google::protobuf::Message& request,
                                std::shared_ptr<CancelHook> cancel =
                                    std::make_shared<CancelHook>()) {
    CallRequest call;
    call.method = "/dynrpc.testing.EchoService/" + method;
    call.deadline = Clock::now() + kWait;
    call.payload = request.SerializeAsString();
    return asio::co_spawn(
        runtime_.executor(),
        client.Unary(server_->address(), std::move(call), std::move(cancel)),
        asio::use_future);
  }

  CallResult Call(HttpClient& client, std::string method,
                  const google::protobuf::Message& request) {
    std::future<CallResult> f = Start(client, std::move(method), request);
    EXPECT_EQ(f.wait_for(kWait), std::future_status::ready);
    return f.get();
  }

  Runtime runtime_{2};
  EchoServiceImpl service_;
  std::unique_ptr<Server> server_;
};

TEST_F(HttpSettingsTest, PortZeroGetsAFreePortAndAPortInUseIsNamed) {
  StartServer();
  std::string address = server_->address();
  ASSERT_THAT(address, HasSubstr("127.0.0.1:"));
  int port = std::stoi(address.substr(address.rfind(':') + 1));
  EXPECT_GT(port, 0);

  Config taken = HttpOnLoopback();
  taken.http.port = static_cast<uint16_t>(port);
  Server second(runtime_.executor(), taken);
  EXPECT_TRUE(second.AddService(service_).ok());
  // A port from the code or the default: not blamed on the variable.
  EXPECT_THAT(second.Start(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("address already in use"),
                             HasSubstr("the default of DYN_HTTP_RPC_PORT, "
                                       "which is not set"))));
  // One the environment set: named as such.
  taken.http.port_from_environment = true;
  Server third(runtime_.executor(), taken);
  EXPECT_TRUE(third.AddService(service_).ok());
  EXPECT_THAT(third.Start(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("set by DYN_HTTP_RPC_PORT; unset it")));
}

TEST_F(HttpSettingsTest, ClientUsesTheRootPathOrTheBarePath) {
  StartServer();  // root path /v1/rpc; it also answers the bare path
  EchoRequest request;
  request.set_text("hi");
  for (std::string root : {"/v1/rpc", "/", ""}) {
    HttpConfig config = HttpOnLoopback().http;
    config.root_path = root;
    auto client = NewClient(config);
    CallResult result = Call(*client, "Echo", request);
    ASSERT_THAT(result.status, IsOk()) << "root path '" << root << "'";
    EchoReply reply;
    ASSERT_TRUE(reply.ParseFromString(result.payload));
    EXPECT_EQ(reply.text(), "hi");
  }
  // Another prefix is not this server's: the method is unknown there.
  HttpConfig other = HttpOnLoopback().http;
  other.root_path = "/elsewhere";
  auto client = NewClient(other);
  EXPECT_THAT(Call(*client, "Echo", request).status,
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("/elsewhere/dynrpc.testing.EchoService/Echo")));
}

TEST_F(HttpSettingsTest, MaxFrameSizeBoundsTheFramesThePeerSends) {
  StartServer();
  SizeRequest big;
  big.set_reply_payload_bytes(4 << 20);
  for (std::size_t frame : {std::size_t{16384}, std::size_t{1} << 20}) {
    HttpConfig config = HttpOnLoopback().http;
    config.max_frame_size = frame;
    config.adaptive_window = false;  // a 2 MiB window: frames can be large
    auto client = NewClient(config);
    ASSERT_THAT(Call(*client, "Sized", big).status, IsOk());
    std::vector<H2Stats> stats = client->ConnectionStats(server_->address());
    ASSERT_THAT(stats, SizeIs(1));
    EXPECT_LE(stats[0].largest_data_frame_received, frame);
    // The server did use what it was allowed (so the bound is not vacuous).
    EXPECT_GT(stats[0].largest_data_frame_received, frame / 2);
  }
}

TEST_F(HttpSettingsTest, MaxConcurrentStreamsOpensMoreConnections) {
  StartServer();
  HttpConfig config = HttpOnLoopback().http;
  config.max_concurrent_streams = 2;
  auto client = NewClient(config);
  EchoRequest request;
  std::vector<std::future<CallResult>> calls;
  for (int i = 1; i <= 5; ++i) {
    calls.push_back(Start(*client, "Block", request));
    service_.WaitForBlocked(i);
  }
  EXPECT_THAT(client->ConnectionStats(server_->address()), SizeIs(3));
  service_.ReleaseAll();
  for (auto& call : calls) EXPECT_THAT(call.get().status, IsOk());
}

TEST_F(HttpSettingsTest, TheServersStreamLimitIsHonoured) {
  Config server_config = HttpOnLoopback();
  server_config.http.max_concurrent_streams = 1;
  StartServer(server_config);
  auto client = NewClient(HttpOnLoopback().http);  // its own limit: 1000
  EchoRequest request;
  std::vector<std::future<CallResult>> calls;
  for (int i = 1; i <= 3; ++i) {
    calls.push_back(Start(*client, "Block", request));
    service_.WaitForBlocked(i);
  }
  EXPECT_THAT(client->ConnectionStats(server_->address()), SizeIs(3));
  service_.ReleaseAll();
  for (auto& call : calls) EXPECT_THAT(call.get().status, IsOk());
}

TEST_F(HttpSettingsTest, PoolKeepsAtMostMaxIdleConnections) {
  StartServer();
  for (std::size_t max_idle : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
    HttpConfig config = HttpOnLoopback().http;
    config.max_concurrent_streams = 1;  // one connection per call
    config.pool_max_idle_per_host = max_idle;
    auto client = NewClient(config);
    EchoRequest request;
    std::vector<std::future<CallResult>> calls;
    int blocked_before = service_.blocks_ended();
    for (int i = 1; i <= 4; ++i) {
      calls.push_back(Start(*client, "Block", request));
      service_.WaitForBlocked(i);
    }
    EXPECT_THAT(client->ConnectionStats(server_->address()), SizeIs(4));
    service_.ReleaseAll();
    for (auto& call : calls) EXPECT_THAT(call.get().status, IsOk());
    service_.WaitForBlocksEnded(blocked_before + 4);
    EXPECT_THAT(client->ConnectionStats(server_->address()), SizeIs(max_idle))
        << "DYN_HTTP2_POOL_MAX_IDLE_PER_HOST=" << max_idle;
  }
}

// A connection no call has used for DYN_HTTP2_POOL_IDLE_TIMEOUT_SECS closes
// (0: as soon as its last call ends); the next call dials again.
TEST_F(HttpSettingsTest, IdleConnectionsCloseAfterTheIdleTimeout) {
  StartServer();
  for (int seconds : {1, 0}) {
    SCOPED_TRACE(seconds);
    HttpConfig config = HttpOnLoopback().http;
    config.pool_idle_timeout = std::chrono::seconds(seconds);
    auto client = NewClient(config);
    std::promise<absl::Status> closed;
    client->set_on_connection_closed(
        [&closed, once = std::make_shared<std::once_flag>()](absl::Status why) {
          std::call_once(*once, [&] { closed.set_value(why); });
        });
    EchoRequest request;
    ASSERT_THAT(Call(*client, "Echo", request).status, IsOk());
    Clock::time_point idle_from = Clock::now();
    std::future<absl::Status> reason = closed.get_future();
    ASSERT_EQ(reason.wait_for(std::chrono::seconds(10)),
              std::future_status::ready);
    Clock::duration idle_for = Clock::now() - idle_from;
    EXPECT_THAT(reason.get(),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr(absl::StrCat(
                             "DYN_HTTP2_POOL_IDLE_TIMEOUT_SECS=", seconds))));
    EXPECT_GE(idle_for, std::chrono::milliseconds(seconds * 1000 - 100));
    EXPECT_THAT(client->ConnectionStats(server_->address()), SizeIs(0));
    EXPECT_THAT(Call(*client, "Echo", request).status, IsOk());
  }
}

TEST_F(HttpSettingsTest, AdaptiveWindowGrowsWithTheBandwidthDelayProduct) {
  StartServer();
  SizeRequest big;
  big.set_reply_payload_bytes(8 << 20);
  for (bool adaptive : {true, false}) {
    HttpConfig config = HttpOnLoopback().http;
    config.adaptive_window = adaptive;
    auto client = NewClient(config);
    for (int i = 0; i < 4; ++i) {
      ASSERT_THAT(Call(*client, "Sized", big).status, IsOk());
    }
    std::vector<H2Stats> stats = client->ConnectionStats(server_->address());
    ASSERT_THAT(stats, SizeIs(1));
    if (adaptive) {
      // From HTTP/2's default, grown to what the path holds.
      EXPECT_GT(stats[0].local_window, 65535);
      EXPECT_LE(stats[0].local_window, 16 << 20);
      EXPECT_GT(stats[0].pings_sent, 0);
    } else {
      EXPECT_EQ(stats[0].local_window, 2 << 20);
      EXPECT_EQ(stats[0].pings_sent, 0);
    }
  }
}

}  // namespace
}  // namespace dynrpc::internal::http
