#include "core/dispatcher.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/deadline.h"

namespace dynrpc::internal {

namespace asio = boost::asio;

absl::Status Dispatcher::Register(Service& service) {
  for (const MethodEntry& m : service.methods()) {
    if (!methods_.emplace(m.path, &m.handler).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("method ", m.path, " is registered twice (service ",
                       service.full_name(), " added twice?)"));
    }
  }
  return absl::OkStatus();
}

asio::awaitable<absl::StatusOr<std::string>> Dispatcher::HandleUnary(
    CallRequest request, std::string peer) {
  auto it = methods_.find(request.method);
  if (it == methods_.end()) {
    co_return absl::UnimplementedError(
        absl::StrCat("unknown method ", request.method));
  }
  const RawUnaryHandler& handler = *it->second;
  ServerContext context(std::move(request.method), std::move(request.metadata),
                        request.deadline, std::move(peer));
  try {
    if (!request.deadline) co_return co_await handler(context, request.payload);
    co_return co_await WithDeadline(
        handler(context, request.payload), *request.deadline,
        absl::StrCat("the caller's deadline for ", context.method(),
                     " passed while its handler ran"));
  } catch (const std::exception& e) {
    co_return absl::UnknownError(
        absl::StrCat("handler of ", context.method(), " threw: ", e.what()));
  }
}

}  // namespace dynrpc::internal
