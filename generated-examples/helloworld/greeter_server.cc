// Serves helloworld.Greeter on the request plane DYN_REQUEST_PLANE selects.
//
//   greeter_server [--address-file=PATH]
//
// Prints "listening on <address>" (and writes the address to PATH) once it
// accepts calls; stops on SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <string>
#include <string_view>

#include "boost/asio/signal_set.hpp"
#include "dynrpc/dynrpc.h"
#include "helloworld/helloworld.dynrpc.pb.h"

namespace {

class GreeterImpl final : public helloworld::Greeter::Service {
 public:
  boost::asio::awaitable<absl::StatusOr<helloworld::HelloReply>> SayHello(
      dynrpc::ServerContext& context,
      const helloworld::HelloRequest& request) override {
    if (request.name().empty()) {
      co_return absl::InvalidArgumentError("name must not be empty");
    }
    helloworld::HelloReply reply;
    reply.set_message("Hello, " + request.name() + "!");
    co_return reply;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string address_file;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--address-file=")) {
      address_file = arg.substr(std::string_view("--address-file=").size());
    } else {
      std::cerr << "usage: greeter_server [--address-file=PATH]\n";
      return 2;
    }
  }
  const absl::StatusOr<dynrpc::Config>& config = dynrpc::Config::Global();
  if (!config.ok()) {
    std::cerr << "greeter_server: " << config.status().message() << "\n";
    return 2;
  }

  dynrpc::Runtime runtime;
  GreeterImpl greeter;
  dynrpc::Server server(runtime.executor(), *config);
  server.AddService(greeter);
  if (absl::Status s = server.Start(); !s.ok()) {
    std::cerr << "greeter_server: " << s.message() << "\n";
    return 1;
  }
  std::cout << "greeter_server: listening on " << server.address() << " ("
            << dynrpc::RequestPlaneName(config->request_plane)
            << " request plane)" << std::endl;
  if (!address_file.empty()) {
    std::ofstream(address_file + ".tmp") << server.address() << "\n";
    std::rename((address_file + ".tmp").c_str(), address_file.c_str());
  }

  std::promise<int> stop;
  boost::asio::signal_set signals(runtime.executor(), SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (!ec) stop.set_value(signo);
  });
  int signo = stop.get_future().get();
  server.Shutdown();
  std::cout << "greeter_server: stopped by signal " << signo << std::endl;
  return 0;
}
