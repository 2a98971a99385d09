// Builds and runs the code protoc-gen-dynrpc generates for streaming methods
// (protoc-plugin/testdata/streaming.proto): every kind of method through a
// generated Stub to a generated Service over a real server, the UNIMPLEMENTED
// default of each streaming kind, the registration of streaming methods under
// their proto names, and gmock mocks of streaming StubInterface methods that
// return streams over a fake dynrpc::RawClientStream.
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "streaming.dynrpc.pb.h"
#include "support/status_matchers.h"

namespace {

using ::acme::streaming::Chunk;
using ::acme::streaming::StreamingClashes;
using ::acme::streaming::Transfer;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Property;

template <typename T>
using Awaitable = boost::asio::awaitable<T>;

Chunk MakeChunk(std::string data, int64_t sequence) {
  Chunk chunk;
  chunk.set_data(std::move(data));
  chunk.set_sequence(sequence);
  return chunk;
}

// Runs `operation` on `executor` and blocks until it completes. Whatever it
// borrows (a stream, a context) must outlive this function's return, which
// it does when the caller's locals are passed.
template <typename T>
T Await(const boost::asio::any_io_executor& executor, Awaitable<T> operation) {
  return boost::asio::co_spawn(executor, std::move(operation),
                               boost::asio::use_future)
      .get();
}

// --- Mocking ---------------------------------------------------------------

// A client stream with a canned script: Read() yields `responses` in order,
// then ends as `end` says (nullopt when it is OK); Write() records into
// `*written`, which must outlive the stream.
class FakeRawClientStream final : public dynrpc::RawClientStream {
 public:
  FakeRawClientStream(std::vector<std::string> responses, absl::Status end,
                      std::vector<std::string>* written)
      : responses_(std::move(responses)),
        end_(std::move(end)),
        written_(written) {}

  Awaitable<absl::Status> Write(std::string message, dynrpc::WriteOptions) override {
    if (writes_done_) {
      co_return absl::FailedPreconditionError("Write() after WritesDone()");
    }
    written_->push_back(std::move(message));
    co_return absl::OkStatus();
  }
  Awaitable<absl::Status> WritesDone() override {
    writes_done_ = true;
    co_return absl::OkStatus();
  }
  Awaitable<absl::StatusOr<std::optional<std::string>>> Read() override {
    if (next_ < responses_.size()) {
      co_return std::optional<std::string>(responses_[next_++]);
    }
    if (!end_.ok()) co_return end_;
    co_return std::optional<std::string>();
  }
  Awaitable<absl::Status> Finish() override { co_return end_; }

