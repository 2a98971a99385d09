#include "reflection/reflection_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "dynrpc/status_macros.h"
#include "google/protobuf/descriptor.pb.h"

namespace dynrpc::internal {

namespace pb = google::protobuf;

namespace {

const pb::DescriptorPool& Pool() { return *pb::DescriptorPool::generated_pool(); }

}  // namespace

absl::StatusOr<const pb::FileDescriptor*> ReflectionIndex::FileByName(
    const std::string& name) const {
  if (const pb::FileDescriptor* file = Pool().FindFileByName(name)) {
    return file;
  }
  return absl::NotFoundError(absl::StrCat("no file named '", name, "'"));
}

absl::StatusOr<const pb::FileDescriptor*> ReflectionIndex::FileContainingSymbol(
    const std::string& symbol) const {
  if (const pb::FileDescriptor* file = Pool().FindFileContainingSymbol(symbol)) {
    return file;
  }
  return absl::NotFoundError(absl::StrCat("no symbol named '", symbol, "'"));
}

absl::StatusOr<const pb::FileDescriptor*>
ReflectionIndex::FileContainingExtension(const std::string& type,
                                         int number) const {
  const pb::Descriptor* message = Pool().FindMessageTypeByName(type);
  if (message == nullptr) {
    return absl::NotFoundError(absl::StrCat("no message type '", type, "'"));
  }
  const pb::FieldDescriptor* extension =
      Pool().FindExtensionByNumber(message, number);
  if (extension == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no extension ", number, " of '", type, "'"));
  }
  return extension->file();
}

absl::StatusOr<std::vector<int>> ReflectionIndex::ExtensionNumbers(
    const std::string& type) const {
  const pb::Descriptor* message = Pool().FindMessageTypeByName(type);
  if (message == nullptr) {
    return absl::NotFoundError(absl::StrCat("no message type '", type, "'"));
  }
  std::vector<const pb::FieldDescriptor*> extensions;
  Pool().FindAllExtensions(message, &extensions);
  std::vector<int> numbers;
  numbers.reserve(extensions.size());
  for (const pb::FieldDescriptor* e : extensions) numbers.push_back(e->number());
  return numbers;
}

std::vector<std::string> ReflectionIndex::FileAndImports(
    const pb::FileDescriptor* file, absl::flat_hash_set<std::string>& sent) {
  std::vector<std::string> out;
  // Breadth first from `file`, so the file asked for comes first.
  std::vector<const pb::FileDescriptor*> queue = {file};
  for (std::size_t i = 0; i < queue.size(); ++i) {
    const pb::FileDescriptor* f = queue[i];
    if (!sent.insert(f->name()).second) continue;
    pb::FileDescriptorProto proto;
    f->CopyTo(&proto);
    out.push_back(proto.SerializeAsString());
    for (int d = 0; d < f->dependency_count(); ++d) {
      queue.push_back(f->dependency(d));
    }
  }
  return out;
}

template <typename Base, typename Request, typename Response>
StreamReply ReflectionService<Base, Request, Response>::ServerReflectionInfo(
    ServerContext& context, ServerReaderWriter<Request, Response>& stream) {
  // The files this stream has sent: a client keeps what it got.
  absl::flat_hash_set<std::string> sent;
  for (;;) {
    absl::StatusOr<std::optional<Request>> request = co_await stream.Read();
    if (!request.ok()) co_return request.status();
    if (!request->has_value()) co_return absl::OkStatus();
    Response response = Answer(**request, sent);
    DYNRPC_CO_RETURN_IF_ERROR(co_await stream.Write(response));
  }
}

template <typename Base, typename Request, typename Response>
Response ReflectionService<Base, Request, Response>::Answer(
    const Request& request, absl::flat_hash_set<std::string>& sent) const {
  Response response;
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  auto files = [&](absl::StatusOr<const pb::FileDescriptor*> file)
      -> absl::Status {
    if (!file.ok()) return file.status();
    for (std::string& bytes : ReflectionIndex::FileAndImports(*file, sent)) {
      response.mutable_file_descriptor_response()->add_file_descriptor_proto(
          std::move(bytes));
    }
    return absl::OkStatus();
  };
  absl::Status status;
  switch (request.message_request_case()) {
    case Request::kFileByFilename:
      status = files(index_.FileByName(request.file_by_filename()));
      break;
    case Request::kFileContainingSymbol:
      status =
          files(index_.FileContainingSymbol(request.file_containing_symbol()));
      break;
    case Request::kFileContainingExtension:
      status = files(index_.FileContainingExtension(
          request.file_containing_extension().containing_type(),
          request.file_containing_extension().extension_number()));
      break;
    case Request::kAllExtensionNumbersOfType: {
      absl::StatusOr<std::vector<int>> numbers =
          index_.ExtensionNumbers(request.all_extension_numbers_of_type());
      if (!numbers.ok()) {
        status = numbers.status();
        break;
      }
      auto* out = response.mutable_all_extension_numbers_response();
      out->set_base_type_name(request.all_extension_numbers_of_type());
      for (int n : *numbers) out->add_extension_number(n);
      break;
    }
    case Request::kListServices:
      for (const std::string& name : index_.services()) {
        response.mutable_list_services_response()->add_service()->set_name(
            name);
      }
      break;
    default:
      status = absl::InvalidArgumentError(
          "a reflection request without a question (message_request unset)");
      break;
  }
  if (!status.ok()) {
    auto* error = response.mutable_error_response();
    error->set_error_code(static_cast<int>(status.code()));
    error->set_error_message(std::string(status.message()));
  }
  return response;
}

template class ReflectionService<
    grpc::reflection::v1::ServerReflection::Service,
    grpc::reflection::v1::ServerReflectionRequest,
    grpc::reflection::v1::ServerReflectionResponse>;
template class ReflectionService<
    grpc::reflection::v1alpha::ServerReflection::Service,
    grpc::reflection::v1alpha::ServerReflectionRequest,
    grpc::reflection::v1alpha::ServerReflectionResponse>;

}  // namespace dynrpc::internal
