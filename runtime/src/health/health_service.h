// grpc.health.v1.Health, served by every dynrpc::Server on every plane: the
// status of each service it hosts and of the server as a whole (service
// ""). SERVING once the server has started; NOT_SERVING from the moment it
// drains or shuts down.
#ifndef DYNRPC_RUNTIME_SRC_HEALTH_HEALTH_SERVICE_H_
#define DYNRPC_RUNTIME_SRC_HEALTH_HEALTH_SERVICE_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/deadline.h"
#include "grpc/health/v1/health.dynrpc.pb.h"

namespace dynrpc::internal {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // Sets the status of `service` ("" for the server) and tells its
  // watchers. Thread-safe.
  void Set(const std::string& service, ServingStatus status);
  // Every service known here, and the server, to `status`.
  void SetAll(ServingStatus status);
  // The status of `service` ("" for the server); SERVICE_UNKNOWN when it is
  // not known here. Thread-safe.
  ServingStatus Status(const std::string& service) const {
    return Get(service);
  }

  Reply<grpc::health::v1::HealthCheckResponse> Check(
      ServerContext& context,
      const grpc::health::v1::HealthCheckRequest& request) override;
  StreamReply Watch(
      ServerContext& context,
      const grpc::health::v1::HealthCheckRequest& request,
      ServerWriter<grpc::health::v1::HealthCheckResponse>& writer) override;

 private:
  // The running Watches' wake-ups, to signal once mu_ is released (a
  // woken Watch reads its status under mu_).
  std::vector<std::shared_ptr<Signal>> LiveWatchersLocked();
  // SERVICE_UNKNOWN when `service` is not known here.
  ServingStatus Get(const std::string& service) const;

  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, ServingStatus> status_;  // under mu_
  // Each running Watch's wake-up (a status changed); a Watch removes its
  // own when it ends.
  std::vector<std::weak_ptr<Signal>> watchers_;  // under mu_
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_HEALTH_HEALTH_SERVICE_H_