 private:
  std::vector<std::string> responses_;
  std::size_t next_ = 0;
  absl::Status end_;
  std::vector<std::string>* written_;
  bool writes_done_ = false;
};

std::string Serialized(const Chunk& chunk) {
  std::string bytes;
  chunk.SerializeToString(&bytes);
  return bytes;
}

// Return types with a comma need parentheses in MOCK_METHOD.
class MockTransferStub : public Transfer::StubInterface {
 public:
  MOCK_METHOD(Awaitable<absl::StatusOr<Chunk>>, Check,
              (dynrpc::ClientContext & context, const Chunk& request),
              (override));
  MOCK_METHOD(dynrpc::ClientReader<Chunk>, Download,
              (dynrpc::ClientContext & context, const Chunk& request),
              (override));
  MOCK_METHOD((dynrpc::ClientWriter<Chunk, Chunk>), Upload,
              (dynrpc::ClientContext & context), (override));
  MOCK_METHOD((dynrpc::ClientReaderWriter<Chunk, Chunk>), Sync,
              (dynrpc::ClientContext & context), (override));
};

// Code under test that depends only on the interface: downloads `count`
// chunks and joins their data.
Awaitable<absl::StatusOr<std::string>> DownloadJoined(
    Transfer::StubInterface& stub, int64_t count) {
  dynrpc::ClientContext context;  // Outlives the stream.
  dynrpc::ClientReader<Chunk> reader =
      stub.Download(context, MakeChunk("", count));
  std::string joined;
  for (;;) {
    absl::StatusOr<std::optional<Chunk>> chunk = co_await reader.Read();
    if (!chunk.ok()) co_return chunk.status();
    if (!chunk->has_value()) co_return joined;
    joined += (*chunk)->data();
  }
}

TEST(GeneratedStreamingTest, ServerStreamingMethodCanBeMocked) {
  const struct {
    std::string name;
    absl::Status end;
    absl::StatusOr<std::string> expected;
  } kCases[] = {
      {"ends with OK", absl::OkStatus(), std::string("ab")},
      {"ends with an error", absl::UnavailableError("connection lost"),
       absl::UnavailableError("connection lost")},
  };
  for (const auto& test_case : kCases) {
    SCOPED_TRACE(test_case.name);
    MockTransferStub stub;
    std::vector<std::string> written;
    EXPECT_CALL(stub, Download(_, Property(&Chunk::sequence, 2)))
        .WillOnce([&](dynrpc::ClientContext&, const Chunk&) {
          return dynrpc::ClientReader<Chunk>(
              std::make_unique<FakeRawClientStream>(
                  std::vector<std::string>{Serialized(MakeChunk("a", 0)),
                                           Serialized(MakeChunk("b", 1))},
                  test_case.end, &written));
        });

    boost::asio::io_context io_context;
    std::future<absl::StatusOr<std::string>> joined = boost::asio::co_spawn(
        io_context, DownloadJoined(stub, 2), boost::asio::use_future);
    io_context.run();

    absl::StatusOr<std::string> result = joined.get();
    if (test_case.expected.ok()) {
      ASSERT_THAT(result, IsOk());
      EXPECT_EQ(*result, *test_case.expected);
    } else {
      EXPECT_THAT(result,
                  StatusIs(test_case.expected.status().code(),
                           std::string(test_case.expected.status().message())));
    }
    EXPECT_THAT(written, IsEmpty());
  }
}

// Code under test that depends only on the interface: uploads one chunk
// per element of `data` and returns the response.
Awaitable<absl::StatusOr<Chunk>> UploadAll(Transfer::StubInterface& stub,
                                           std::vector<std::string> data) {
  dynrpc::ClientContext context;  // Outlives the stream.
  dynrpc::ClientWriter<Chunk, Chunk> writer = stub.Upload(context);
  for (std::string& chunk_data : data) {
    DYNRPC_CO_RETURN_IF_ERROR(
        co_await writer.Write(MakeChunk(std::move(chunk_data), 1)));
  }
  co_return co_await writer.Finish();
}

TEST(GeneratedStreamingTest, ClientStreamingMethodCanBeMocked) {
  MockTransferStub stub;
  std::vector<std::string> written;
  EXPECT_CALL(stub, Upload).WillOnce([&](dynrpc::ClientContext&) {
    return dynrpc::ClientWriter<Chunk, Chunk>(
        std::make_unique<FakeRawClientStream>(
            std::vector<std::string>{Serialized(MakeChunk("done", 2))},
            absl::OkStatus(), &written));
  });

  boost::asio::io_context io_context;
  std::future<absl::StatusOr<Chunk>> response = boost::asio::co_spawn(
      io_context, UploadAll(stub, {"x", "y"}), boost::asio::use_future);
  io_context.run();

  absl::StatusOr<Chunk> result = response.get();
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->data(), "done");
  EXPECT_THAT(written, ElementsAre(Serialized(MakeChunk("x", 1)),
                                   Serialized(MakeChunk("y", 1))));
}

// --- Registration ----------------------------------------------------------

// One entry of dynrpc::Service::methods(), as the test compares it.
struct Registered {
  std::string path;
  dynrpc::MethodKind kind;
  bool operator==(const Registered&) const = default;
};

void PrintTo(const Registered& registered, std::ostream* os) {
  constexpr const char* kKinds[] = {"unary", "server-streaming",
                                    "client-streaming", "bidi"};
  *os << registered.path << " (" << kKinds[static_cast<int>(registered.kind)]
      << ")";
}

