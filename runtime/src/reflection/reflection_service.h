// gRPC's server reflection (grpc.reflection.v1 and v1alpha), served by every
// dynrpc::Server on every plane: the services it hosts, and the .proto
// files that describe them (protobuf's descriptors of the generated code
// linked into the process), so tools call a server without its .proto.
#ifndef DYNRPC_RUNTIME_SRC_REFLECTION_REFLECTION_SERVICE_H_
#define DYNRPC_RUNTIME_SRC_REFLECTION_REFLECTION_SERVICE_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "google/protobuf/descriptor.h"
#include "grpc/reflection/v1/reflection.dynrpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.dynrpc.pb.h"

namespace dynrpc::internal {

// What reflection answers from, whichever version asks. The service list is
// set before the server starts and read-only after.
class ReflectionIndex {
 public:
  void set_services(std::vector<std::string> services) {
    services_ = std::move(services);
  }
  const std::vector<std::string>& services() const { return services_; }

  // NOT_FOUND naming what is unknown.
  absl::StatusOr<const google::protobuf::FileDescriptor*> FileByName(
      const std::string& name) const;
  absl::StatusOr<const google::protobuf::FileDescriptor*> FileContainingSymbol(
      const std::string& symbol) const;
  absl::StatusOr<const google::protobuf::FileDescriptor*>
  FileContainingExtension(const std::string& type, int number) const;
  absl::StatusOr<std::vector<int>> ExtensionNumbers(
      const std::string& type) const;

  // `file` then its imports, transitively, serialized as
  // FileDescriptorProtos; files named in `sent` are left out, and those
  // returned are added to it.
  static std::vector<std::string> FileAndImports(
      const google::protobuf::FileDescriptor* file,
      absl::flat_hash_set<std::string>& sent);

 private:
  std::vector<std::string> services_;
};

// One version's service over the shared index (which must outlive it).
template <typename Base, typename Request, typename Response>
class ReflectionService final : public Base {
 public:
  explicit ReflectionService(const ReflectionIndex& index) : index_(index) {}

  StreamReply ServerReflectionInfo(
      ServerContext& context,
      ServerReaderWriter<Request, Response>& stream) override;

 private:
  Response Answer(const Request& request,
                  absl::flat_hash_set<std::string>& sent) const;

  const ReflectionIndex& index_;
};

using ReflectionV1 = ReflectionService<
    grpc::reflection::v1::ServerReflection::Service,
    grpc::reflection::v1::ServerReflectionRequest,
    grpc::reflection::v1::ServerReflectionResponse>;
using ReflectionV1Alpha = ReflectionService<
    grpc::reflection::v1alpha::ServerReflection::Service,
    grpc::reflection::v1alpha::ServerReflectionRequest,
    grpc::reflection::v1alpha::ServerReflectionResponse>;

// What a Server registers: both versions over one index.
struct ReflectionServices {
  ReflectionIndex index;
  ReflectionV1 v1{index};
  ReflectionV1Alpha v1alpha{index};
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_REFLECTION_REFLECTION_SERVICE_H_
