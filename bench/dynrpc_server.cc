// bench.Echo served by dynrpc, on the request plane DYN_REQUEST_PLANE
// selects, with one runtime thread (pinned with --cpu=N).
#include <latch>
#include <string>

#include "bench/bench.dynrpc.pb.h"
#include "bench_util.h"
#include "dynrpc/dynrpc.h"

namespace {

class EchoImpl final : public bench::Echo::Service {
 public:
  boost::asio::awaitable<absl::StatusOr<bench::Payload>> Unary(
      dynrpc::ServerContext&, const bench::Payload& request) override {
    co_return request;
  }
  boost::asio::awaitable<absl::Status> Stream(
      dynrpc::ServerContext&, const bench::StreamRequest& request,
      dynrpc::ServerWriter<bench::Payload>& writer) override {
    bench::Payload message;
    message.set_data(std::string(request.message_bytes(), 's'));
    for (int64_t i = 0; i < request.count(); ++i) {
      DYNRPC_CO_RETURN_IF_ERROR(co_await writer.Write(message));
    }
    co_return absl::OkStatus();
  }
};

}  // namespace

int main(int argc, char** argv) {
  bench::PinToCpu(bench::CpuFlag(argc, argv));
  const absl::StatusOr<dynrpc::Config>& config = dynrpc::Config::Global();
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  dynrpc::Runtime runtime(1);
  EchoImpl service;
  dynrpc::Server server(runtime.executor(), *config);
  absl::Status s = server.AddService(service);
  if (s.ok()) s = server.Start();
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  bench::AnnounceAddress(server.address());
  std::latch forever(1);
  forever.wait();  // the harness kills it
}
