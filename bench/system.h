// A benchmarked system (dynrpc on a plane, gRPC, the floor): its server in
// another process, and a client to it.
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

#include "support/subprocess.h"

namespace bench {

// Client and servers are pinned apart when there are two CPUs.
inline const bool kTwoCpus = std::thread::hardware_concurrency() >= 2;

// A benchmarked system: its server process and a client to it.
class System {
 public:
  virtual ~System() = default;
  virtual void UnaryOnce(const std::string& payload) = 0;
  // `calls` echoes, `in_flight` outstanding at any time.
  virtual void UnaryBatch(const std::string& payload, int calls,
                          int in_flight) = 0;
  // `streams` concurrent server streams of `count` 16-byte messages; returns
  // the messages received (< 0: not supported).
  virtual int64_t Stream(int streams, int64_t count) = 0;

  pid_t server_pid() const { return server_->pid(); }

 protected:
  // Starts `binary` and returns the address it announces.
  std::string StartServer(const std::string& binary,
                          std::vector<std::string> env) {
    std::vector<std::string> args;
    if (kTwoCpus) args.push_back("--cpu=1");
    server_ = std::make_unique<dynrpc::testing::Subprocess>(binary, args, env);
    std::optional<std::string> line =
        server_->ReadLine(std::chrono::seconds(30));
    if (!line || !line->starts_with("listening on ")) {
      std::fprintf(stderr, "%s did not start\n", binary.c_str());
      std::exit(1);
    }
    return line->substr(std::string("listening on ").size());
  }

  std::unique_ptr<dynrpc::testing::Subprocess> server_;
};

// gRPC C++ with the same service (in its own file: its generated `Echo`
// class and dynrpc's cannot share a translation unit).
std::unique_ptr<System> MakeGrpcSystem();

}  // namespace bench

#endif  // DYNRPC_BENCH_SYSTEM_H_
