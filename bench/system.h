// A benchmarked system (dynrpc on a plane, gRPC, a floor): its server in
// another process, and a client to it. The HTTP/2 floor is a ServerProcess
// alone: h2load is its client.
#ifndef DYNRPC_BENCH_SYSTEM_H_
#define DYNRPC_BENCH_SYSTEM_H_

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "support/subprocess.h"

namespace bench {

// Client and servers are pinned apart when there are two CPUs.
inline const bool kTwoCpus = std::thread::hardware_concurrency() >= 2;

// A benchmark server in its own process (pinned to CPU 1 when there are
// two), started on a free port; killed when this is destroyed.
class ServerProcess {
 public:
  // Starts `binary` and waits for the address it announces.
  ServerProcess(const std::string& binary, std::vector<std::string> env) {
    std::vector<std::string> args;
    if (kTwoCpus) args.push_back("--cpu=1");
    process_ = std::make_unique<dynrpc::testing::Subprocess>(binary, args, env);
    std::optional<std::string> line =
        process_->ReadLine(std::chrono::seconds(30));
    if (!line || !line->starts_with("listening on ")) {
      std::fprintf(stderr, "%s did not start\n", binary.c_str());
      std::exit(1);
    }
    address_ = line->substr(std::string("listening on ").size());
  }

  pid_t pid() const { return process_->pid(); }
  // What it announced: "127.0.0.1:PORT"; on NATS, an instance id (dynrpc)
  // or a subject (the NATS floor).
  const std::string& address() const { return address_; }

 private:
  std::unique_ptr<dynrpc::testing::Subprocess> process_;
  std::string address_;
};

// Microseconds since `start`: one call's time.
inline double MicrosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now() - start)
      .count();
}

// A benchmarked system: its server process and a client to it. A payload
// of n bytes is always n times 'p', so a system may reuse a request built for
// a payload of the same size.
class System {
 public:
  virtual ~System() = default;
  virtual void UnaryOnce(const std::string& payload) = 0;
  // One call, as UnaryOnce, except that a call the system refuses returns
  // why instead of aborting: a payload over a NATS server's max_payload, say.
  // The harness probes each payload with it before measuring and reports a
  // refusal as that benchmark's error. Empty: the call succeeded.
  virtual std::string Probe(const std::string& payload) {
    UnaryOnce(payload);
    return "";
  }
  // One call at a time for as long as `state` runs: each call's time in
  // microseconds. UnaryOnce() in a loop unless the system's client is
  // asynchronous, when it makes the calls as its users would.
  virtual std::vector<double> TimeUnary(benchmark::State& state,
                                        const std::string& payload) {
    std::vector<double> micros;
    for (auto _ : state) {
      auto start = std::chrono::steady_clock::now();
      UnaryOnce(payload);
      micros.push_back(MicrosSince(start));
    }
    return micros;
  }
  // `calls` echoes, `in_flight` outstanding at any time.
  virtual void UnaryBatch(const std::string& payload, int calls,
                          int in_flight) = 0;
  // `streams` concurrent server streams of `count` 16-byte messages; returns
  // the messages received (< 0: not supported).
  virtual int64_t Stream(int streams, int64_t count) = 0;

  pid_t server_pid() const { return server_->pid(); }
  const std::string& server_address() const { return server_->address(); }

 protected:
  // Starts `binary` and returns the address it announces.
  std::string StartServer(const std::string& binary,
                          std::vector<std::string> env) {
    server_ = std::make_unique<ServerProcess>(binary, std::move(env));
    return server_->address();
  }

  std::unique_ptr<ServerProcess> server_;
};

// gRPC C++ with the same service (in its own file: its generated `Echo`
// class and dynrpc's cannot share a translation unit).
std::unique_ptr<System> MakeGrpcSystem();

}  // namespace bench

#endif  // DYNRPC_BENCH_SYSTEM_H_
