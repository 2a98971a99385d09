#include "network_manager.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "nats/nats_plane.h"
#include "tcp/limits.h"
#include "tcp/tcp_client.h"
#include "tcp/tcp_server.h"

namespace dynrpc::internal {

absl::StatusOr<std::unique_ptr<RequestPlaneServer>> CreateRequestPlaneServer(
    const Config& config, boost::asio::any_io_executor executor) {
  switch (config.request_plane) {
    case RequestPlaneKind::kTcp:
      if (absl::Status s = tcp::CheckConfig(config.tcp); !s.ok()) return s;
      return std::make_unique<tcp::TcpServer>(config.tcp, config.limits,
                                              std::move(executor));
    case RequestPlaneKind::kHttp:
      if (absl::Status s = http::CheckConfig(config.http); !s.ok()) return s;
      return std::make_unique<http::HttpServer>(config.http, config.limits,
                                                std::move(executor));
    case RequestPlaneKind::kNats:
      if (absl::Status s = nats::CheckConfig(config.nats); !s.ok()) return s;
      return std::make_unique<nats::NatsServer>(config.nats,
                                                std::move(executor));
  }
  return absl::InvalidArgumentError("unknown request plane");
}

absl::StatusOr<std::shared_ptr<RequestPlaneClient>> CreateRequestPlaneClient(
    const Config& config, boost::asio::any_io_executor executor) {
  switch (config.request_plane) {
    case RequestPlaneKind::kTcp:
      if (absl::Status s = tcp::CheckConfig(config.tcp); !s.ok()) return s;
      return std::make_shared<tcp::TcpClient>(config.tcp, std::move(executor));
    case RequestPlaneKind::kHttp:
      if (absl::Status s = http::CheckConfig(config.http); !s.ok()) return s;
      return std::make_shared<http::HttpClient>(config.http,
                                                std::move(executor));
    case RequestPlaneKind::kNats:
      if (absl::Status s = nats::CheckConfig(config.nats); !s.ok()) return s;
      return std::make_shared<nats::NatsClient>(config.nats,
                                                std::move(executor));
  }
  return absl::InvalidArgumentError("unknown request plane");
}

}  // namespace dynrpc::internal
