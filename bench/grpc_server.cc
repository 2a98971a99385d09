// bench.Echo served by gRPC C++ (Debian's 1.51), the baseline: the callback
// API, as gRPC recommends for performance, pinned with --cpu=N.
#include <grpcpp/grpcpp.h>

#include <latch>
#include <memory>
#include <string>

#include "bench/grpc_echo.grpc.pb.h"
#include "bench_util.h"

namespace {

class EchoImpl final : public grpcbench::Echo::CallbackService {
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  const grpcbench::Payload* request,
                                  grpcbench::Payload* reply) override {
    *reply = *request;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<grpcbench::Payload>* Stream(
      grpc::CallbackServerContext* context,
      const grpcbench::StreamRequest* request) override {
    class Writer : public grpc::ServerWriteReactor<grpcbench::Payload> {
     public:
      explicit Writer(const grpcbench::StreamRequest& request)
          : left_(request.count()) {
        message_.set_data(std::string(request.message_bytes(), 's'));
        Next();
      }
      void OnWriteDone(bool ok) override {
        if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, ""));
        Next();
      }
      void OnDone() override { delete this; }

     private:
      void Next() {
        if (left_-- > 0) {
          StartWrite(&message_);
        } else {
          Finish(grpc::Status::OK);
        }
      }
      grpcbench::Payload message_;
      int64_t left_;
    };
    return new Writer(*request);
  }
};

}  // namespace

int main(int argc, char** argv) {
  bench::PinToCpu(bench::CpuFlag(argc, argv));
  EchoImpl service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "grpc_server: cannot start\n");
    return 1;
  }
  bench::AnnounceAddress("127.0.0.1:" + std::to_string(port));
  server->Wait();
}