TEST(GeneratedStreamingTest, ServiceRegistersEachMethodWithItsKind) {
  const Transfer::Service transfer;
  const StreamingClashes::Service clashes;
  auto registered = [](const dynrpc::Service& service) {
    std::vector<Registered> methods;
    for (const dynrpc::MethodEntry& method : service.methods()) {
      methods.push_back({method.path, method.kind});
      // Exactly the handler of its kind is set.
      EXPECT_EQ(static_cast<bool>(method.unary),
                method.kind == dynrpc::MethodKind::kUnary)
          << method.path;
      EXPECT_EQ(static_cast<bool>(method.stream),
                method.kind != dynrpc::MethodKind::kUnary)
          << method.path;
    }
    return methods;
  };
  using Kind = dynrpc::MethodKind;
  const std::string transfer_prefix = "/acme.streaming.Transfer/";
  EXPECT_THAT(
      registered(transfer),
      ElementsAre(
          Registered{transfer_prefix + "Check", Kind::kUnary},
          Registered{transfer_prefix + "Download", Kind::kServerStreaming},
          Registered{transfer_prefix + "Upload", Kind::kClientStreaming},
          Registered{transfer_prefix + "Sync", Kind::kBidi}));
  // The wire path keeps the proto name, whatever the C++ name became.
  const std::string clashes_prefix = "/acme.streaming.StreamingClashes/";
  EXPECT_THAT(
      registered(clashes),
      ElementsAre(
          Registered{clashes_prefix + "AddServerStreamingMethod",
                     Kind::kServerStreaming},
          Registered{clashes_prefix + "AddClientStreamingMethod",
                     Kind::kClientStreaming},
          Registered{clashes_prefix + "AddBidiStreamingMethod", Kind::kBidi},
          Registered{clashes_prefix + "delete", Kind::kBidi},
          Registered{clashes_prefix + "Watch", Kind::kServerStreaming},
          Registered{clashes_prefix + "WatchFuture", Kind::kUnary},
          Registered{clashes_prefix + "Get", Kind::kUnary},
          Registered{clashes_prefix + "GetFuture", Kind::kServerStreaming}));
}

// --- Round trips -------------------------------------------------------------

// Check echoes its request. Download streams `sequence` chunks, numbered from
// 0, whose data is the request's data followed by the number. Upload joins
// the data and sums the sequence numbers of what it reads. Sync echoes each
// chunk as it arrives and ends when the client is done sending.
class TransferImpl final : public Transfer::Service {
 public:
  Awaitable<absl::StatusOr<Chunk>> Check(dynrpc::ServerContext& context,
                                         const Chunk& request) override {
    co_return request;
  }

  Awaitable<absl::Status> Download(
      dynrpc::ServerContext& context, const Chunk& request,
      dynrpc::ServerWriter<Chunk>& writer) override {
    for (int64_t i = 0; i < request.sequence(); ++i) {
      DYNRPC_CO_RETURN_IF_ERROR(co_await writer.Write(
          MakeChunk(request.data() + std::to_string(i), i)));
    }
    co_return absl::OkStatus();
  }

  // Reads with Next() (Sync below uses Read()).
  Awaitable<absl::StatusOr<Chunk>> Upload(
      dynrpc::ServerContext& context,
      dynrpc::ServerReader<Chunk>& reader) override {
    Chunk total, chunk;
    while (co_await reader.Next(chunk)) {
      total.mutable_data()->append(chunk.data());
      total.set_sequence(total.sequence() + chunk.sequence());
    }
    DYNRPC_CO_RETURN_IF_ERROR(reader.status());
    co_return total;
  }

  Awaitable<absl::Status> Sync(
      dynrpc::ServerContext& context,
      dynrpc::ServerReaderWriter<Chunk, Chunk>& stream) override {
    for (;;) {
      absl::StatusOr<std::optional<Chunk>> chunk = co_await stream.Read();
      if (!chunk.ok()) co_return chunk.status();
      if (!chunk->has_value()) co_return absl::OkStatus();
      DYNRPC_CO_RETURN_IF_ERROR(co_await stream.Write(**chunk));
    }
  }
};

dynrpc::Config LoopbackConfig() {
  dynrpc::Config config;
  config.tcp.host = "127.0.0.1";
  return config;
}

