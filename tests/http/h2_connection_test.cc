// H2Connection's writer: responses queued from many threads, some written
// by the writer coroutine and some inline by the call that completed a pair
// of them (H2Connection::SentLocked), arrive whole on their own streams,
// also when the socket fills and an inline write stops part-way; and a
// connection closed while threads queue frames fails its streams cleanly;
// and lone calls never wake a writer that then has nothing to write.
#include "http/h2_connection.h"

#include <nghttp2/nghttp2.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/use_future.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/grpc_wire.h"
#include "support/socket_pair.h"
#include "support/status_matchers.h"

namespace dynrpc::internal::http {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;

constexpr int kThreads = 4;
constexpr int kKernelBuffer = 64 << 10;

// A server connection that hands the test each request as it comes.
class RecordingServer : public H2Connection {
 public:
  using H2Connection::H2Connection;

  // Waits until `n` requests have come; they are returned in arrival order.
  std::vector<std::shared_ptr<H2Stream>> WaitForRequests(std::size_t n) {
    std::unique_lock lock(requests_mu_);
    arrived_.wait(lock, [&] { return requests_.size() >= n; });
    return requests_;
  }

 protected:
  void OnRequest(std::shared_ptr<H2Stream> stream) override {
    std::lock_guard lock(requests_mu_);
    requests_.push_back(std::move(stream));
    arrived_.notify_all();
  }

 private:
  std::mutex requests_mu_;
  std::condition_variable arrived_;
  std::vector<std::shared_ptr<H2Stream>> requests_;
};

// A client and a server connection over loopback, on strands of an
// io_context run by two threads. Each test starts the loops it needs.
class H2ConnectionTest : public ::testing::Test {
 protected:
  explicit H2ConnectionTest(HttpConfig config = {})
      : work_(asio::make_work_guard(io_)), config_(std::move(config)) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
    // The server sends the bulk: its sends fill the socket.
    ::dynrpc::testing::SocketPair pair =
        ::dynrpc::testing::SmallBufferedPair(io_, kKernelBuffer);
    kernel_buffers_ = pair.kernel_buffers;
    client_ = std::make_shared<H2Connection>(H2Connection::Role::kClient,
                                             std::move(pair.receiver), config_);
    server_ = std::make_shared<RecordingServer>(
        H2Connection::Role::kServer, std::move(pair.sender), config_);
    EXPECT_THAT(client_->Start(), IsOk());
    EXPECT_THAT(server_->Start(), IsOk());
  }
  ~H2ConnectionTest() override {
    client_->Close(absl::CancelledError("test over"));
    server_->Close(absl::CancelledError("test over"));
    for (auto& loop : loops_) loop.wait();
    work_.reset();
    for (auto& t : threads_) t.join();
  }

  void Spawn(const std::shared_ptr<H2Connection>& connection, bool read,
             bool write) {
    if (read) {
      loops_.push_back(asio::co_spawn(connection->executor(),
                                      H2Connection::ReadLoop(connection),
                                      asio::use_future));
    }
    if (write) {
      loops_.push_back(asio::co_spawn(connection->executor(),
                                      H2Connection::WriteLoop(connection),
                                      asio::use_future));
    }
  }

  // Opens `n` streams from the client, each a request with an empty body.
  std::vector<std::shared_ptr<H2Stream>> Requests(int n) {
    std::vector<std::shared_ptr<H2Stream>> streams;
    const Headers headers = {{":method", "POST"},
                             {":scheme", "http"},
                             {":path", "/test.Echo/Call"},
                             {":authority", "test"},
                             {"content-type", "application/grpc"}};
    for (int i = 0; i < n; ++i) {
      auto stream = std::make_shared<H2Stream>(config_.max_message_size,
                                               "limit", "response");
      stream->out_end = true;
      EXPECT_THAT(client_->SubmitRequest(stream, headers).status(), IsOk());
      streams.push_back(std::move(stream));
    }
    return streams;
  }

  // Waits until the client's `stream` has ended (either way).
  void WaitForEnd(const std::shared_ptr<H2Stream>& stream) {
    asio::co_spawn(client_->executor(),
                   client_->Wait(
                       stream, [](const H2Stream& s) { return s.peer_ended; },
                       /*stop_on_error=*/true),
                   asio::use_future)
        .get();
  }

