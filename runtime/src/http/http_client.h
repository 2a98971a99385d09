// The HTTP/2 request plane's client: gRPC over HTTP/2 (h2c, prior
// knowledge), many calls multiplexed per connection, a pool per target with
// idle limits, PING keepalive.
#ifndef DYNRPC_RUNTIME_SRC_HTTP_HTTP_CLIENT_H_
#define DYNRPC_RUNTIME_SRC_HTTP_HTTP_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "boost/asio/any_io_executor.hpp"
#include "core/client_call.h"
#include "core/connection_pool.h"
#include "core/request_plane.h"
#include "core/task_group.h"
#include "dynrpc/config.h"
#include "net/sockets.h"
#include "http/h2_connection.h"

namespace dynrpc::internal::http {

// Checks a HttpConfig built in code (the environment's parser checks the
// same ranges): the values that would hang or corrupt calls.
absl::Status CheckConfig(const HttpConfig& config);

// The HTTP/2 plane's client: the core runs its calls (FramedPlaneClient,
// with nghttp2's flow control instead of the core's window); it keeps a
// pool of HTTP/2 connections per target and maps a call's frames to HEADERS,
// DATA, trailers and RST_STREAM.
class HttpClient final : public FramedPlaneClient {
 public:
  HttpClient(HttpConfig config, boost::asio::any_io_executor executor);
  ~HttpClient() override;

  boost::asio::awaitable<absl::StatusOr<std::shared_ptr<ClientLink>>> Open(
      std::string_view target, CallRequest& head, std::string* first_message,
      bool streaming, std::shared_ptr<StreamState> state,
      OpenCancel& cancel) override;
  std::size_t max_message_size() const override {
    return config_.max_message_size;
  }
  const boost::asio::any_io_executor& executor() const override {
    return executor_;
  }
  std::optional<StreamState::WireWindow> wire_window() const override {
    return StreamState::WireWindow{kGrpcPrefixSize};
  }
  Clock::duration default_timeout() const override {
    return config_.request_timeout;
  }
  std::string_view default_timeout_variable() const override {
    return "DYN_HTTP_REQUEST_TIMEOUT";
  }
  absl::Status CheckTarget(std::string_view target) const override {
    return net::CheckTarget(target);
  }

  // For tests: the open connections to `target`, and what each has seen.
  std::vector<H2Stats> ConnectionStats(std::string_view target) const;
  // For tests: called (on a runtime thread) with the reason whenever one of
  // this client's connections closes. Set before the first call.
  void set_on_connection_closed(std::function<void(absl::Status)> f) {
    on_connection_closed_ = std::move(f);
  }

  // The request headers for a call.
  absl::StatusOr<Headers> RequestHeaders(std::string_view target,
                                         const CallRequest& request,
                                         bool streaming) const;
  const HttpConfig& config() const { return config_; }

 private:
  const HttpConfig config_;
  const boost::asio::any_io_executor executor_;
  const std::shared_ptr<TaskGroup> tasks_;
  std::function<void(absl::Status)> on_connection_closed_;
  ConnectionPools pools_;
};

}  // namespace dynrpc::internal::http

#endif  // DYNRPC_RUNTIME_SRC_HTTP_HTTP_CLIENT_H_
