// The file backend: a directory on this machine that many processes share,
// with no server. Layout: <dir>/<namespace>/<service>/<instance id>.json,
// one file per service of a server instance, each an Instance in JSON with
// the time it expires. The owner rewrites its files (to a temporary name,
// then rename(2): readers never see half a file) every third of the lease;
// readers ignore files past their expiry and delete those expired for
// another lease's time (their owner is surely dead). A watch lists the
// service's directory every 200 ms.
#ifndef DYNRPC_RUNTIME_SRC_DISCOVERY_FILE_DISCOVERY_H_
#define DYNRPC_RUNTIME_SRC_DISCOVERY_FILE_DISCOVERY_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/task_group.h"
#include "discovery/discovery.h"

namespace dynrpc::internal {

class FileDiscovery final : public Discovery,
                            public std::enable_shared_from_this<FileDiscovery> {
 public:
  // Owned by a shared_ptr: a watch's task keeps it alive.
  FileDiscovery(DiscoveryConfig config, boost::asio::any_io_executor executor);
  ~FileDiscovery() override;

  absl::StatusOr<std::unique_ptr<Registration>> Register(
      std::vector<Instance> instances) override;
  std::unique_ptr<WatchHandle> Watch(std::string service,
                                     InstancesCallback on_change) override;
  std::string Describe() const override;

  // The live instances of `service` now; deletes long-expired entries.
  absl::StatusOr<std::vector<Instance>> List(const std::string& service) const;

  static constexpr std::chrono::milliseconds kPollInterval{200};

 private:
  std::string ServiceDir(const std::string& service) const;

  const DiscoveryConfig config_;
  const std::string root_;  // <dir>/<namespace>
  // Each registration's renewal and each watch run in a TaskGroup of the
  // handle's own, stopped with it.
  const boost::asio::any_io_executor executor_;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_DISCOVERY_FILE_DISCOVERY_H_
