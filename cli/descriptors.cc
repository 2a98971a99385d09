#include "descriptors.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.pb.h"

namespace dynrpc::cli {

namespace pb = google::protobuf;
using grpc::reflection::v1::ServerReflectionRequest;
using grpc::reflection::v1::ServerReflectionResponse;

RemoteDescriptors::RemoteDescriptors(Channel& channel,
                                     const ClientContext& context_template)
    : channel_(channel),
      template_(context_template),
      pool_(std::make_unique<pb::DescriptorPool>(&database_)) {}

boost::asio::awaitable<absl::StatusOr<ServerReflectionResponse>>
RemoteDescriptors::Ask(const ServerReflectionRequest& request) {
  for (;;) {
    ClientContext context;
    for (const auto& [key, value] : template_.metadata()) {
      context.AddMetadata(key, value);
    }
    if (template_.deadline()) context.set_deadline(*template_.deadline());
    // v1 and v1alpha messages are the same on the wire.
    const std::string method =
        v1alpha_ ? "/grpc.reflection.v1alpha.ServerReflection/"
                   "ServerReflectionInfo"
                 : "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    std::unique_ptr<RawClientStream> stream =
        channel_.StartStream(context, method, std::nullopt);
    absl::Status written = co_await stream->Write(request.SerializeAsString(),
                                                  WriteOptions{});
    absl::StatusOr<std::optional<std::string>> answer = co_await stream->Read();
    // The answer is what counts: a server may end the stream as soon as it
    // has answered, before our half-close goes out.
    (void)co_await stream->WritesDone();
    absl::Status finished = co_await stream->Finish();
    absl::Status status = absl::OkStatus();
    if (!answer.ok()) {
      status = answer.status();
    } else if (!answer->has_value()) {
      status = !finished.ok()  ? finished
               : !written.ok() ? written
                               : absl::InternalError(
                                     "reflection: the server ended the stream "
                                     "without an answer");
    }
    if (absl::IsUnimplemented(status) && !v1alpha_) {
      v1alpha_ = true;  // an older server: ask again in v1alpha
      continue;
    }
    if (!status.ok()) {
      co_return absl::Status(
          status.code(),
          absl::StrCat("reflection: ", std::string(status.message())));
    }
    ServerReflectionResponse response;
    if (!answer->has_value() || !response.ParseFromString(**answer)) {
      co_return absl::InternalError(
          "reflection: the server's answer is not a ServerReflectionResponse");
    }
    if (response.has_error_response()) {
      co_return absl::Status(
          static_cast<absl::StatusCode>(response.error_response().error_code()),
          response.error_response().error_message());
    }
    co_return response;
  }
}

boost::asio::awaitable<absl::StatusOr<std::vector<std::string>>>
RemoteDescriptors::ListServices() {
  ServerReflectionRequest request;
  request.set_list_services("");
  absl::StatusOr<ServerReflectionResponse> response = co_await Ask(request);
  if (!response.ok()) co_return response.status();
  std::vector<std::string> names;
  for (const auto& service : response->list_services_response().service()) {
    names.push_back(service.name());
  }
  co_return names;
}

boost::asio::awaitable<absl::Status> RemoteDescriptors::FetchSymbol(
    const std::string& symbol) {
  ServerReflectionRequest request;
  request.set_file_containing_symbol(symbol);
  absl::StatusOr<ServerReflectionResponse> response = co_await Ask(request);
  if (!response.ok()) co_return response.status();
  for (const std::string& bytes :
       response->file_descriptor_response().file_descriptor_proto()) {
    pb::FileDescriptorProto file;
    if (!file.ParseFromString(bytes)) {
      co_return absl::InternalError(
          "reflection: a file descriptor that does not parse");
    }
    // A file already known (from an earlier answer) is kept as it was.
    pb::FileDescriptorProto known;
    if (database_.FindFileByName(file.name(), &known)) continue;
    database_.Add(file);
  }
  co_return absl::OkStatus();
}

}  // namespace dynrpc::cli
