// The built-in routing policies (dynrpc/routing.h).
#include <atomic>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "dynrpc/routing.h"

namespace dynrpc {
namespace {

class RoundRobin final : public Router {
 public:
  std::size_t Pick(std::span<const Candidate> candidates,
                   const ClientContext&) override {
    return next_.fetch_add(1, std::memory_order_relaxed) % candidates.size();
  }

 private:
  std::atomic<std::size_t> next_{0};
};

std::size_t RandomIndex(std::size_t n) {
  thread_local absl::BitGen gen;
  return absl::Uniform<std::size_t>(gen, 0, n);
}

class Random final : public Router {
 public:
  std::size_t Pick(std::span<const Candidate> candidates,
                   const ClientContext&) override {
    return RandomIndex(candidates.size());
  }
};

// Power of two choices: two distinct instances at random, the one with
// fewer calls in flight (the first on a tie).
class LeastLoaded final : public Router {
 public:
  std::size_t Pick(std::span<const Candidate> candidates,
                   const ClientContext&) override {
    const std::size_t n = candidates.size();
    if (n == 1) return 0;
    std::size_t a = RandomIndex(n);
    std::size_t b = RandomIndex(n - 1);
    if (b >= a) ++b;
    return candidates[b].in_flight < candidates[a].in_flight ? b : a;
  }
};

}  // namespace

std::string_view RoutingPolicyName(RoutingPolicy policy) {
  switch (policy) {
    case RoutingPolicy::kRoundRobin:
      return "round_robin";
    case RoutingPolicy::kRandom:
      return "random";
    case RoutingPolicy::kDirect:
      return "direct";
    case RoutingPolicy::kLeastLoaded:
      return "least_loaded";
  }
  return "unknown";
}

absl::StatusOr<RoutingPolicy> ParseRoutingPolicy(std::string_view name_in) {
  std::string name = absl::AsciiStrToLower(
      absl::string_view(name_in.data(), name_in.size()));
  for (RoutingPolicy p :
       {RoutingPolicy::kRoundRobin, RoutingPolicy::kRandom,
        RoutingPolicy::kDirect, RoutingPolicy::kLeastLoaded}) {
    if (name == RoutingPolicyName(p)) return p;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown routing policy '", std::string(name_in),
      "'. Valid options are: 'round_robin', 'random', 'direct', "
      "'least_loaded'"));
}

std::unique_ptr<Router> MakeRouter(RoutingPolicy policy) {
  switch (policy) {
    case RoutingPolicy::kRoundRobin:
      return std::make_unique<RoundRobin>();
    case RoutingPolicy::kRandom:
      return std::make_unique<Random>();
    case RoutingPolicy::kLeastLoaded:
      return std::make_unique<LeastLoaded>();
    case RoutingPolicy::kDirect:
      return nullptr;
  }
  return nullptr;
}

}  // namespace dynrpc
