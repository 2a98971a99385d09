// The NATS request plane: every call travels through a NATS server
// (protocol.h has the subjects and messages).
#ifndef DYNRPC_RUNTIME_SRC_NATS_NATS_PLANE_H_
#define DYNRPC_RUNTIME_SRC_NATS_NATS_PLANE_H_

#include <memory>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "core/client_call.h"
#include "core/request_plane.h"
#include "dynrpc/config.h"

namespace dynrpc::internal::nats {

// Checks a NatsConfig built in code (the environment's parser checks the
// same).
absl::Status CheckConfig(const NatsConfig& config);

class ServerState;
class ClientState;

// Serves a server's methods on their subjects (queue group per service) and
// on its instance's subjects. Start() returns the instance id, which a
// client may use as its target to reach this instance only.
class NatsServer final : public RequestPlaneServer {
 public:
  NatsServer(NatsConfig config, boost::asio::any_io_executor executor);
  ~NatsServer() override;
  absl::StatusOr<std::string> Start(CallHandler& handler) override;
  void Shutdown() override;

 private:
  std::shared_ptr<ServerState> state_;
};

// Calls services through NATS. A target is "*" (any instance of the
// method's service, load-shared by the NATS server) or an instance id.
// The NATS plane's client: the core runs its calls (FramedPlaneClient); it
// maps their frames to subjects.
class NatsClient final : public FramedPlaneClient {
 public:
  NatsClient(NatsConfig config, boost::asio::any_io_executor executor);
  ~NatsClient() override;

  boost::asio::awaitable<absl::StatusOr<std::shared_ptr<ClientLink>>> Open(
      std::string_view target, CallRequest& head, std::string* first_message,
      bool streaming, std::shared_ptr<StreamState> state,
      OpenCancel& cancel) override;
  std::size_t max_message_size() const override;
  const boost::asio::any_io_executor& executor() const override;
  Clock::duration default_timeout() const override;
  std::string_view default_timeout_variable() const override {
    return "DYN_NATS_REQUEST_TIMEOUT";
  }

 private:
  std::shared_ptr<ClientState> state_;
};

}  // namespace dynrpc::internal::nats

#endif  // DYNRPC_RUNTIME_SRC_NATS_NATS_PLANE_H_
