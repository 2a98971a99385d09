// The process's system server (DYN_SYSTEM_PORT, DYN_SYSTEM_HOST): a small
// HTTP/1.1 server for operators and their tools.
//   GET /live     200 "live": the process runs.
//   GET /health   200 {"status":"SERVING"} when every Server of the process
//                 is SERVING (its health service's overall status); 503 with
//                 the first other status otherwise (a drain, a shutdown).
//   GET /metrics  the call metrics (core/metrics.h), Prometheus's text
//                 format.
// One per process, started by the first Server::Start() or Channel
// creation whose Config sets system_port; it runs on its own thread for the
// rest of the process. Bounded: one connection at a time, a request of at
// most 8 KiB read within 5 s, then the connection closes.
#ifndef DYNRPC_RUNTIME_SRC_SYSTEM_SYSTEM_SERVER_H_
#define DYNRPC_RUNTIME_SRC_SYSTEM_SYSTEM_SERVER_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dynrpc/config.h"

namespace dynrpc::internal {

class HealthService;

class SystemServer {
 public:
  // Requests larger than this, or slower than this, are answered 400/408
  // and closed.
  static constexpr std::size_t kMaxRequestBytes = 8 * 1024;
  static constexpr int kRequestTimeoutMs = 5000;

  // The process's system server, started on `config`'s system host and port
  // the first time (which also starts the metrics' counting). Later calls
  // return it (with another address: a warning in the log). Fails
  // UNAVAILABLE naming DYN_SYSTEM_PORT when it cannot listen.
  static absl::StatusOr<SystemServer*> StartFor(const Config& config);
  // Null until started.
  static SystemServer* Running();

  // host:port, as bound.
  const std::string& address() const { return address_; }
  uint16_t port() const { return port_; }

  // `health` (a Server's) counts toward /health until removed.
  void AddHealth(const HealthService* health);
  void RemoveHealth(const HealthService* health);

  // The answer to one request (the status line's code, content type, body),
  // for `method` and `target` as the request line gave them.
  struct Answer {
    int code;
    std::string content_type;
    std::string body;
  };
  Answer Handle(std::string_view method, std::string_view target) const;

 private:
  SystemServer() = default;
  void Serve(int listener);

  std::string address_;
  uint16_t port_ = 0;
  mutable std::mutex mu_;
  std::vector<const HealthService*> health_;  // under mu_
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_SYSTEM_SYSTEM_SERVER_H_