// A server hosting TransferImpl and a StreamingClashes service that
// overrides nothing, and a channel to it, on one runtime.
class GeneratedStreamingRoundTripTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EXPECT_TRUE(server_.AddService(transfer_).ok());
    EXPECT_TRUE(server_.AddService(clashes_).ok());
    ASSERT_THAT(server_.Start(), IsOk());
    absl::StatusOr<std::shared_ptr<dynrpc::Channel>> channel =
        dynrpc::Channel::Create(runtime_.executor(), server_.address(),
                                config_);
    ASSERT_THAT(channel, IsOk());
    channel_ = *std::move(channel);
  }

  boost::asio::any_io_executor executor() { return runtime_.executor(); }

  // Members are destroyed in reverse: the channel and the server before the
  // services they reach and the runtime they run on.
  dynrpc::Runtime runtime_{2};
  const dynrpc::Config config_ = LoopbackConfig();
  TransferImpl transfer_;
  StreamingClashes::Service clashes_;
  dynrpc::Server server_{runtime_.executor(), config_};
  std::shared_ptr<dynrpc::Channel> channel_;
};

TEST_F(GeneratedStreamingRoundTripTest, UnaryMethodBesideStreamsRoundTrips) {
  Transfer::Stub stub(channel_);
  const Chunk request = MakeChunk("check", 7);
  dynrpc::ClientContext context;

  absl::StatusOr<Chunk> reply = Await(executor(), stub.Check(context, request));

  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->data(), "check");
  EXPECT_EQ(reply->sequence(), 7);
}

