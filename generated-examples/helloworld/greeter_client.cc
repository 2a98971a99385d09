// Calls helloworld.Greeter: a few calls one after another, then a burst of
// concurrent ones, and prints the replies and a latency summary.
//
//   greeter_client ADDRESS [NAME...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "helloworld/helloworld.dynrpc.pb.h"

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// One call, as application code writes it: a coroutine.
asio::awaitable<absl::StatusOr<std::string>> Greet(
    helloworld::Greeter::StubInterface& stub, std::string name) {
  dynrpc::ClientContext context;
  context.set_timeout(std::chrono::seconds(5));
  helloworld::HelloRequest request;
  request.set_name(std::move(name));
  DYNRPC_CO_ASSIGN_OR_RETURN(helloworld::HelloReply reply,
                             co_await stub.SayHello(context, request));
  co_return reply.message();
}

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: greeter_client ADDRESS [NAME...]\n";
    return 2;
  }
  std::vector<std::string> names(argv + 2, argv + argc);
  if (names.empty()) names = {"Ada", "Grace", "Barbara", "Frances", "Radia"};

  dynrpc::Runtime runtime;
  absl::StatusOr<std::shared_ptr<dynrpc::Channel>> channel =
      dynrpc::Channel::Create(runtime.executor(), argv[1]);
  if (!channel.ok()) {
    std::cerr << "greeter_client: " << channel.status().message() << "\n";
    return 2;
  }
  helloworld::Greeter::Stub stub(*channel);
  auto run = [&](auto awaitable) {
    return asio::co_spawn(runtime.executor(), std::move(awaitable),
                          asio::use_future)
        .get();
  };

  int failures = 0;
  std::vector<double> latencies;
  std::cout << "sequential calls:\n";
  for (const std::string& name : names) {
    Clock::time_point start = Clock::now();
    absl::StatusOr<std::string> reply = run(Greet(stub, name));
    latencies.push_back(Micros(Clock::now() - start));
    if (reply.ok()) {
      std::cout << "  SayHello(" << name << ") -> " << *reply << "\n";
    } else {
      ++failures;
      std::cout << "  SayHello(" << name << ") failed: " << reply.status()
                << "\n";
    }
  }

  // The future form, for code without coroutines.
  {
    dynrpc::ClientContext context;
    helloworld::HelloRequest request;
    request.set_name("");
    absl::StatusOr<helloworld::HelloReply> reply =
        stub.SayHelloFuture(context, request).get();
    std::cout << "  SayHello(\"\") -> " << reply.status()
              << " (the server rejects an empty name)\n";
  }

  constexpr int kConcurrent = 200;
  std::vector<std::future<absl::StatusOr<std::string>>> burst;
  Clock::time_point burst_start = Clock::now();
  for (int i = 0; i < kConcurrent; ++i) {
    burst.push_back(asio::co_spawn(
        runtime.executor(),
        Greet(stub, names[i % names.size()] + " #" + std::to_string(i)),
        asio::use_future));
  }
  int burst_ok = 0;
  std::string last;
  for (auto& f : burst) {
    absl::StatusOr<std::string> reply = f.get();
    if (reply.ok()) {
      ++burst_ok;
      last = *reply;
    } else {
      ++failures;
    }
  }
  double burst_ms = Micros(Clock::now() - burst_start) / 1000;
  std::cout << "concurrent calls: " << burst_ok << "/" << kConcurrent
            << " answered (last: " << last << ")\n";

  std::sort(latencies.begin(), latencies.end());
  std::printf(
      "latency: %zu sequential calls, median %.0f us, max %.0f us (the first "
      "includes connecting); %d concurrent calls in %.1f ms\n",
      latencies.size(), latencies[latencies.size() / 2], latencies.back(),
      kConcurrent, burst_ms);
  return failures == 0 ? 0 : 1;
}
