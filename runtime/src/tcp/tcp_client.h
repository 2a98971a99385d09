// The TCP request plane's client: pooled, multiplexed connections per
// destination.
#ifndef DYNRPC_RUNTIME_SRC_TCP_TCP_CLIENT_H_
#define DYNRPC_RUNTIME_SRC_TCP_TCP_CLIENT_H_

#include <memory>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "core/client_call.h"
#include "core/connection_pool.h"
#include "core/request_plane.h"
#include "core/task_group.h"
#include "dynrpc/config.h"
#include "net/sockets.h"

namespace dynrpc::internal::tcp {

// The TCP plane's client: the core runs its calls (FramedPlaneClient); it
// keeps a pool of multiplexed connections per target and carries the calls'
// frames over them. Connections open lazily. A call takes the least-loaded
// connection to its target that has fewer than `channel_buffer` calls in
// flight; when all are full a new one is dialled, up to `pool_size`; past
// that the call waits for a slot (it is never dropped; its deadline still
// runs).
class TcpClient final : public FramedPlaneClient {
 public:
  TcpClient(TcpConfig config, boost::asio::any_io_executor executor);
  // Closes every connection; calls still in flight fail with UNAVAILABLE.
  ~TcpClient() override;

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
  Clock::duration default_timeout() const override {
    return config_.request_timeout;
  }
  std::string_view default_timeout_variable() const override {
    return "DYN_TCP_REQUEST_TIMEOUT";
  }
  absl::Status CheckTarget(std::string_view target) const override {
    return net::CheckTarget(target);
  }

 private:
  TcpConfig config_;
  boost::asio::any_io_executor executor_;
  // Connections' reader and writer coroutines; shared with the pools, which
  // calls in flight may keep alive past the client.
  std::shared_ptr<TaskGroup> tasks_;
  ConnectionPools pools_;
};

}  // namespace dynrpc::internal::tcp

#endif  // DYNRPC_RUNTIME_SRC_TCP_TCP_CLIENT_H_
