// A separate process serving EchoService, for tests that kill a server.
// Prints "listening <address>" once it accepts calls, then "blocked" each
// time a Block call starts waiting; configured from the DYN_* environment.
#include <cstdio>
#include <iostream>
#include <latch>

#include "dynrpc/dynrpc.h"
#include "support/echo_service.h"

int main() {
  const absl::StatusOr<dynrpc::Config>& config = dynrpc::Config::Global();
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 2;
  }
  dynrpc::Runtime runtime(2);
  dynrpc::testing::EchoServiceImpl service;
  service.set_on_block([] {
    std::printf("blocked\n");
    std::fflush(stdout);
  });
  dynrpc::Server server(runtime.executor(), *config);
  absl::Status s = server.AddService(service);
  if (s.ok()) s = server.Start();
  if (!s.ok()) {
    std::cerr << s.message() << "\n";
    return 1;
  }
  std::printf("listening %s\n", server.address().c_str());
  std::fflush(stdout);
  std::latch forever(1);
  forever.wait();  // until killed
}
