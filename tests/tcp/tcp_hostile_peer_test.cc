// The TCP plane's server under hostile or merely slow peers: its memory,
// connections and calls stay within their configured limits, whatever the
// peers send, and a well-behaved client is served meanwhile. Memory is the
// server process's own, read from /proc (the server runs in a child
// process: echo_server).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "dynrpc/testing/echo.dynrpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/echo_service.h"
#include "support/process_memory.h"
#include "support/raw_socket.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"
#include "tcp/frame.h"

namespace dynrpc {
namespace {

namespace asio = boost::asio;
namespace tcp = internal::tcp;
using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoService;
using ::dynrpc::testing::EchoServiceImpl;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::kMemoryBoundKiB;
using ::dynrpc::testing::ConnectRaw;
using ::dynrpc::testing::ProcessMemoryKiB;
using ::dynrpc::testing::SendAll;
using ::dynrpc::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Lt;

constexpr char kEchoMethod[] = "/dynrpc.testing.EchoService/Echo";

// Blocks until the peer closes `fd` (true) or `timeout` passes or bytes
// arrive (false).
bool ClosedByPeer(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  char c;
  return ::recv(fd, &c, 1, 0) == 0;
}

// A REQUEST frame for a unary Echo call, `payload` bytes long.
std::string EchoFrame(uint64_t call_id, const std::string& payload) {
  tcp::RequestHead head;
  head.method = kEchoMethod;
  return *tcp::EncodeRequestPrefix(call_id, head, payload.size()) + payload;
}

// Lets this process hold `n` sockets (the hard limit permitting).
void AllowDescriptors(rlim_t n) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < n) {
    limit.rlim_cur = std::min(n, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

Config ClientConfig() {
  Config config;
  config.tcp.host = "127.0.0.1";
  return config;
}

// An EchoService server in a child process, on the TCP plane.
class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> env)
      : process_(DYNRPC_ECHO_SERVER_PATH, {}, WithDefaults(std::move(env))) {
    std::optional<std::string> line =
        process_.ReadLine(std::chrono::seconds(30));
    if (line && line->rfind("listening ", 0) == 0) {
      address_ = line->substr(std::string("listening ").size());
    }
  }
  const std::string& address() const { return address_; }
  pid_t pid() const { return process_.pid(); }
  int64_t PeakKiB() const { return ProcessMemoryKiB(pid(), "VmHWM").value_or(-1); }

 private:
  static std::vector<std::string> WithDefaults(std::vector<std::string> env) {
    env.insert(env.begin(), {"DYN_REQUEST_PLANE=tcp",
                             "DYN_TCP_RPC_HOST=127.0.0.1",
                             "DYN_TCP_RPC_PORT=0"});
    return env;
  }
  dynrpc::testing::Subprocess process_;
  std::string address_;
};

class TcpHostilePeerTest : public ::testing::Test {
 protected:
  std::unique_ptr<EchoService::Stub> NewStub(const std::string& address,
                                             Config config = ClientConfig()) {
    absl::StatusOr<std::shared_ptr<Channel>> channel =
        Channel::Create(runtime_.executor(), address, config);
    EXPECT_THAT(channel, IsOk());
    return std::make_unique<EchoService::Stub>(*channel);
  }

  absl::StatusOr<EchoReply> Echo(EchoService::Stub& stub,
                                 std::string payload = "",
                                 std::chrono::milliseconds timeout =
                                     std::chrono::seconds(30)) {
    ClientContext context;
    context.set_timeout(timeout);
    EchoRequest request;
    request.set_text("hello");
    request.set_payload(std::move(payload));
    return asio::co_spawn(runtime_.executor(), stub.Echo(context, request),
                          asio::use_future)
        .get();
  }

  // `n` Echo calls of 1 KiB, all of which must succeed.
  void WellBehavedCallsSucceed(EchoService::Stub& stub, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_THAT(Echo(stub, std::string(1024, 'w')), IsOk()) << "call " << i;
    }
  }

  Runtime runtime_{2};
};