  // The server answers `stream` whole at once, as its unary calls do.
  void Answer(const std::shared_ptr<H2Stream>& stream) {
    std::string body = "pong";
    EXPECT_THAT(server_->SubmitWholeResponse(
                    stream, {{":status", "200"}}, EncodeGrpcPrefix(body.size()),
                    std::move(body), Headers{{"grpc-status", "0"}}),
                IsOk());
  }

  // Returns once whatever either connection's strand had queued has run.
  void Settle() {
    for (const auto& c : {std::static_pointer_cast<H2Connection>(client_),
                          std::static_pointer_cast<H2Connection>(server_)}) {
      asio::post(c->executor(), asio::use_future).get();
    }
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  HttpConfig config_;
  std::shared_ptr<H2Connection> client_;
  std::shared_ptr<RecordingServer> server_;
  std::vector<std::future<void>> loops_;
  std::size_t kernel_buffers_ = 0;  // what the kernel holds, both ends
};

// With a fixed stream window: the adaptive one's BDP pings (and their acks)
// are work for the writers, at moments of their own.
class H2ConnectionFixedWindowTest : public H2ConnectionTest {
 protected:
  H2ConnectionFixedWindowTest() : H2ConnectionTest(FixedWindow()) {}

 private:
  static HttpConfig FixedWindow() {
    HttpConfig config;
    config.adaptive_window = false;
    return config;
  }
};

// Response `k`: `size` bytes, each a byte of k and its position.
std::string Body(int k, std::size_t size) {
  std::string body(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    body[i] = static_cast<char>('a' + (k * 7 + i / 1000) % 26);
  }
  return body;
}

// A lone call whose response is queued whole (as a unary answer is) gives
// neither writer anything to do: the request and the response go out
// inline from the threads that queued them, and neither reader wakes its
// writer for frames it did not queue. (A wake for nothing was a trip
// through the scheduler and a reactor poll, twice per call on the server.)
TEST_F(H2ConnectionFixedWindowTest, LoneCallsNeverWakeEitherWriterForNothing) {
  Spawn(client_, /*read=*/true, /*write=*/true);
  Spawn(server_, /*read=*/true, /*write=*/true);
  // The handshake (SETTINGS and their acks) is the writers' work.
  std::shared_ptr<H2Stream> warm = Requests(1)[0];
  Answer(server_->WaitForRequests(1)[0]);
  WaitForEnd(warm);
  Settle();
  const H2Stats client_before = client_->stats();
  const H2Stats server_before = server_->stats();
  constexpr int kCalls = 5;
  for (int k = 1; k <= kCalls; ++k) {
    std::shared_ptr<H2Stream> call = Requests(1)[0];
    Answer(server_->WaitForRequests(k + 1)[k]);
    WaitForEnd(call);
    EXPECT_TRUE(call->error.ok()) << call->error;
  }
  Settle();
  EXPECT_EQ(client_->stats().writer_idle_wakes,
            client_before.writer_idle_wakes);
  EXPECT_EQ(server_->stats().writer_idle_wakes,
            server_before.writer_idle_wakes);
  // They went out inline: one write each way per call.
  EXPECT_EQ(client_->stats().inline_flushes,
            client_before.inline_flushes + kCalls);
  EXPECT_EQ(server_->stats().inline_flushes,
            server_before.inline_flushes + kCalls);
}

TEST_F(H2ConnectionTest, ResponsesFromManyThreadsArriveWholeOnTheirStreams) {
  // Every fifth response is 200 KiB; the rest are small.
  constexpr int kStreams = 64;
  auto size_of = [](int k) -> std::size_t {
    return k % 5 == 0 ? (200u << 10) + k : (k * 37) % 3000;
  };
  std::size_t total = 0;
  for (int k = 0; k < kStreams; ++k) total += size_of(k);
  ASSERT_GT(total, 4 * kernel_buffers_)
      << "the test must queue more than the kernel can buffer";

  // The server's writer does not run yet and the client does not read: the
  // responses go out only through inline writes, until one meets the full
  // socket and leaves the rest of its batch to the writer.
  Spawn(client_, /*read=*/false, /*write=*/true);
  Spawn(server_, /*read=*/true, /*write=*/false);
  std::vector<std::shared_ptr<H2Stream>> client_streams = Requests(kStreams);
  std::vector<std::shared_ptr<H2Stream>> requests =
      server_->WaitForRequests(kStreams);
  std::vector<std::thread> answering;
  for (int t = 0; t < kThreads; ++t) {
    answering.emplace_back([&, t] {
      for (int k = t; k < kStreams; k += kThreads) {
        // The client opened its streams in order: ids 1, 3, 5, ...
        const std::shared_ptr<H2Stream>& stream = requests[k];
        const int index = (stream->id - 1) / 2;
        std::string body = Body(index, size_of(index));
        std::string prefix = EncodeGrpcPrefix(body.size());
        EXPECT_THAT(server_->SubmitResponse(stream, {{":status", "200"}}, true),
                    IsOk());
        server_->QueueData(stream, std::move(prefix), std::move(body),
                           /*end=*/true, Headers{{"grpc-status", "0"}});
      }
    });
  }
  for (auto& a : answering) a.join();
  const H2Stats queued = server_->stats();
  EXPECT_GT(queued.inline_flushes, 0);
  EXPECT_EQ(queued.inline_flushes_cut_short, 1)
      << "one inline write meets the full socket; later calls leave their "
         "frames to the writer, which holds the rest";

  Spawn(server_, /*read=*/false, /*write=*/true);
  Spawn(client_, /*read=*/true, /*write=*/false);
  for (int k = 0; k < kStreams; ++k) {
    const std::shared_ptr<H2Stream>& stream = client_streams[k];
    WaitForEnd(stream);
    client_->Locked([&] {
      EXPECT_THAT(stream->error, IsOk()) << "stream " << k;
      ASSERT_EQ(stream->inbound.size(), 1u) << "stream " << k;
      EXPECT_TRUE(stream->inbound.front().bytes == Body(k, size_of(k)))
          << "stream " << k << " got " << stream->inbound.front().bytes.size()
          << " bytes, not its own " << size_of(k);
    });
  }
}

TEST_F(H2ConnectionTest, ClosingWhileThreadsSendFailsTheStreamsCleanly) {
  // Threads stream small messages (each QueueData() may write inline) while
  // the client reads; the server's connection closes in the middle. The
  // client's streams then fail UNAVAILABLE, and every message that came
  // before is whole.
  constexpr int kStreams = kThreads;
  Spawn(client_, /*read=*/true, /*write=*/true);
  Spawn(server_, /*read=*/true, /*write=*/true);
  std::vector<std::shared_ptr<H2Stream>> client_streams = Requests(kStreams);
  std::vector<std::shared_ptr<H2Stream>> requests =
      server_->WaitForRequests(kStreams);
  for (const auto& stream : requests) {
    ASSERT_THAT(server_->SubmitResponse(stream, {{":status", "200"}}, true),
                IsOk());
  }
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::vector<std::thread> sending;
  for (int t = 0; t < kThreads; ++t) {
    sending.emplace_back([&, t] {
      const int index = (requests[t]->id - 1) / 2;
      while (!stop.load()) {
        server_->QueueData(requests[t], EncodeGrpcPrefix(16), Body(index, 16),
                           /*end=*/false);
        // Flow control holds what the client has not read: enough went.
        if (sent.fetch_add(1) == 2000) {
          server_->Close(absl::UnavailableError("closed by the test"));
        }
      }
    });
  }
  for (int k = 0; k < kStreams; ++k) WaitForEnd(client_streams[k]);
  stop = true;
  for (auto& s : sending) s.join();
  for (int k = 0; k < kStreams; ++k) {
    const std::shared_ptr<H2Stream>& stream = client_streams[k];
    client_->Locked([&] {
      EXPECT_THAT(stream->error, StatusIs(absl::StatusCode::kUnavailable))
          << "stream " << k;
      for (const GrpcMessage& message : stream->inbound) {
        EXPECT_EQ(message.bytes, Body(k, 16)) << "stream " << k;
      }
    });
  }
}

}  // namespace
}  // namespace dynrpc::internal::http
