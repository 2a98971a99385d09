// The TCP request plane's server: accepts connections and serves the calls
// multiplexed on them.
#ifndef DYNRPC_RUNTIME_SRC_TCP_TCP_SERVER_H_
#define DYNRPC_RUNTIME_SRC_TCP_TCP_SERVER_H_

#include <memory>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "dynrpc/config.h"
#include "net/socket_server.h"
#include "tcp/framed_socket.h"

namespace dynrpc::internal::tcp {

struct ServerConnection;

class TcpServer final : public net::SocketServer {
 public:
  TcpServer(TcpConfig config, const ServerLimits& limits,
            boost::asio::any_io_executor executor);
  ~TcpServer() override { Shutdown(); }

 private:
  void Accepted(boost::asio::ip::tcp::socket socket,
                boost::asio::any_io_executor strand,
                Admission::Token token) override;
  boost::asio::awaitable<void> ServeConnection(
      std::shared_ptr<FramedSocket> socket);
  // Opens a call for a REQUEST frame; false on a protocol violation (the
  // connection must close).
  bool OpenCall(const std::shared_ptr<ServerConnection>& connection,
                InFrame frame);

  const TcpConfig config_;
};

}  // namespace dynrpc::internal::tcp

#endif  // DYNRPC_RUNTIME_SRC_TCP_TCP_SERVER_H_
