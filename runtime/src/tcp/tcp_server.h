// The TCP request plane's server: accepts connections and serves the calls
// multiplexed on them.
#ifndef DYNRPC_RUNTIME_SRC_TCP_TCP_SERVER_H_
#define DYNRPC_RUNTIME_SRC_TCP_TCP_SERVER_H_

#include <memory>
#include <optional>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "core/admission.h"
#include "core/request_plane.h"
#include "core/task_group.h"
#include "dynrpc/config.h"
#include "tcp/framed_socket.h"

namespace dynrpc::internal::tcp {

struct ServerConnection;

class TcpServer final : public RequestPlaneServer {
 public:
  TcpServer(TcpConfig config, const ServerLimits& limits,
            boost::asio::any_io_executor executor);
  ~TcpServer() override;

  // Binds config.host (detected when empty) and config.port (0: the OS
  // picks) and returns "host:port".
  absl::StatusOr<std::string> Start(CallHandler& handler) override;
  void Shutdown() override;

 private:
  boost::asio::awaitable<void> AcceptLoop();
  boost::asio::awaitable<void> ServeConnection(
      std::shared_ptr<FramedSocket> socket);
  // Opens a call for a REQUEST frame; false on a protocol violation (the
  // connection must close).
  bool OpenCall(const std::shared_ptr<ServerConnection>& connection,
                InFrame frame);

  TcpConfig config_;
  boost::asio::any_io_executor executor_;
  Admission connections_;  // DYN_SERVER_MAX_CONNECTIONS
  TaskGroup tasks_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  CallHandler* handler_ = nullptr;  // borrowed, set by Start()
  bool shut_down_ = false;
};

}  // namespace dynrpc::internal::tcp

#endif  // DYNRPC_RUNTIME_SRC_TCP_TCP_SERVER_H_
