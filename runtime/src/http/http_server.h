// The HTTP/2 request plane's server: gRPC over HTTP/2 (h2c, prior
// knowledge) at {root path}/{package.Service}/{Method} and at the bare gRPC
// path, and JSON for unary methods (content-type: application/json).
#ifndef DYNRPC_RUNTIME_SRC_HTTP_HTTP_SERVER_H_
#define DYNRPC_RUNTIME_SRC_HTTP_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "dynrpc/config.h"
#include "http/h2_connection.h"
#include "net/socket_server.h"

namespace dynrpc::internal::http {

class HttpServerConnection;

class HttpServer final : public net::SocketServer {
 public:
  HttpServer(HttpConfig config, const ServerLimits& limits,
             boost::asio::any_io_executor executor);
  ~HttpServer() override { Shutdown(); }

 private:
  friend class HttpServerConnection;

  void Accepted(boost::asio::ip::tcp::socket socket,
                boost::asio::any_io_executor strand,
                Admission::Token token) override;
  // Ends every connection, so that its reader and writer return.
  void StoppedAccepting() override;
  // Serves one request stream to its end.
  boost::asio::awaitable<void> ServeStream(
      std::shared_ptr<HttpServerConnection> connection,
      std::shared_ptr<H2Stream> stream);

  // The method path ("/pkg.Service/Method") a request path names: under the
  // root path, or bare.
  std::string MethodPath(std::string_view request_path) const;

  const HttpConfig config_;
  // The connections, to end them at shutdown (the accept loop's strand).
  std::vector<std::weak_ptr<HttpServerConnection>> connections_;
};

}  // namespace dynrpc::internal::http

#endif  // DYNRPC_RUNTIME_SRC_HTTP_HTTP_SERVER_H_
