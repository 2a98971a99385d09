// Calls helloworld.Greeter without an address: a channel bound to the
// service finds its instances through discovery (DYN_DISCOVERY_BACKEND,
// DYN_NAMESPACE) and spreads the calls over them. Keeps IN_FLIGHT calls
// going for SECONDS, printing a progress line every quarter second and the
// split per instance at the end.
//
//   greeter_fleet_client [--seconds=S] [--in-flight=N] [--pause-ms=MS]
//                        [--policy=round_robin|random|least_loaded]
//
// Progress lines: "progress ok=<n> failed=<n> <instance>=<calls> ...".
// Exit code: 0 when no call failed, 1 otherwise.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "helloworld/helloworld.dynrpc.pb.h"

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

struct Tally {
  std::mutex mu;
  std::map<uint64_t, int> by_instance;  // calls that succeeded
  std::vector<std::string> errors;
  std::atomic<int> ok{0}, failed{0};

  std::string Line() {
    std::lock_guard lock(mu);
    std::string line = "ok=" + std::to_string(ok.load()) +
                       " failed=" + std::to_string(failed.load());
    for (const auto& [id, n] : by_instance) {
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx",
                    static_cast<unsigned long long>(id));
      line += std::string(" ") + hex + "=" + std::to_string(n);
    }
    return line;
  }
};

// One caller: calls, one after another, until `until`.
asio::awaitable<void> Caller(helloworld::Greeter::Stub& stub, Tally& tally,
                             Clock::time_point until,
                             std::chrono::milliseconds pause) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (Clock::now() < until) {
    dynrpc::ClientContext context;
    context.set_timeout(std::chrono::seconds(5));
    helloworld::HelloRequest request;
    request.set_name("fleet");
    absl::StatusOr<helloworld::HelloReply> reply =
        co_await stub.SayHello(context, request);
    if (reply.ok()) {
      tally.ok.fetch_add(1);
      std::lock_guard lock(tally.mu);
      ++tally.by_instance[context.routed_to().value_or(0)];
    } else {
      tally.failed.fetch_add(1);
      std::lock_guard lock(tally.mu);
      tally.errors.push_back(reply.status().ToString());
    }
    if (pause.count() > 0) {
      timer.expires_after(pause);
      co_await timer.async_wait(asio::use_awaitable);
    }
  }
}

bool Flag(std::string_view arg, std::string_view name, int& out) {
  if (!arg.starts_with(name)) return false;
  std::string_view value = arg.substr(name.size());
  return absl::SimpleAtoi(absl::string_view(value.data(), value.size()), &out);
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 3, in_flight = 8, pause_ms = 2;
  dynrpc::ChannelOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (Flag(arg, "--seconds=", seconds) ||
        Flag(arg, "--in-flight=", in_flight) ||
        Flag(arg, "--pause-ms=", pause_ms)) {
      continue;
    }
    if (arg.starts_with("--policy=")) {
      absl::StatusOr<dynrpc::RoutingPolicy> policy =
          dynrpc::ParseRoutingPolicy(arg.substr(9));
      if (policy.ok()) {
        options.policy = *policy;
        continue;
      }
      std::cerr << policy.status().message() << "\n";
    }
    std::cerr << "usage: greeter_fleet_client [--seconds=S] [--in-flight=N] "
                 "[--pause-ms=MS] [--policy=round_robin|random|least_loaded]\n";
    return 2;
  }

  dynrpc::Runtime runtime;
  absl::StatusOr<std::shared_ptr<dynrpc::Channel>> channel =
      dynrpc::Channel::ForService(runtime.executor(),
                                  helloworld::Greeter::kServiceName, options);
  if (!channel.ok()) {
    std::cerr << "greeter_fleet_client: " << channel.status().message() << "\n";
    return 2;
  }
  helloworld::Greeter::Stub stub(*channel);
  Tally tally;
  Clock::time_point until = Clock::now() + std::chrono::seconds(seconds);
  std::vector<std::future<void>> callers;
  for (int i = 0; i < in_flight; ++i) {
    callers.push_back(asio::co_spawn(
        runtime.executor(),
        Caller(stub, tally, until, std::chrono::milliseconds(pause_ms)),
        asio::use_future));
  }
  while (Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    std::cout << "progress " << tally.Line() << std::endl;
  }
  for (auto& c : callers) c.get();
  std::cout << "done " << tally.Line() << std::endl;
  std::lock_guard lock(tally.mu);
  for (std::size_t i = 0; i < tally.errors.size() && i < 5; ++i) {
    std::cerr << "failed call: " << tally.errors[i] << "\n";
  }
  return tally.failed.load() == 0 ? 0 : 1;
}
