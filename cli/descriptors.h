// The .proto descriptions a server gives through reflection, fetched as
// needed into a pool the command line builds messages from.
#ifndef DYNRPC_CLI_DESCRIPTORS_H_
#define DYNRPC_CLI_DESCRIPTORS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "dynrpc/dynrpc.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor_database.h"
#include "grpc/reflection/v1/reflection.pb.h"

namespace dynrpc::cli {

class RemoteDescriptors {
 public:
  // `channel` and `context_template` (metadata and deadline of each
  // reflection call) are borrowed.
  RemoteDescriptors(Channel& channel, const ClientContext& context_template);

  // The services the server lists.
  boost::asio::awaitable<absl::StatusOr<std::vector<std::string>>>
  ListServices();
  // Fetches the file that declares `symbol` (and its imports) into pool().
  // NOT_FOUND when the server does not know it.
  boost::asio::awaitable<absl::Status> FetchSymbol(const std::string& symbol);

  const google::protobuf::DescriptorPool& pool() const { return *pool_; }

 private:
  // One question over the reflection stream (v1; v1alpha for a server
  // without v1).
  boost::asio::awaitable<
      absl::StatusOr<grpc::reflection::v1::ServerReflectionResponse>>
  Ask(const grpc::reflection::v1::ServerReflectionRequest& request);

  Channel& channel_;
  const ClientContext& template_;
  bool v1alpha_ = false;  // the server answered UNIMPLEMENTED to v1
  google::protobuf::SimpleDescriptorDatabase database_;
  std::unique_ptr<google::protobuf::DescriptorPool> pool_;
};

}  // namespace dynrpc::cli

#endif  // DYNRPC_CLI_DESCRIPTORS_H_
