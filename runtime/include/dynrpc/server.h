// A Server hosts generated services on the request plane that the
// configuration selects, and reports the address clients reach it at.
//
// Example:
//   dynrpc::Runtime runtime;
//   GreeterImpl greeter;
//   dynrpc::Server server(runtime.executor());
//   server.AddService(greeter);
//   if (absl::Status s = server.Start(); !s.ok()) return s;
//   std::cout << "listening on " << server.address() << "\n";
//   server.Wait();  // until SIGINT or SIGTERM (or Shutdown())
#ifndef DYNRPC_SERVER_H_
#define DYNRPC_SERVER_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "dynrpc/config.h"
#include "dynrpc/service.h"

namespace dynrpc {

namespace internal {
class Dispatcher;
class RequestPlaneServer;
}  // namespace internal

class Server {
 public:
  // Uses Config::Global(); Start() reports an invalid environment.
  explicit Server(boost::asio::any_io_executor executor);
  Server(boost::asio::any_io_executor executor, Config config);
  // Calls Shutdown().
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registers every method of `service`. `service` is borrowed: it must
  // outlive this server. Two services with the same full name fail here
  // (ALREADY_EXISTS) and make Start() fail. After Start() the method table
  // is fixed: FAILED_PRECONDITION, and the service is not added.
  absl::Status AddService(Service& service);

  // Binds and starts accepting calls. On success address() is the address a
  // Channel reaches this server at (for TCP "host:port", with the port the OS
  // assigned). Fails, naming the port and the variable that set it, when the
  // port is taken.
  absl::Status Start();

  // Empty until Start() succeeds.
  const std::string& address() const { return address_; }

  // Stops accepting, closes connections, cancels running handlers and waits
  // until they have returned. Idempotent.
  //
  // WARNING: blocks; call it from outside the executor's threads (a handler
  // that calls it deadlocks).
  void Shutdown();

  // Blocks until Shutdown() is called (on another thread) or the process
  // gets SIGINT or SIGTERM, then shuts the server down. Returns the
  // signal's number, or 0 after Shutdown(). The signals are dynrpc's only
  // while it waits. Like Shutdown(), not from the executor's threads.
  int Wait();

 private:
  boost::asio::any_io_executor executor_;
  absl::StatusOr<Config> config_;
  std::unique_ptr<internal::Dispatcher> dispatcher_;
  std::unique_ptr<internal::RequestPlaneServer> plane_;
  std::string address_;
  absl::Status add_error_;
  bool started_ = false;
  // Wait()'s: a stop was asked for (Shutdown() or a signal), and which.
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_requested_ = false;
  int stop_signal_ = 0;
  std::mutex shutdown_mu_;  // one Shutdown() at a time
};

}  // namespace dynrpc

#endif  // DYNRPC_SERVER_H_
