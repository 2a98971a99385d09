#include "core/dispatcher.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/error.hpp"
#include "boost/system/system_error.hpp"
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

namespace {

// Runs a handler; an exception it throws becomes UNKNOWN (or CANCELLED when
// it is Asio's operation_aborted, the way a cancelled handler may end).
asio::awaitable<absl::StatusOr<std::string>> RunHandler(
    const RawUnaryHandler& handler, ServerContext& context,
    std::string_view payload) {
  try {
    co_return co_await handler(context, payload);
  } catch (const boost::system::system_error& e) {
    if (e.code() == asio::error::operation_aborted) {
      co_return absl::CancelledError(
          absl::StrCat("handler of ", context.method(), " was cancelled"));
    }
    co_return absl::UnknownError(
        absl::StrCat("handler of ", context.method(), " threw: ", e.what()));
  } catch (const std::exception& e) {
    co_return absl::UnknownError(
        absl::StrCat("handler of ", context.method(), " threw: ", e.what()));
  }
}

}  // namespace

asio::awaitable<absl::StatusOr<std::string>> Dispatcher::HandleUnary(
    CallRequest request, std::string peer) {
  auto it = methods_.find(request.method);
  if (it == methods_.end()) {
    co_return absl::UnimplementedError(
        absl::StrCat("unknown method ", request.method));
  }
  ServerContext context(std::move(request.method), std::move(request.metadata),
                        request.deadline, std::move(peer));
  if (!request.deadline) {
    co_return co_await RunHandler(*it->second, context, request.payload);
  }
  co_return co_await WithDeadline(
      RunHandler(*it->second, context, request.payload), *request.deadline,
      absl::StrCat("the caller's deadline for ", context.method(),
                   " passed while its handler ran"));
}

}  // namespace dynrpc::internal
