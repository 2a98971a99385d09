// What every example server's main() does around its service: parse
// --address-file, start the server (which registers it in discovery),
// announce its address and instance, run until SIGINT or SIGTERM, drain.
#ifndef DYNRPC_GENERATED_EXAMPLES_COMMON_EXAMPLE_SERVER_H_
#define DYNRPC_GENERATED_EXAMPLES_COMMON_EXAMPLE_SERVER_H_

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include "dynrpc/dynrpc.h"

namespace examples {

// Serves `service` on the request plane the environment selects until a
// signal arrives. Prints "<name>: listening on <address>" once calls are
// accepted (and writes the address to --address-file=PATH if given).
// Returns main()'s exit code.
inline int ServeUntilSignalled(std::string_view name, dynrpc::Service& service,
                               int argc, char** argv) {
  std::string address_file;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--address-file=")) {
      address_file = arg.substr(std::string_view("--address-file=").size());
    } else {
      std::cerr << "usage: " << name << " [--address-file=PATH]\n";
      return 2;
    }
  }
  const absl::StatusOr<dynrpc::Config>& config = dynrpc::Config::Global();
  if (!config.ok()) {
    std::cerr << name << ": " << config.status().message() << "\n";
    return 2;
  }
  dynrpc::Runtime runtime;
  dynrpc::Server server(runtime.executor(), *config);
  absl::Status s = server.AddService(service);
  if (s.ok()) s = server.Start();
  if (!s.ok()) {
    std::cerr << name << ": " << s.message() << "\n";
    return 1;
  }
  char instance[17];
  std::snprintf(instance, sizeof instance, "%016llx",
                static_cast<unsigned long long>(server.instance_id()));
  std::cout << name << ": listening on " << server.address() << " ("
            << dynrpc::RequestPlaneName(config->request_plane)
            << " request plane, instance " << instance << ")" << std::endl;
  if (!address_file.empty()) {
    std::ofstream(address_file + ".tmp") << server.address() << "\n";
    std::rename((address_file + ".tmp").c_str(), address_file.c_str());
  }
  // Until SIGINT or SIGTERM, then a graceful drain: the services leave
  // discovery, calls in flight finish (up to
  // DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT), new ones go elsewhere.
  int signal_number = server.Wait();
  std::cout << name << ": drained and stopped by signal " << signal_number
            << std::endl;
  return 0;
}

}  // namespace examples

#endif  // DYNRPC_GENERATED_EXAMPLES_COMMON_EXAMPLE_SERVER_H_
