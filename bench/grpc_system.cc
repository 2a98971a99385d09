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

  // Every stream is a callback reactor on gRPC's own threads (a thread per
  // stream would not hold 10,000 of them).
  int64_t Stream(int streams, int64_t count) override {
    class Reader : public grpc::ClientReadReactor<grpcbench::Payload> {
     public:
      Reader(grpcbench::Echo::Stub& stub, int64_t count, std::mutex& mu,
             std::condition_variable& done, int& open,
             std::atomic<int64_t>& received)
          : mu_(mu), done_(done), open_(open), received_(received) {
        request_.set_count(count);
        request_.set_message_bytes(16);
        context_.set_deadline(std::chrono::system_clock::now() +
                              std::chrono::minutes(5));
        stub.async()->Stream(&context_, &request_, this);
        StartRead(&message_);
        StartCall();
      }
      void OnReadDone(bool ok) override {
        if (!ok) return;  // the stream ended: OnDone follows
        received_.fetch_add(1, std::memory_order_relaxed);
        StartRead(&message_);
      }
      void OnDone(const grpc::Status& status) override {
        if (!status.ok()) {
          std::fprintf(stderr, "a gRPC stream failed: %s\n",
                       status.error_message().c_str());
        }
        std::lock_guard lock(mu_);
        if (--open_ == 0) done_.notify_all();
      }

     private:
      std::mutex& mu_;
      std::condition_variable& done_;
      int& open_;
      std::atomic<int64_t>& received_;
      grpc::ClientContext context_;
      grpcbench::StreamRequest request_;
      grpcbench::Payload message_;
    };
    std::mutex mu;
    std::condition_variable done;
    int open = streams;
    std::atomic<int64_t> received{0};
    std::vector<std::unique_ptr<Reader>> readers;
    for (int s = 0; s < streams; ++s) {
      readers.push_back(
          std::make_unique<Reader>(*stub_, count, mu, done, open, received));
    }
    std::unique_lock lock(mu);
    done.wait(lock, [&] { return open == 0; });
    return received.load();
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