// The loop gRPC users know: Next() until false, then Finish() says why.
TEST_F(GeneratedStreamingRoundTripTest, NextReadsEveryResponseThenFinishSaysOk) {
  Transfer::Stub stub(channel_);
  dynrpc::ClientContext context;
  dynrpc::ClientReader<Chunk> reader =
      stub.Download(context, MakeChunk("chunk-", 5));
  std::vector<int64_t> seen;
  Chunk chunk;
  while (Await(executor(), reader.Next(chunk))) seen.push_back(chunk.sequence());
  EXPECT_THAT(seen, ::testing::ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(Await(executor(), reader.Finish()), IsOk());
}

// A stream that fails: Next() gives false, and Finish() gives the error.
TEST_F(GeneratedStreamingRoundTripTest, NextStopsAtAFailureThatFinishReports) {
  StreamingClashes::Stub stub(channel_);  // its handlers are unimplemented
  dynrpc::ClientContext context;
  dynrpc::ClientReader<Chunk> reader =
      stub.AddServerStreamingMethod_(context, MakeChunk("x", 1));
  Chunk chunk;
  EXPECT_FALSE(Await(executor(), reader.Next(chunk)));
  EXPECT_THAT(Await(executor(), reader.Finish()),
              StatusIs(absl::StatusCode::kUnimplemented));
}

TEST_F(GeneratedStreamingRoundTripTest,
       ServerStreamingYieldsEveryResponseInOrderThenEnds) {
  Transfer::Stub stub(channel_);
  for (const int64_t count : {0, 1, 64}) {
    SCOPED_TRACE(count);
    dynrpc::ClientContext context;
    dynrpc::ClientReader<Chunk> reader =
        stub.Download(context, MakeChunk("chunk-", count));

    for (int64_t i = 0; i < count; ++i) {
      absl::StatusOr<std::optional<Chunk>> chunk =
          Await(executor(), reader.Read());
      ASSERT_THAT(chunk, IsOk()) << "response " << i;
      ASSERT_TRUE(chunk->has_value()) << "ended after " << i << " responses";
      EXPECT_EQ((*chunk)->sequence(), i);
      EXPECT_EQ((*chunk)->data(), "chunk-" + std::to_string(i));
    }
    absl::StatusOr<std::optional<Chunk>> end = Await(executor(), reader.Read());
    ASSERT_THAT(end, IsOk());
    EXPECT_FALSE(end->has_value()) << "more than " << count << " responses";
    EXPECT_THAT(Await(executor(), reader.Finish()), IsOk());
  }
}

TEST_F(GeneratedStreamingRoundTripTest,
       ClientStreamingFinishReturnsTheResponseToAllRequests) {
  const struct {
    std::vector<std::string> data;
    std::string joined;
    int64_t sum;
  } kCases[] = {
      // No requests: the response is an empty message, which is still one.
      {{}, "", 0},
      {{"only"}, "only", 1},
      {{"a", "b", "c", "d"}, "abcd", 10},
  };
  Transfer::Stub stub(channel_);
  for (const auto& test_case : kCases) {
    SCOPED_TRACE(test_case.joined);
    dynrpc::ClientContext context;
    dynrpc::ClientWriter<Chunk, Chunk> writer = stub.Upload(context);

    for (std::size_t i = 0; i < test_case.data.size(); ++i) {
      ASSERT_THAT(Await(executor(),
                        writer.Write(MakeChunk(test_case.data[i],
                                               static_cast<int64_t>(i) + 1))),
                  IsOk());
    }
    absl::StatusOr<Chunk> response = Await(executor(), writer.Finish());

    ASSERT_THAT(response, IsOk());
    EXPECT_EQ(response->data(), test_case.joined);
    EXPECT_EQ(response->sequence(), test_case.sum);
  }
}

TEST_F(GeneratedStreamingRoundTripTest,
       BidiEchoesEachRequestInOrderAndEndsAfterWritesDone) {
  Transfer::Stub stub(channel_);
  dynrpc::ClientContext context;
  dynrpc::ClientReaderWriter<Chunk, Chunk> stream = stub.Sync(context);

  // Each echo arrives before the next request is sent: the call streams.
  for (int64_t i = 0; i < 5; ++i) {
    const Chunk request = MakeChunk("ping-" + std::to_string(i), i);
    ASSERT_THAT(Await(executor(), stream.Write(request)), IsOk());
    absl::StatusOr<std::optional<Chunk>> echo =
        Await(executor(), stream.Read());
    ASSERT_THAT(echo, IsOk());
    ASSERT_TRUE(echo->has_value()) << "ended after " << i << " echoes";
    EXPECT_EQ((*echo)->data(), request.data());
    EXPECT_EQ((*echo)->sequence(), i);
  }
  ASSERT_THAT(Await(executor(), stream.WritesDone()), IsOk());

  absl::StatusOr<std::optional<Chunk>> end = Await(executor(), stream.Read());
  ASSERT_THAT(end, IsOk());
  EXPECT_FALSE(end->has_value());
  EXPECT_THAT(Await(executor(), stream.Finish()), IsOk());
}

TEST_F(GeneratedStreamingRoundTripTest,
       StreamingMethodNotOverriddenIsUnimplemented) {
  StreamingClashes::Stub stub(channel_);
  const Chunk request = MakeChunk("x", 1);
  // Each case runs one call of its kind and returns the status of each
  // operation that reports the call's end.
  const struct {
    std::string path;
    std::function<std::vector<absl::Status>(dynrpc::ClientContext&)> call;
  } kCases[] = {
      {"/acme.streaming.StreamingClashes/Watch",
       [&](dynrpc::ClientContext& context) {
         dynrpc::ClientReader<Chunk> reader = stub.Watch(context, request);
         absl::Status read = Await(executor(), reader.Read()).status();
         return std::vector<absl::Status>{read,
                                          Await(executor(), reader.Finish())};
       }},
      {"/acme.streaming.StreamingClashes/AddClientStreamingMethod",
       [&](dynrpc::ClientContext& context) {
         dynrpc::ClientWriter<Chunk, Chunk> writer =
             stub.AddClientStreamingMethod_(context);
         return std::vector<absl::Status>{
             Await(executor(), writer.Finish()).status()};
       }},
      {"/acme.streaming.StreamingClashes/delete",
       [&](dynrpc::ClientContext& context) {
         dynrpc::ClientReaderWriter<Chunk, Chunk> stream =
             stub.delete_(context);
         absl::Status read = Await(executor(), stream.Read()).status();
         return std::vector<absl::Status>{read,
                                          Await(executor(), stream.Finish())};
       }},
  };
  for (const auto& test_case : kCases) {
    SCOPED_TRACE(test_case.path);
    dynrpc::ClientContext context;
    for (const absl::Status& status : test_case.call(context)) {
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnimplemented,
                                   HasSubstr(test_case.path)));
    }
  }
}

}  // namespace
