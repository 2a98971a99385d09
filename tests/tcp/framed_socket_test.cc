// FramedSocket's writer: frames queued from many threads, some written by
// the writer coroutine and some inline by the Send() that completed a burst
// (FramedSocket::Send), arrive whole and in each thread's order, also when
// the socket fills and an inline flush stops part-way; and the writers'
// completion condition offers each write all that is left.
#include "tcp/framed_socket.h"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "boost/asio/async_result.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/use_future.hpp"
#include "boost/asio/write.hpp"
#include "dynrpc/message_buffers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/sockets.h"
#include "support/socket_pair.h"
#include "support/status_matchers.h"
#include "tcp/frame.h"

namespace dynrpc::internal::tcp {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::StatusIs;

constexpr int kThreads = 4;
constexpr int kKernelBuffer = 64 << 10;

// An io_context run by two threads until the fixture ends, and a connected
// pair of loopback sockets on strands of it.
class FramedSocketTest : public ::testing::Test {
 protected:
  FramedSocketTest() : work_(asio::make_work_guard(io_)) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
    config_.max_message_size = 2u << 20;
    ::dynrpc::testing::SocketPair pair =
        ::dynrpc::testing::SmallBufferedPair(io_, kKernelBuffer);
    kernel_buffers_ = pair.kernel_buffers;
    sender_ = std::make_shared<FramedSocket>(std::move(pair.sender), config_);
    receiver_ =
        std::make_shared<FramedSocket>(std::move(pair.receiver), config_);
    writer_ =
        asio::co_spawn(sender_->executor(), FramedSocket::WriteLoop(sender_),
                       asio::use_future);
  }
  ~FramedSocketTest() override {
    sender_->Close();
    receiver_->Close();
    writer_.wait();
    work_.reset();
    for (auto& t : threads_) t.join();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  TcpConfig config_;
  std::shared_ptr<FramedSocket> sender_;
  std::shared_ptr<FramedSocket> receiver_;
  std::future<void> writer_;
  std::size_t kernel_buffers_ = 0;  // what the kernel holds, both ends
};

// Frame `seq` of sender thread `thread`: a MESSAGE frame of call `thread`
// whose payload starts with `seq` and is filled with a byte of both.
std::string Payload(int thread, uint32_t seq, std::size_t size) {
  std::string payload(std::max<std::size_t>(size, sizeof seq),
                      static_cast<char>('a' + (thread * 7 + seq) % 26));
  std::memcpy(payload.data(), &seq, sizeof seq);
  return payload;
}

// What the reader saw: frames in order per thread, and how reading ended.
struct Received {
  int frames = 0;
  int out_of_order_or_damaged = 0;
  absl::Status end;
};

// Reads until `frames` have come (or the connection ends), checking each
// against Payload(); `enough` is set once `signal_at` frames have come.
asio::awaitable<Received> ReadAll(std::shared_ptr<FramedSocket> socket,
                                  int frames, int signal_at,
                                  std::promise<void>* enough) {
  Received got;
  std::vector<uint32_t> next(kThreads, 0);
  while (got.frames < frames) {
    absl::StatusOr<InFrame> frame = co_await socket->ReadFrame();
    if (!frame.ok()) {
      got.end = frame.status();
      break;
    }
    const uint64_t thread = frame->header.call_id;
    uint32_t seq = 0;
    const std::string& payload = frame->payload;
    if (thread >= kThreads || payload.size() < sizeof seq) {
      ++got.out_of_order_or_damaged;
      continue;
    }
    std::memcpy(&seq, payload.data(), sizeof seq);
    if (seq != next[thread] ||
        payload != Payload(static_cast<int>(thread), seq, payload.size())) {
      ++got.out_of_order_or_damaged;
    }
    next[thread] = seq + 1;
    if (++got.frames == signal_at && enough) enough->set_value();
  }
  co_return got;
}

TEST_F(FramedSocketTest, FramesFromManyThreadsArriveWholeAndInOrder) {
  // Every tenth frame is 256 KiB; the rest are small. Calls' frames and
  // others alternate, so some Send()s flush inline and others leave their
  // frame to the writer.
  constexpr int kFrames = 300;
  auto size_of = [](int i) -> std::size_t {
    return i % 10 == 0 ? (256u << 10) + i : (i * 37) % 3000;
  };
  std::size_t total = 0;
  for (int i = 0; i < kFrames; ++i) total += size_of(i) * kThreads;
  // Nobody reads until every frame is queued: the socket fills, so inline
  // flushes meet a full socket and leave the rest of a frame to the writer.
  ASSERT_GT(total, 4 * kernel_buffers_)
      << "the test must queue more than the kernel can buffer";

  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kFrames; ++i) {
        std::string payload = Payload(t, i, size_of(i));
        std::string prefix = EncodeMessagePrefix(t, payload.size());
        sender_->Send(std::move(prefix), std::move(payload),
                      i % 3 == 0 ? FramedSocket::Burst::kOther
                                 : FramedSocket::Burst::kCall);
      }
    });
  }
  for (auto& s : senders) s.join();

  Received got = asio::co_spawn(receiver_->executor(),
                                ReadAll(receiver_, kFrames * kThreads,
                                        /*signal_at=*/0, nullptr),
                                asio::use_future)
                     .get();
  EXPECT_EQ(got.frames, kFrames * kThreads);
  EXPECT_EQ(got.out_of_order_or_damaged, 0);
  EXPECT_TRUE(got.end.ok()) << got.end;
}

