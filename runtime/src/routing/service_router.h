// The calls of a channel bound to a service (Channel::ForService): which
// instance each call goes to, the instances' state (calls in flight, down
// or up) kept current by a discovery watch, and the one retry of a call no
// instance processed.
//
// Rules, the same on every plane:
//  - A call goes to an instance on the channel's request plane that is not
//    down, chosen by the channel's Router (or the one its context names).
//  - A call that ends UNAVAILABLE without having been processed (never
//    sent, its connection lost before any response frame, nobody took it,
//    or a draining server refused it: CallResult::not_processed) marks its
//    instance down and is sent once more, to another instance. A call
//    refused for any other reason (too large, invalid, its handler's own
//    status) is never retried, nor is a stream.
//  - A down instance is skipped until discovery lists it anew (restarted)
//    or a health probe (every probe_interval) finds it SERVING.
#ifndef DYNRPC_RUNTIME_SRC_ROUTING_SERVICE_ROUTER_H_
#define DYNRPC_RUNTIME_SRC_ROUTING_SERVICE_ROUTER_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "core/deadline.h"
#include "core/request_plane.h"
#include "core/task_group.h"
#include "discovery/discovery.h"
#include "dynrpc/config.h"
#include "dynrpc/context.h"
#include "dynrpc/routing.h"

namespace dynrpc::internal {

// One instance as the channel tracks it.
struct RoutedInstance {
  explicit RoutedInstance(Instance i) : instance(std::move(i)) {}
  const Instance instance;
  std::atomic<std::size_t> in_flight{0};
  std::atomic<bool> down{false};
  std::mutex mu;
  absl::Status down_reason;  // under mu
  bool probing = false;      // under mu
};

// Counts one call on its instance while it lives.
class RoutedCall {
 public:
  explicit RoutedCall(std::shared_ptr<RoutedInstance> target)
      : target_(std::move(target)) {
    target_->in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  RoutedCall(RoutedCall&& other) noexcept = default;
  RoutedCall& operator=(RoutedCall&&) = delete;
  ~RoutedCall() {
    if (target_) target_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  const Instance& instance() const { return target_->instance; }

 private:
  std::shared_ptr<RoutedInstance> target_;
};

class ServiceRouter : public std::enable_shared_from_this<ServiceRouter> {
 public:
  struct Options {
    std::string service;
    RequestPlaneKind plane = RequestPlaneKind::kTcp;
    RoutingPolicy policy = RoutingPolicy::kRoundRobin;
    // Picks for every call that names no instance; null with kDirect.
    std::shared_ptr<Router> router;
    std::shared_ptr<Discovery> discovery;
    std::string name_space;  // for messages
    std::chrono::milliseconds probe_interval{1000};
  };

  // Starts watching the service. `client` (the channel's plane) carries
  // the health probes.
  static std::shared_ptr<ServiceRouter> Start(
      Options options, std::shared_ptr<RequestPlaneClient> client,
      boost::asio::any_io_executor executor);
  ~ServiceRouter();

  // Runs a unary call on an instance, and once more on another when the
  // first did not process it (see above). Sets the context's routed_to.
  boost::asio::awaitable<CallResult> Unary(ClientContext& context,
                                           CallRequest call,
                                           std::shared_ptr<CancelHook> cancel);
  // A stream whose first operation picks its instance.
  std::unique_ptr<ClientStream> StartStream(
      ClientContext& context, CallRequest head,
      std::optional<std::string> first_message);

  // The instance for a call, waiting (up to `deadline`) for discovery's
  // first listing; never `exclude`.
  // `wake`, when given, is the wait's signal: the caller's cancellation
  // sends it, and the wait ends (the caller then knows why).
  boost::asio::awaitable<absl::StatusOr<RoutedCall>> Choose(
      const ClientContext& context, uint64_t exclude,
      Clock::time_point deadline, std::shared_ptr<Signal> wake = nullptr);
  // How the message of Choose()'s DEADLINE_EXCEEDED begins (the channel
  // keeps it: it names the discovery backend that did not answer).
  static constexpr std::string_view kNotListedPrefix =
      "the deadline passed before ";
  // Skips `id` until discovery lists it anew or a probe finds it serving.
  void MarkDown(uint64_t id, const absl::Status& why);
  // What discovery lists now (every plane).
  std::vector<Instance> instances() const;

 private:
  ServiceRouter(Options options, std::shared_ptr<RequestPlaneClient> client,
                boost::asio::any_io_executor executor);
  void Update(absl::StatusOr<std::vector<Instance>> listed);
  // Discovery has listed the service at least once.
  bool Listed() const;
  absl::StatusOr<RoutedCall> ChooseLocked(const ClientContext& context,
                                          uint64_t exclude);
  boost::asio::awaitable<void> Probe(std::shared_ptr<RoutedInstance> target);
  // A probe found `target` serving.
  static void MarkUp(RoutedInstance& target);

  const Options options_;
  const std::string plane_name_;
  const boost::asio::any_io_executor executor_;
  std::shared_ptr<RequestPlaneClient> client_;
  TaskGroup probes_;
  mutable std::mutex mu_;
  bool listed_ = false;                                // under mu_
  absl::Status discovery_error_;                       // under mu_
  std::vector<std::shared_ptr<RoutedInstance>> all_;   // under mu_, by id
  std::vector<std::shared_ptr<Signal>> list_waiters_;  // under mu_
  std::unique_ptr<WatchHandle> watch_;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_ROUTING_SERVICE_ROUTER_H_