// 1,000 connections each send a REQUEST header claiming the largest payload
// the server accepts (32 MiB), and 4 KiB of it, then nothing. The server
// allocates as bytes arrive, not as claimed: its peak memory grows by less
// than 64 MiB (it was ~32 GiB, claimed in full, before), its other callers
// are served meanwhile, and each stalled connection is closed at
// DYN_TCP_READ_TIMEOUT.
TEST_F(TcpHostilePeerTest, StalledHeadersClaimingTheMaximumPayloadCostLittle) {
  constexpr int kAttackers = 1000;
  AllowDescriptors(4 * kAttackers);
  ServerProcess server({"DYN_TCP_READ_TIMEOUT=5s"});
  ASSERT_FALSE(server.address().empty());
  auto stub = NewStub(server.address());
  WellBehavedCallsSucceed(*stub, 20);
  int64_t before = server.PeakKiB();

  tcp::RequestHead head;
  head.method = kEchoMethod;
  std::string claim =
      *tcp::EncodeRequestPrefix(1, head, 32u << 20) + std::string(4096, 'x');
  std::vector<int> attackers;
  for (int i = 0; i < kAttackers; ++i) {
    int fd = ConnectRaw(server.address());
    ASSERT_GE(fd, 0) << "connection " << i;
    ASSERT_TRUE(SendAll(fd, claim));
    attackers.push_back(fd);
  }
  WellBehavedCallsSucceed(*stub, 50);

  // The server closes each one once it has stalled for the read timeout:
  // proof that it read every header (and began every payload).
  for (int fd : attackers) {
    EXPECT_TRUE(ClosedByPeer(fd, std::chrono::seconds(60)));
    ::close(fd);
  }
  int64_t grown_kib = server.PeakKiB() - before;
  RecordProperty("peak_growth_kib", std::to_string(grown_kib));
  EXPECT_THAT(grown_kib, Lt(kMemoryBoundKiB))
      << "the server's peak memory grew by " << grown_kib << " KiB";
  WellBehavedCallsSucceed(*stub, 10);
}

// One connection pipelines 100,000 1-KiB Echo requests and never reads a
// response. Once DYN_TCP_MAX_QUEUED_BYTES of responses wait for it, the
// server stops reading its requests, TCP's flow control stops the client,
// and the server's memory stays bounded (it grew by 667 MiB before).
TEST_F(TcpHostilePeerTest, PipeliningClientThatNeverReadsIsHeldBack) {
  constexpr int kRequests = 100'000;
  ServerProcess server({"DYN_TCP_MAX_QUEUED_BYTES=2MiB"});
  ASSERT_FALSE(server.address().empty());
  auto stub = NewStub(server.address());
  WellBehavedCallsSucceed(*stub, 20);
  int64_t before = server.PeakKiB();

  EchoRequest request;
  request.set_payload(std::string(1024, 'p'));
  std::string payload = request.SerializeAsString();
  int fd = ConnectRaw(server.address());
  ASSERT_GE(fd, 0);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  int sent = 0;
  std::string pending;
  std::size_t offset = 0;
  for (;;) {
    if (offset == pending.size()) {
      if (sent == kRequests) break;
      pending = EchoFrame(static_cast<uint64_t>(sent) + 1, payload);
      offset = 0;
      ++sent;
    }
    ssize_t n = ::send(fd, pending.data() + offset, pending.size() - offset,
                       MSG_NOSIGNAL);
    if (n > 0) {
      offset += static_cast<std::size_t>(n);
      continue;
    }
    ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << errno;
    // Blocked: the server has stopped reading, unless room comes soon.
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 3000) == 0) break;
  }
  RecordProperty("requests_accepted", std::to_string(sent));
  EXPECT_THAT(sent, Lt(kRequests))
      << "the server read every request of a client that reads nothing";
  WellBehavedCallsSucceed(*stub, 20);
  int64_t grown_kib = server.PeakKiB() - before;
  RecordProperty("peak_growth_kib", std::to_string(grown_kib));
  EXPECT_THAT(grown_kib, Lt(kMemoryBoundKiB))
      << "the server's peak memory grew by " << grown_kib << " KiB after "
      << sent << " requests";
  ::close(fd);
}

// DYN_SERVER_MAX_CONNECTIONS: a connection past the limit is closed at once;
// those within it are served.
TEST_F(TcpHostilePeerTest, ConnectionsPastTheLimitAreClosed) {
  Config config = ClientConfig();
  config.limits.max_connections = 3;
  EchoServiceImpl service;
  Server server(runtime_.executor(), config);
  ASSERT_THAT(server.AddService(service), IsOk());
  ASSERT_THAT(server.Start(), IsOk());
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(ConnectRaw(server.address()));
    ASSERT_GE(held.back(), 0);
    // Served: a PING is answered with a PONG.
    ASSERT_TRUE(SendAll(held.back(), tcp::EncodePing()));
    std::string pong(tcp::kFrameHeaderSize, '\0');
    ASSERT_EQ(::recv(held.back(), pong.data(), pong.size(), MSG_WAITALL),
              static_cast<ssize_t>(pong.size()));
    EXPECT_EQ(pong, tcp::EncodePong());
  }
  int extra = ConnectRaw(server.address());
  ASSERT_GE(extra, 0);  // the kernel accepts; the server then closes it
  EXPECT_TRUE(ClosedByPeer(extra, std::chrono::seconds(30)));
  ::close(extra);
  for (int fd : held) ::close(fd);
}

