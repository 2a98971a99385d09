// Routes calls a plane decoded to the handlers services registered, and
// enforces the server side of deadlines.
#ifndef DYNRPC_RUNTIME_SRC_CORE_DISPATCHER_H_
#define DYNRPC_RUNTIME_SRC_CORE_DISPATCHER_H_

#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "core/admission.h"
#include "core/request_plane.h"
#include "dynrpc/service.h"

namespace dynrpc::internal {

class Dispatcher final : public CallHandler {
 public:
  // `service` is borrowed; it must outlive the dispatcher. Fails with
  // ALREADY_EXISTS when a method path is registered twice.
  absl::Status Register(Service& service);
  // At most `max_handlers` handlers run at once; a call past it ends with
  // RESOURCE_EXHAUSTED without running. Set before the first call.
  void set_max_handlers(std::size_t max_handlers) {
    handlers_.emplace(max_handlers);
  }

  // UNIMPLEMENTED for an unknown method (or one of the other kind);
  // DEADLINE_EXCEEDED (and the handler cancelled) when the request's
  // deadline passes first; UNKNOWN when the handler throws.
  boost::asio::awaitable<CallResult> HandleUnary(CallRequest request,
                                                 ServerCallInfo info) override;
  boost::asio::awaitable<CallResult> HandleStream(
      CallRequest request, ServerCallInfo info, ServerStream& stream) override;
  const MethodEntry* FindMethod(std::string_view path) const override;
  std::vector<std::string> MethodPaths() const override;

 private:
  // The method a call names, if it may run now: UNIMPLEMENTED for an
  // unknown method or one of the other kind, DEADLINE_EXCEEDED when its
  // deadline passed before it arrived, RESOURCE_EXHAUSTED past the handler
  // limit. `slot` then holds its place under the limit.
  absl::StatusOr<const MethodEntry*> Admit(const CallRequest& request,
                                           bool streaming,
                                           std::optional<Admission::Token>& slot);

  absl::flat_hash_map<std::string, const MethodEntry*> methods_;
  std::optional<Admission> handlers_;  // unset: no limit
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_DISPATCHER_H_