TEST_F(FramedSocketTest, ClosingWhileThreadsSendEndsTheStreamCleanly) {
  // Threads send small calls' frames (each Send() may flush inline) while
  // the peer reads; Close() comes in the middle. What arrived before is
  // whole and in order, and the reader then sees the connection end.
  std::promise<void> enough;
  std::future<void> enough_came = enough.get_future();
  std::future<Received> reading = asio::co_spawn(
      receiver_->executor(),
      ReadAll(receiver_, /*frames=*/1 << 30, /*signal_at=*/1000, &enough),
      asio::use_future);
  std::atomic<bool> stop{false};
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (uint32_t i = 0; !stop.load(); ++i) {
        std::string payload = Payload(t, i, 16);
        std::string prefix = EncodeMessagePrefix(t, payload.size());
        sender_->Send(std::move(prefix), std::move(payload),
                      FramedSocket::Burst::kCall);
      }
    });
  }
  enough_came.wait();
  sender_->Close();
  stop = true;
  for (auto& s : senders) s.join();

  Received got = reading.get();
  EXPECT_GE(got.frames, 1000);
  EXPECT_EQ(got.out_of_order_or_damaged, 0);
  EXPECT_THAT(got.end, StatusIs(absl::StatusCode::kUnavailable));
}

// After a large frame the reader reads the next as if shaped like it (its
// header and head into the read buffer, its payload straight into a lent
// message buffer). Each frame here is read as it comes, so each finds the
// read buffer empty: frames of the same shape, of another payload length,
// of another head length, shorter than the expected head, and larger than
// one read all arrive whole.
TEST_F(FramedSocketTest, FramesAfterALargeOneArriveWholeWhateverTheirShape) {
  struct Shape {
    std::size_t method;  // length of the request's method: sizes its head
    std::size_t payload;
  };
  const std::vector<Shape> shapes = {
      {200, 100 << 10}, {200, 100 << 10}, {200, 100 << 10}, {200, 90 << 10},
      {210, 90 << 10},  {0, 16},          {200, 100 << 10}, {200, 100 << 10},
      {1, 1 << 20},     {1, 1 << 20},     {1, 100 << 10},   {200, 100 << 10}};
  // Large messages recycled by the reader's side come back for the next
  // read: as in a server, whose request buffers are recycled once parsed.
  for (int i = 0; i < 4; ++i) RecycleMessageBuffer(std::string(1 << 20, 'r'));
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    SCOPED_TRACE(i);
    // Waiting before the frame is sent: it finds the read buffer empty.
    std::future<absl::StatusOr<InFrame>> reading = asio::co_spawn(
        receiver_->executor(), receiver_->ReadFrame(), asio::use_future);
    RequestHead head;
    head.method = std::string(shapes[i].method, 'm');
    absl::StatusOr<std::string> prefix =
        EncodeRequestPrefix(i, head, shapes[i].payload);
    ASSERT_TRUE(prefix.ok()) << prefix.status();
    std::string payload = Payload(0, i, shapes[i].payload);
    const std::string expected_head = prefix->substr(kFrameHeaderSize);
    sender_->Send(*std::move(prefix), payload);
    absl::StatusOr<InFrame> frame = reading.get();
    ASSERT_TRUE(frame.ok()) << frame.status();
    EXPECT_EQ(frame->header.call_id, i);
    EXPECT_EQ(frame->head, expected_head);
    EXPECT_TRUE(frame->payload == payload) << "payload damaged";
    RecycleMessageBuffer(std::move(frame->payload));
  }
}

// A write stream that takes at most `takes` bytes a write and records how
// many each write was offered.
class RecordingStream {
 public:
  using executor_type = asio::io_context::executor_type;

  RecordingStream(executor_type executor, std::size_t takes)
      : executor_(executor), takes_(takes) {}
  executor_type get_executor() { return executor_; }

  template <typename ConstBuffers, typename Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return asio::async_initiate<Handler,
                                void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& buffers) {
          const std::size_t offered = asio::buffer_size(buffers);
          offered_.push_back(offered);
          asio::post(executor_, [handler = std::move(handler),
                                 n = std::min(offered, takes_)]() mutable {
            std::move(handler)(boost::system::error_code{}, n);
          });
        },
        handler, buffers);
  }

  const std::vector<std::size_t>& offered() const { return offered_; }

 private:
  executor_type executor_;
  std::size_t takes_;
  std::vector<std::size_t> offered_;
};

// The writers' completion condition (net::WriteAll) offers each write all
// that is left. (Asio's transfer_all() offers 64 KiB a write, and each
// write is a trip through the scheduler: a 1 MiB message took 16.)
TEST(WriteAllTest, EachWriteIsOfferedAllThatIsLeft) {
  asio::io_context io;
  constexpr std::size_t kTakes = 300 << 10;
  constexpr std::size_t kSize = 1 << 20;
  RecordingStream stream(io.get_executor(), kTakes);
  const std::string message(kSize, 'm');
  const std::vector<asio::const_buffer> buffers = {
      asio::buffer(message.data(), 5),
      asio::buffer(message.data() + 5, kSize - 5)};
  boost::system::error_code result = asio::error::would_block;
  std::size_t written = 0;
  asio::async_write(stream, buffers, net::WriteAll(),
                    [&](boost::system::error_code ec, std::size_t n) {
                      result = ec;
                      written = n;
                    });
  io.run();
  EXPECT_FALSE(result) << result.message();
  EXPECT_EQ(written, kSize);
  EXPECT_THAT(stream.offered(),
              ::testing::ElementsAre(kSize, kSize - kTakes, kSize - 2 * kTakes,
                                     kSize - 3 * kTakes));
}

}  // namespace
}  // namespace dynrpc::internal::tcp
