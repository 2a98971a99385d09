// The HTTP/2 request plane's server: gRPC over HTTP/2 (h2c, prior
// knowledge) at {root path}/{package.Service}/{Method} and at the bare gRPC
// path, and JSON for unary methods (content-type: application/json).
#ifndef DYNRPC_RUNTIME_SRC_HTTP_HTTP_SERVER_H_
#define DYNRPC_RUNTIME_SRC_HTTP_HTTP_SERVER_H_

#include <memory>
#include <optional>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "core/admission.h"
#include "core/request_plane.h"
#include "core/task_group.h"
#include "dynrpc/config.h"
#include "http/h2_connection.h"

namespace dynrpc::internal::http {

class HttpServerConnection;

class HttpServer final : public RequestPlaneServer {
 public:
  HttpServer(HttpConfig config, const ServerLimits& limits,
             boost::asio::any_io_executor executor);
  ~HttpServer() override;

  // Binds config.host (detected when empty) and config.port (0: the OS
  // picks) and returns "host:port".
  absl::StatusOr<std::string> Start(CallHandler& handler) override;
  void Shutdown() override;

 private:
  friend class HttpServerConnection;

  boost::asio::awaitable<void> AcceptLoop();
  // Serves one request stream to its end.
  boost::asio::awaitable<void> ServeStream(
      std::shared_ptr<HttpServerConnection> connection,
      std::shared_ptr<H2Stream> stream);

  // The method path ("/pkg.Service/Method") a request path names: under the
  // root path, or bare.
  std::string MethodPath(std::string_view request_path) const;

  HttpConfig config_;
  boost::asio::any_io_executor executor_;
  Admission connections_;  // DYN_SERVER_MAX_CONNECTIONS
  TaskGroup tasks_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  CallHandler* handler_ = nullptr;  // borrowed, set by Start()
  bool shut_down_ = false;
};

}  // namespace dynrpc::internal::http

#endif  // DYNRPC_RUNTIME_SRC_HTTP_HTTP_SERVER_H_
