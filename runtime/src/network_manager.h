// The one place that knows every request plane: builds the plane the
// configuration selects (an explicit switch; no self-registering registry).
#ifndef DYNRPC_RUNTIME_SRC_NETWORK_MANAGER_H_
#define DYNRPC_RUNTIME_SRC_NETWORK_MANAGER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "core/request_plane.h"
#include "dynrpc/config.h"

namespace dynrpc::internal {

// UNIMPLEMENTED for a plane this build does not have yet.
absl::StatusOr<std::unique_ptr<RequestPlaneServer>> CreateRequestPlaneServer(
    const Config& config, boost::asio::any_io_executor executor);
absl::StatusOr<std::shared_ptr<RequestPlaneClient>> CreateRequestPlaneClient(
    const Config& config, boost::asio::any_io_executor executor);

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_NETWORK_MANAGER_H_
