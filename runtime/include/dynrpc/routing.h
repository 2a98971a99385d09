// Routing among the instances of a service: what a Channel bound to a
// service (Channel::ForService) knows of each instance, and the policies
// that pick one for each call.
//
// Example:
//   dynrpc::ChannelOptions options;
//   options.policy = dynrpc::RoutingPolicy::kLeastLoaded;
//   auto channel = dynrpc::Channel::ForService(
//       runtime.executor(), helloworld::Greeter::kServiceName, options);
#ifndef DYNRPC_ROUTING_H_
#define DYNRPC_ROUTING_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace dynrpc {

class ClientContext;

// One service of one server instance, as discovery lists it.
struct Instance {
  std::string service;  // "helloworld.Greeter"
  uint64_t id = 0;      // Server::instance_id(): unique per server
  std::string plane;    // "tcp", "http" or "nats"
  std::string address;  // Server::address()
  int64_t start_time_unix_ms = 0;  // when the server's process started
};

enum class RoutingPolicy {
  kRoundRobin,   // each instance in turn (the default)
  kRandom,       // uniformly at random
  kDirect,       // the instance ClientContext::set_instance_id() names
  kLeastLoaded,  // of two picked at random, the one with fewer calls in flight
};

// "round_robin", "random", "direct", "least_loaded".
std::string_view RoutingPolicyName(RoutingPolicy policy);
// Those names; anything else is INVALID_ARGUMENT naming the valid ones.
absl::StatusOr<RoutingPolicy> ParseRoutingPolicy(std::string_view name);

// An instance a call may go to: up (not marked down), on the channel's
// request plane.
struct Candidate {
  const Instance* instance;
  std::size_t in_flight;  // this channel's calls on it now
};

// A routing policy of your own (a KV-aware router, say): the channel calls
// Pick() for every call that names no instance, from any thread, possibly
// at once; it must not block.
class Router {
 public:
  virtual ~Router() = default;
  // The index in `candidates` (never empty) of the instance to call.
  virtual std::size_t Pick(std::span<const Candidate> candidates,
                           const ClientContext& context) = 0;
};

// The built-in router for `policy` (kDirect: the caller names the instance,
// so null).
std::unique_ptr<Router> MakeRouter(RoutingPolicy policy);

}  // namespace dynrpc

#endif  // DYNRPC_ROUTING_H_
