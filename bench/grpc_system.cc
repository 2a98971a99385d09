// The gRPC C++ client of the benchmarks.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "bench/grpc_echo.grpc.pb.h"
#include "system.h"

namespace bench {
namespace {

// gRPC C++ with the same service: the callback API for unary calls, the
// sync API for streams.
class GrpcSystem final : public System {
 public:
  GrpcSystem() {
    std::string address = StartServer(DYNRPC_BENCH_DIR "/grpc_server", {});
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args);
    stub_ = grpcbench::Echo::NewStub(channel_);
  }

  void UnaryOnce(const std::string& payload) override {
    // Every payload of a size is the same bytes (bench::System): comparing
    // sizes, not contents, keeps a 16 MiB memcmp out of the measured call.
    if (request_.data().size() != payload.size()) request_.set_data(payload);
    grpcbench::Payload reply;
    grpc::ClientContext context;
    if (!stub_->Unary(&context, request_, &reply).ok()) std::abort();
  }

  void UnaryBatch(const std::string& payload, int calls,
                  int in_flight) override {
    grpcbench::Payload request;
    request.set_data(payload);
    std::mutex mu;
    std::condition_variable done;
    int issued = 0, finished = 0;
    std::function<void()> issue = [&] {
      struct Call {
        grpc::ClientContext context;
        grpcbench::Payload reply;
      };
      auto* call = new Call;
      stub_->async()->Unary(&call->context, &request, &call->reply,
                            [&, call](grpc::Status status) {
                              delete call;
                              if (!status.ok()) std::abort();
                              bool more;
                              {
                                std::lock_guard lock(mu);
                                ++finished;
                                more = issued < calls;
                                if (more) ++issued;
                              }
                              done.notify_all();
                              if (more) issue();
                            });
    };
    {
      std::lock_guard lock(mu);
      issued = std::min(in_flight, calls);
    }
    for (int i = 0; i < std::min(in_flight, calls); ++i) issue();
    std::unique_lock lock(mu);
    done.wait(lock, [&] { return finished == calls; });
  }

  int64_t Stream(int streams, int64_t count) override {
    std::atomic<int64_t> received{0};
    std::vector<std::thread> readers;
    for (int s = 0; s < streams; ++s) {
      readers.emplace_back([&] {
        grpc::ClientContext context;
        grpcbench::StreamRequest request;
        request.set_count(count);
        request.set_message_bytes(16);
        auto reader = stub_->Stream(&context, request);
        grpcbench::Payload message;
        int64_t n = 0;
        while (reader->Read(&message)) ++n;
        if (!reader->Finish().ok()) std::abort();
        received += n;
      });
    }
    for (auto& r : readers) r.join();
    return received;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpcbench::Echo::Stub> stub_;
  grpcbench::Payload request_;  // built once per payload, as a caller would
};

}  // namespace

std::unique_ptr<System> MakeGrpcSystem() {
  return std::make_unique<GrpcSystem>();
}

}  // namespace bench
