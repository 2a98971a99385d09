// What a request plane's server over TCP (tcp/, http/) does before a
// connection speaks its protocol: binding, accepting within
// DYN_SERVER_MAX_CONNECTIONS, owning every task, shutting down.
#ifndef DYNRPC_RUNTIME_SRC_NET_SOCKET_SERVER_H_
#define DYNRPC_RUNTIME_SRC_NET_SOCKET_SERVER_H_

#include <optional>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "core/admission.h"
#include "core/request_plane.h"
#include "core/task_group.h"
#include "dynrpc/config.h"
#include "net/sockets.h"

namespace dynrpc::internal::net {

// A plane's server derives from it and serves each accepted connection.
// Its destructor must call Shutdown() first: the tasks use its members.
class SocketServer : public RequestPlaneServer {
 public:
  ~SocketServer() override;

  // Binds the ListenSpec's host (detected when empty) and port (0: the OS
  // picks) and returns "host:port".
  absl::StatusOr<std::string> Start(CallHandler& handler) final;
  // Cancels every task (accepting, connections, calls) and waits for them.
  // Idempotent.
  void Shutdown() final;

 protected:
  SocketServer(ListenSpec spec, const ServerLimits& limits,
               boost::asio::any_io_executor executor,
               const char* accept_task_name);

  // A connection accepted on `strand` (its own): the plane spawns its
  // reader and writer there. The reader holds `token` (net::Holding) for
  // the connection's life.
  virtual void Accepted(boost::asio::ip::tcp::socket socket,
                        boost::asio::any_io_executor strand,
                        Admission::Token token) = 0;
  // Shutting down: accepting has stopped (on the accept loop's strand).
  virtual void StoppedAccepting() {}

  TaskGroup& tasks() { return tasks_; }
  CallHandler& handler() const { return *handler_; }

 private:
  boost::asio::awaitable<void> AcceptLoop();

  const ListenSpec spec_;
  const char* const accept_task_name_;
  boost::asio::any_io_executor executor_;
  Admission connections_;  // DYN_SERVER_MAX_CONNECTIONS
  TaskGroup tasks_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  CallHandler* handler_ = nullptr;  // borrowed, set by Start()
  bool shut_down_ = false;
};

}  // namespace dynrpc::internal::net

#endif  // DYNRPC_RUNTIME_SRC_NET_SOCKET_SERVER_H_
