// A Server hosts generated services on the request plane that the
// configuration selects, and reports the address clients reach it at. It
// registers each service in discovery (Config::discovery), so that channels
// bound to the service (Channel::ForService) find it, and serves
// grpc.health.v1.Health beside them.
//
// Example:
//   dynrpc::Runtime runtime;
//   GreeterImpl greeter;
//   dynrpc::Server server(runtime.executor());
//   server.AddService(greeter);
//   if (absl::Status s = server.Start(); !s.ok()) return s;
//   std::cout << "listening on " << server.address() << "\n";
//   server.Wait();  // until SIGINT or SIGTERM (then drains) or Shutdown()
#ifndef DYNRPC_SERVER_H_
#define DYNRPC_SERVER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "dynrpc/config.h"
#include "dynrpc/service.h"

namespace dynrpc {

namespace internal {
class Discovery;
class Dispatcher;
class HealthService;
struct ReflectionServices;
class SystemServer;
class Registration;
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

  // Binds and starts accepting calls, then registers each service in
  // discovery (unless Config::discovery.register_servers is false). On
  // success address() is the address a Channel reaches this server at (for
  // TCP "host:port", with the port the OS assigned). Fails, naming the port
  // and the variable that set it, when the port is taken, and naming the
  // backend when discovery cannot be written. Blocks (etcd: a network round
  // trip); not from the executor's threads.
  absl::Status Start();

  // Empty until Start() succeeds.
  const std::string& address() const { return address_; }
  // Unique to this server (random, never 0): discovery lists its services
  // under it, and ClientContext::set_instance_id() routes a call to it.
  uint64_t instance_id() const { return instance_id_; }

  // Graceful drain: health turns NOT_SERVING, the services leave discovery,
  // new calls are refused (UNAVAILABLE, marked so a channel bound to the
  // service retries them on another instance), the calls in flight run
  // for up to `grace` (default: Config::graceful_shutdown_timeout,
  // DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT, 30 s), then Shutdown() cancels
  // the rest; once none runs, the server waits until no call has come for
  // 500 ms (the last answers go out; callers have seen it leave), then
  // closes. False when some had to be cancelled. A Shutdown() on another
  // thread ends the drain at once. Blocks; not from the executor's threads.
  bool Drain(std::optional<std::chrono::milliseconds> grace = std::nullopt);

  // Stops at once (a drain in progress too): leaves discovery, stops
  // accepting, closes connections, cancels running handlers and waits until
  // they have returned. Idempotent.
  //
  // WARNING: blocks; call it from outside the executor's threads (a handler
  // that calls it deadlocks).
  void Shutdown();

  // Blocks until the process gets SIGINT or SIGTERM (then drains, as
  // Drain()) or Shutdown() is called on another thread. Returns the
  // signal's number, or 0 after Shutdown(). The signals are dynrpc's only
  // while it waits. Like Shutdown(), not from the executor's threads.
  int Wait();

 private:
  boost::asio::any_io_executor executor_;
  absl::StatusOr<Config> config_;
  std::unique_ptr<internal::Dispatcher> dispatcher_;
  std::unique_ptr<internal::HealthService> health_;
  std::unique_ptr<internal::ReflectionServices> reflection_;
  internal::SystemServer* system_ = nullptr;  // the process's, when on
  std::vector<std::string> services_;  // full names, as added
  std::unique_ptr<internal::RequestPlaneServer> plane_;
  std::shared_ptr<internal::Discovery> discovery_;
  std::unique_ptr<internal::Registration> registration_;
  std::string address_;
  uint64_t instance_id_;
  absl::Status add_error_;
  bool started_ = false;
  bool draining_ = false;  // under shutdown_mu_
  // Wait()'s: a stop was asked for (Shutdown() or a signal), and which.
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_requested_ = false;
  int stop_signal_ = 0;
  std::mutex shutdown_mu_;  // one Shutdown() at a time
};

}  // namespace dynrpc

#endif  // DYNRPC_SERVER_H_