// DYN_TCP_MAX_CALLS_PER_CONNECTION: a call past it is refused with
// RESOURCE_EXHAUSTED naming the limit; the calls within it go on.
TEST_F(TcpHostilePeerTest, CallsPastThePerConnectionLimitAreRefused) {
  Config config = ClientConfig();
  config.tcp.max_calls_per_connection = 2;
  config.tcp.pool_size = 1;  // every call on one connection
  EchoServiceImpl service;
  Server server(runtime_.executor(), config);
  ASSERT_THAT(server.AddService(service), IsOk());
  ASSERT_THAT(server.Start(), IsOk());
  auto stub = NewStub(server.address(), config);
  std::vector<std::future<absl::StatusOr<EchoReply>>> blocked;
  std::vector<std::unique_ptr<ClientContext>> contexts;
  const EchoRequest block;  // outlives the calls that borrow it
  for (int i = 0; i < 2; ++i) {
    contexts.push_back(std::make_unique<ClientContext>());
    contexts.back()->set_timeout(std::chrono::seconds(60));
    blocked.push_back(asio::co_spawn(
        runtime_.executor(), stub->Block(*contexts.back(), block),
        asio::use_future));
  }
  service.WaitForBlocked(2);
  EXPECT_THAT(Echo(*stub),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("DYN_TCP_MAX_CALLS_PER_CONNECTION=2")));
  service.ReleaseAll();
  for (auto& f : blocked) EXPECT_THAT(f.get(), IsOk());
  EXPECT_THAT(Echo(*stub), IsOk());
}

// Accepts one connection on a loopback port of its own and plays a server
// that answers each REQUEST by `answer(fd, call id)`, which writes frames to
// the socket and returns false once the peer has gone.
class RawServer {
 public:
  explicit RawServer(std::function<bool(int fd, uint64_t call_id)> answer)
      : answer_(std::move(answer)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof at;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 ||
        ::listen(listener_, 1) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&at), &len) != 0) {
      return;
    }
    address_ = "127.0.0.1:" + std::to_string(ntohs(at.sin_port));
    thread_ = std::thread([this] { Serve(); });
  }
  ~RawServer() {
    ::shutdown(listener_, SHUT_RDWR);
    if (int fd = connection_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    ::close(listener_);
  }
  const std::string& address() const { return address_; }

 private:
  void Serve() {
    int fd = ::accept(listener_, nullptr, nullptr);
    if (fd < 0) return;
    connection_ = fd;
    std::string header(tcp::kFrameHeaderSize, '\0');
    while (::recv(fd, header.data(), header.size(), MSG_WAITALL) ==
           static_cast<ssize_t>(header.size())) {
      absl::StatusOr<tcp::FrameHeader> frame = tcp::DecodeFrameHeader(header);
      if (!frame.ok()) break;
      std::string rest(frame->head_len + frame->payload_len, '\0');
      if (!rest.empty() && ::recv(fd, rest.data(), rest.size(), MSG_WAITALL) !=
                               static_cast<ssize_t>(rest.size())) {
        break;
      }
      if (frame->type == tcp::FrameType::kRequest &&
          !answer_(fd, frame->call_id)) {
        break;
      }
    }
    ::close(fd);
  }

  std::function<bool(int, uint64_t)> answer_;
  int listener_ = -1;
  std::atomic<int> connection_{-1};
  std::string address_;
  std::thread thread_;
};

// A server that sends a unary call MESSAGE and HEADERS frames (only streams
// take them) cannot make the client hold them: 80 MiB of them, more than a
// stream's window plus two messages, are dropped as they come, and the call
// ends with its RESPONSE alone, without the stray metadata.
TEST_F(TcpHostilePeerTest, FramesAUnaryCallDoesNotTakeAreDropped) {
  constexpr int kMessages = 80;
  const std::string mebibyte(1 << 20, 'x');
  const int64_t before = ProcessMemoryKiB(::getpid(), "VmHWM").value_or(0);
  RawServer server([&](int fd, uint64_t id) {
    // Frame by frame: the test holds one mebibyte, not all of them.
    const std::string prefix = tcp::EncodeMessagePrefix(id, mebibyte.size());
    for (int i = 0; i < kMessages; ++i) {
      if (!SendAll(fd, prefix) || !SendAll(fd, mebibyte)) return false;
    }
    EchoReply reply;
    reply.set_text("answered");
    const std::string payload = reply.SerializeAsString();
    return SendAll(fd, *tcp::EncodeHeaders(id, {{"x-stray", "1"}})) &&
           SendAll(fd, *tcp::EncodeResponsePrefix(id, tcp::ResponseHead(),
                                                  payload.size())) &&
           SendAll(fd, payload);
  });
  ASSERT_FALSE(server.address().empty());
  auto stub = NewStub(server.address());
  ClientContext context;
  context.set_timeout(std::chrono::seconds(30));
  EchoRequest request;
  request.set_text("hello");
  absl::StatusOr<EchoReply> reply =
      asio::co_spawn(runtime_.executor(), stub->Echo(context, request),
                     asio::use_future)
          .get();
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->text(), "answered");
  EXPECT_TRUE(context.server_initial_metadata().empty());
  const int64_t after = ProcessMemoryKiB(::getpid(), "VmHWM").value_or(0);
  EXPECT_THAT(after - before, Lt(kMemoryBoundKiB));
}

}  // namespace
}  // namespace dynrpc
