// The process's call metrics, in Prometheus's text format: what the system
// server's /metrics shows (DYN_SYSTEM_PORT; off, and nothing counted, when
// unset).
//
// Counting costs a few relaxed atomic adds per call and message: each
// (side, method, plane) has its CallStats, found once per call (a server's
// per method at start, a channel's per call through a read-locked map).
#ifndef DYNRPC_RUNTIME_SRC_CORE_METRICS_H_
#define DYNRPC_RUNTIME_SRC_CORE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "dynrpc/context.h"

namespace dynrpc::internal {

// Latency buckets, in seconds (Prometheus's defaults, from 0.5 ms).
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,  0.5,    1,     2.5,  5,     10};

// One method's numbers on one side and plane. Thread-safe (atomics).
struct CallStats {
  std::atomic<uint64_t> started{0};
  std::atomic<int64_t> in_flight{0};
  std::array<std::atomic<uint64_t>, 17> ended{};  // by status code
  // Latency: cumulative counts per bucket (+Inf is the ended total), and
  // the sum in nanoseconds.
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size()> buckets{};
  std::atomic<uint64_t> latency_sum_ns{0};
  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> messages_received{0};
  // Message bytes as the application wrote them, and as they went on the
  // wire (compressed, when they were).
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> wire_bytes_sent{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> wire_bytes_received{0};

  void Start() {
    started.fetch_add(1, std::memory_order_relaxed);
    in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  void End(absl::StatusCode code, Clock::duration took);
  void Sent(std::size_t bytes, std::size_t wire_bytes) {
    messages_sent.fetch_add(1, std::memory_order_relaxed);
    bytes_sent.fetch_add(bytes, std::memory_order_relaxed);
    wire_bytes_sent.fetch_add(wire_bytes, std::memory_order_relaxed);
  }
  // `wire_bytes`: as it came (compressed, when it was).
  void Received(std::size_t bytes, std::size_t wire_bytes) {
    messages_received.fetch_add(1, std::memory_order_relaxed);
    bytes_received.fetch_add(bytes, std::memory_order_relaxed);
    wire_bytes_received.fetch_add(wire_bytes, std::memory_order_relaxed);
  }
};

// One call counted in `stats` (nothing when null): started when made, ended
// by End() with its code, or as CANCELLED when destroyed first (a coroutine
// destroyed mid-call).
class CountedCall {
 public:
  explicit CountedCall(CallStats* stats) : stats_(stats) {
    if (stats_ != nullptr) {
      start_ = Clock::now();
      stats_->Start();
    }
  }
  ~CountedCall() { End(absl::StatusCode::kCancelled); }
  CountedCall(const CountedCall&) = delete;
  CountedCall& operator=(const CountedCall&) = delete;

  void End(absl::StatusCode code) {
    if (stats_ == nullptr) return;
    stats_->End(code, Clock::now() - start_);
    stats_ = nullptr;
  }

 private:
  CallStats* stats_;
  Clock::time_point start_;
};

class Metrics {
 public:
  enum class Side { kServer, kClient };

  // The process's. Counting starts with Enable() (the system server's
  // start); before it, For() gives null and nothing is counted.
  static Metrics& Global();
  void Enable() { enabled_.store(true, std::memory_order_release); }
  bool enabled() const { return enabled_.load(std::memory_order_acquire); }

  // The stats of `method_path` ("/pkg.Service/Method") on `side` and
  // `plane`, made on first use and kept for the process; null while
  // disabled.
  CallStats* For(Side side, std::string_view method_path,
                 std::string_view plane);

  // Connections, counted always (they come and go rarely): a server's
  // accepted ones and a client's pooled ones per plane (0 tcp, 1 http),
  // and the NATS plane's connections to its NATS server.
  std::atomic<int64_t>& server_connections(int plane) {
    return server_connections_[plane];
  }
  std::atomic<int64_t>& client_connections(int plane) {
    return client_connections_[plane];
  }
  std::atomic<int64_t>& nats_connected() { return nats_connected_; }
  std::atomic<uint64_t>& nats_reconnects() { return nats_reconnects_; }

  // Every family in Prometheus's text exposition format (0.0.4).
  std::string Render() const;

 private:
  struct Key {
    Side side;
    std::string service, method, plane;
  };
  std::atomic<bool> enabled_{false};
  std::array<std::atomic<int64_t>, 2> server_connections_{};
  std::array<std::atomic<int64_t>, 2> client_connections_{};
  std::atomic<int64_t> nats_connected_{0};
  std::atomic<uint64_t> nats_reconnects_{0};
  mutable std::shared_mutex mu_;
  // "<side>\n<method path>\n<plane>" -> its stats; entries are never
  // removed, so the pointers stay valid.
  absl::flat_hash_map<std::string, std::pair<Key, std::unique_ptr<CallStats>>>
      stats_;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_METRICS_H_
