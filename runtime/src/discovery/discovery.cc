#include "discovery/discovery.h"

#include <unistd.h>

#include <chrono>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "discovery/etcd_discovery.h"
#include "discovery/file_discovery.h"
#include "dynrpc/discovery/v1/instance.pb.h"
#include "google/protobuf/util/json_util.h"

namespace dynrpc::internal {

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {
const int64_t process_start_unix_ms = UnixMillis();
}  // namespace

int64_t ProcessStartUnixMillis() { return process_start_unix_ms; }

std::string EncodeInstance(const Instance& instance,
                           std::string_view name_space,
                           int64_t expires_unix_ms) {
  dynrpc::discovery::v1::Instance proto;
  proto.set_service(instance.service);
  proto.set_namespace_(std::string(name_space));
  proto.set_plane(instance.plane);
  proto.set_address(instance.address);
  proto.set_instance_id(absl::StrFormat("%016x", instance.id));
  proto.set_start_time_unix_ms(instance.start_time_unix_ms);
  proto.set_expires_unix_ms(expires_unix_ms);
  proto.set_pid(getpid());
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(proto, &json);
  return json;
}

absl::StatusOr<DecodedInstance> DecodeInstance(std::string_view json) {
  dynrpc::discovery::v1::Instance proto;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // entries of a newer dynrpc
  if (!google::protobuf::util::JsonStringToMessage(
           google::protobuf::StringPiece(json.data(), json.size()), &proto,
           options)
           .ok()) {
    return absl::InvalidArgumentError("not a dynrpc discovery entry");
  }
  DecodedInstance decoded;
  Instance& i = decoded.instance;
  i.service = proto.service();
  i.plane = proto.plane();
  i.address = proto.address();
  i.start_time_unix_ms = proto.start_time_unix_ms();
  if (!absl::SimpleHexAtoi(proto.instance_id(), &i.id) || i.id == 0 ||
      i.service.empty() || i.address.empty()) {
    return absl::InvalidArgumentError("incomplete dynrpc discovery entry");
  }
  decoded.expires_unix_ms = proto.expires_unix_ms();
  return decoded;
}

absl::StatusOr<std::shared_ptr<Discovery>> CreateDiscovery(
    const Config& config, boost::asio::any_io_executor executor) {
  // What Config::FromLookup checks, for a Config built in code.
  const DiscoveryConfig& d = config.discovery;
  if (d.lease_ttl < std::chrono::seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DYN_DISCOVERY_LEASE_TTL=", d.lease_ttl.count(),
        "ms is invalid: expected at least 1s"));
  }
  if (d.name_space.empty() || d.name_space.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DYN_NAMESPACE='", d.name_space,
        "' is invalid: expected a non-empty name without '/'"));
  }
  if (d.backend == DiscoveryBackend::kEtcd) {
    if (d.etcd_endpoints.empty()) {
      return absl::InvalidArgumentError(
          "ETCD_ENDPOINTS is empty: expected http://host:port URLs");
    }
    for (const std::string& url : d.etcd_endpoints) {
      std::string_view rest(url);
      if (!rest.starts_with("http://") ||
          rest.substr(7).find(':') == std::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ETCD_ENDPOINTS entry '", url,
            "' is invalid: expected http://host:port"));
      }
    }
  }
  switch (config.discovery.backend) {
    case DiscoveryBackend::kFile:
      return std::shared_ptr<Discovery>(
          std::make_shared<FileDiscovery>(config.discovery, std::move(executor)));
    case DiscoveryBackend::kEtcd:
      return CreateEtcdDiscovery(config.discovery, std::move(executor));
  }
  return absl::InvalidArgumentError("unknown discovery backend");
}

}  // namespace dynrpc::internal
