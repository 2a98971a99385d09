// Routes calls a plane decoded to the handlers services registered, and
// enforces the server side of deadlines.
#ifndef DYNRPC_RUNTIME_SRC_CORE_DISPATCHER_H_
#define DYNRPC_RUNTIME_SRC_CORE_DISPATCHER_H_

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "boost/asio/any_io_executor.hpp"
#include "core/admission.h"
#include "core/deadline_timers.h"
#include "core/metrics.h"
#include "core/request_plane.h"
#include "dynrpc/service.h"

namespace dynrpc::internal {

class Dispatcher final : public CallHandler {
 public:
  // Calls' deadlines are timed on `executor`.
  explicit Dispatcher(boost::asio::any_io_executor executor)
      : deadlines_(std::move(executor)) {}

  // `service` is borrowed; it must outlive the dispatcher. Fails with
  // ALREADY_EXISTS when a method path is registered twice.
  absl::Status Register(Service& service);
  // At most `max_handlers` handlers run at once; a call past it ends with
  // RESOURCE_EXHAUSTED without running. Set before the first call.
  // How responses are compressed when a handler does not say
  // (ServerContext::set_compression).
  void set_compression(CompressionPolicy policy) { compression_ = policy; }
  // Counts each registered method's calls, messages and bytes on `plane`
  // (core/metrics.h), once the process's metrics are on. Before Start().
  void set_metrics(std::string_view plane);
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

  // Graceful drain: from now on every call but the health service's is
  // refused, UNAVAILABLE and marked not processed (trailing metadata
  // kNotProcessedKey), so a channel bound to the service sends it to
  // another instance.
  void StartDrain();
  // Blocks until no handler runs (the health service's long Watch calls
  // aside), `deadline` passes or EndDrainWaits() is called: true when none
  // runs and the drain was not ended. Not from the executor's threads.
  bool WaitIdle(Clock::time_point deadline);
  // Once idle: blocks until no call has arrived for `quiet` (the callers
  // have seen the instance leave discovery, and the answers of the last
  // calls have long been written) or `deadline` passes.
  void WaitQuiet(Clock::duration quiet, Clock::time_point deadline);
  // Ends the two waits above at once (Shutdown() during a drain).
  void EndDrainWaits();
  // The trailing metadata key of a call refused by a draining server.
  static constexpr char kNotProcessedKey[] = "dynrpc-not-processed";
  std::vector<std::string> MethodPaths() const override;

 private:
  // The stats of each registered method, when metrics are on.
  absl::flat_hash_map<std::string, CallStats*> stats_;
  CallStats* StatsFor(const std::string& path) const {
    if (stats_.empty()) return nullptr;
    auto it = stats_.find(path);
    return it == stats_.end() ? nullptr : it->second;
  }
  CompressionPolicy compression_;
  // Counts a running handler for a drain, from construction to destruction.
  class Running;

  // The method a call names, if it may run now: UNIMPLEMENTED for an
  // unknown method or one of the other kind, DEADLINE_EXCEEDED when its
  // deadline passed before it arrived, RESOURCE_EXHAUSTED past the handler
  // limit. `slot` then holds its place under the limit.
  // `running` then counts it for a drain.
  absl::StatusOr<const MethodEntry*> Admit(const CallRequest& request,
                                           bool streaming,
                                           std::optional<Admission::Token>& slot,
                                           std::optional<Running>& running);

  absl::flat_hash_map<std::string, const MethodEntry*> methods_;
  std::mutex drain_mu_;
  std::condition_variable idle_cv_;
  bool draining_ = false;   // under drain_mu_
  bool drain_ended_ = false;  // under drain_mu_
  Clock::time_point last_arrival_;  // while draining; under drain_mu_
  std::size_t running_ = 0;  // handlers that hold a drain up; under drain_mu_
  std::optional<Admission> handlers_;  // unset: no limit
  DeadlineTimers deadlines_;  // the running handlers'
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_DISPATCHER_H_
