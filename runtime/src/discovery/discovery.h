// Discovery: where servers register the services they host, under a lease
// they keep alive, and where channels bound to a service watch its
// instances. Two backends behind one interface: a directory on this machine
// (file_discovery.cc) and etcd (etcd_discovery.cc, spoken through dynrpc's
// own HTTP/2 client). The core knows neither: Server registers through
// this interface, and a service's channel watches through it.
#ifndef DYNRPC_RUNTIME_SRC_DISCOVERY_DISCOVERY_H_
#define DYNRPC_RUNTIME_SRC_DISCOVERY_DISCOVERY_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "dynrpc/config.h"
#include "dynrpc/routing.h"

namespace dynrpc::internal {

// One server's entries, renewed until Deregister() or destruction (which
// stops renewing but leaves them to expire: a process that exits without
// deregistering is found dead by its lease).
class Registration {
 public:
  virtual ~Registration() = default;
  // Removes the entries now and stops renewing. Idempotent. Blocks (etcd:
  // up to a few seconds when the backend is unreachable); not from the
  // executor's threads.
  virtual void Deregister() = 0;
};

// Ends a watch when destroyed: no callback runs after the destructor
// returns... except one already running on another thread, so callbacks
// hold only weak references.
class WatchHandle {
 public:
  virtual ~WatchHandle() = default;
};

// The live instances of one service (every plane), or why the backend could
// not be read (the watch goes on and retries).
using InstancesCallback =
    std::function<void(absl::StatusOr<std::vector<Instance>>)>;

class Discovery {
 public:
  virtual ~Discovery() = default;
  // Registers `instances` (the services of one server) under one lease of
  // DiscoveryConfig::lease_ttl, renewed every third of it. Blocks; not from
  // the executor's threads. The error names the backend and its setting.
  virtual absl::StatusOr<std::unique_ptr<Registration>> Register(
      std::vector<Instance> instances) = 0;
  // Calls `on_change` (on the executor) with the service's live instances:
  // once when first listed, then after every change, until the handle is
  // destroyed.
  virtual std::unique_ptr<WatchHandle> Watch(std::string service,
                                             InstancesCallback on_change) = 0;
  // "file discovery in /tmp/dynrpc-discovery/dynamo (DYN_FILE_KV)", for
  // messages.
  virtual std::string Describe() const = 0;
};

// The backend `config.discovery` selects.
absl::StatusOr<std::shared_ptr<Discovery>> CreateDiscovery(
    const Config& config, boost::asio::any_io_executor executor);

// An entry's value (JSON of dynrpc.discovery.v1.Instance) and back.
std::string EncodeInstance(const Instance& instance, std::string_view name_space,
                           int64_t expires_unix_ms);
struct DecodedInstance {
  Instance instance;
  int64_t expires_unix_ms = 0;
};
absl::StatusOr<DecodedInstance> DecodeInstance(std::string_view json);

// Milliseconds since the epoch (entries compare wall-clock times across
// processes).
int64_t UnixMillis();
// When this process started (the time dynrpc was loaded), ms since the epoch.
int64_t ProcessStartUnixMillis();

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_DISCOVERY_DISCOVERY_H_
