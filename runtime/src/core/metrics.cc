#include "core/metrics.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dynrpc::internal {

void CallStats::End(absl::StatusCode code, Clock::duration took) {
  in_flight.fetch_sub(1, std::memory_order_relaxed);
  int c = static_cast<int>(code);
  ended[c >= 0 && c <= 16 ? c : 2].fetch_add(1, std::memory_order_relaxed);
  const double seconds = std::chrono::duration<double>(took).count();
  for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    if (seconds <= kLatencyBuckets[i]) {
      buckets[i].fetch_add(1, std::memory_order_relaxed);
    }
  }
  latency_sum_ns.fetch_add(
      static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()),
      std::memory_order_relaxed);
}

Metrics& Metrics::Global() {
  static Metrics* const metrics = new Metrics();  // lives as long as the process
  return *metrics;
}

CallStats* Metrics::For(Side side, std::string_view method_path,
                        std::string_view plane) {
  if (!enabled()) return nullptr;
  std::string key = absl::StrCat(side == Side::kServer ? "s" : "c", "\n",
                                 std::string(method_path), "\n",
                                 std::string(plane));
  {
    std::shared_lock lock(mu_);
    auto it = stats_.find(key);
    if (it != stats_.end()) return it->second.second.get();
  }
  // "/pkg.Service/Method": its service and method labels.
  std::string_view path = method_path;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  std::size_t slash = path.rfind('/');
  Key labels{side,
             std::string(slash == std::string_view::npos ? path
                                                         : path.substr(0, slash)),
             std::string(slash == std::string_view::npos
                             ? std::string_view()
                             : path.substr(slash + 1)),
             std::string(plane)};
  std::unique_lock lock(mu_);
  auto [it, added] = stats_.try_emplace(std::move(key));
  if (added) {
    it->second = {std::move(labels), std::make_unique<CallStats>()};
  }
  return it->second.second.get();
}

namespace {

// A label value, escaped as the text format wants (\\, \", \n).
std::string Escape(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace

std::string Metrics::Render() const {
  struct Row {
    const Key* key;
    const CallStats* stats;
  };
  std::vector<Row> rows;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, entry] : stats_) {
      rows.push_back({&entry.first, entry.second.get()});
    }
  }
  // Entries are never removed: the pointers outlive the lock.
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return std::tie(a.key->side, a.key->service, a.key->method, a.key->plane) <
           std::tie(b.key->side, b.key->service, b.key->method, b.key->plane);
  });
  std::string out;
  auto labels = [](const Key& k) {
    return absl::StrCat("service=\"", Escape(k.service), "\",method=\"",
                        Escape(k.method), "\",plane=\"", Escape(k.plane), "\"");
  };
  for (Side side : {Side::kServer, Side::kClient}) {
    const std::string prefix =
        side == Side::kServer ? "dynrpc_server_" : "dynrpc_client_";
    const char* who = side == Side::kServer ? "a server" : "a client";
    auto family = [&](const std::string& name, const char* type,
                      const std::string& help,
                      const std::function<void(const Key&, const CallStats&)>&
                          each) {
      absl::StrAppend(&out, "# HELP ", prefix, name, " ", help, "\n",
                      "# TYPE ", prefix, name, " ", type, "\n");
      for (const Row& r : rows) {
        if (r.key->side == side) each(*r.key, *r.stats);
      }
    };
    auto simple = [&](const std::string& name, const char* type,
                      const std::string& help,
                      std::function<uint64_t(const CallStats&)> value) {
      family(name, type, help, [&](const Key& k, const CallStats& s) {
        absl::StrAppend(&out, prefix, name, "{", labels(k), "} ", value(s),
                        "\n");
      });
    };
    simple("calls_started_total", "counter",
           absl::StrCat("Calls ", who, " started, by method and plane."),
           [](const CallStats& s) { return s.started.load(); });
    family("calls_total", "counter",
           absl::StrCat("Calls ", who, " ended, by method, plane and status code."),
           [&](const Key& k, const CallStats& s) {
             for (int c = 0; c <= 16; ++c) {
               uint64_t n = s.ended[c].load();
               if (n == 0) continue;
               absl::StrAppend(&out, prefix, "calls_total{", labels(k),
                               ",code=\"", CodeName(c), "\"} ", n, "\n");
             }
           });
    family("calls_in_flight", "gauge",
           absl::StrCat("Calls ", who, " has started and not ended."),
           [&](const Key& k, const CallStats& s) {
             absl::StrAppend(&out, prefix, "calls_in_flight{", labels(k), "} ",
                             s.in_flight.load(), "\n");
           });
    family("call_duration_seconds", "histogram",
           absl::StrCat("How long calls took ",
                        side == Side::kServer ? "in the server"
                                              : "at the client",
                        ", start to end."),
           [&](const Key& k, const CallStats& s) {
             uint64_t count = 0;
             for (int c = 0; c <= 16; ++c) count += s.ended[c].load();
             for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
               absl::StrAppend(&out, prefix, "call_duration_seconds_bucket{",
                               labels(k), ",le=\"", kLatencyBuckets[i], "\"} ",
                               s.buckets[i].load(), "\n");
             }
             absl::StrAppend(
                 &out, prefix, "call_duration_seconds_bucket{", labels(k),
                 ",le=\"+Inf\"} ", count, "\n", prefix,
                 "call_duration_seconds_sum{", labels(k), "} ",
                 absl::StrFormat("%.9f", s.latency_sum_ns.load() / 1e9), "\n",
                 prefix, "call_duration_seconds_count{", labels(k), "} ", count,
                 "\n");
           });
    simple("messages_sent_total", "counter",
           absl::StrCat("Messages ", who, " sent."),
           [](const CallStats& s) { return s.messages_sent.load(); });
    simple("messages_received_total", "counter",
           absl::StrCat("Messages ", who, " received."),
           [](const CallStats& s) { return s.messages_received.load(); });
    simple("sent_bytes_total", "counter",
           absl::StrCat("Bytes of the messages ", who,
                        " sent, before compression."),
           [](const CallStats& s) { return s.bytes_sent.load(); });
    simple("sent_wire_bytes_total", "counter",
           absl::StrCat("Bytes of the messages ", who,
                        " sent, as they went on the wire (after compression)."),
           [](const CallStats& s) { return s.wire_bytes_sent.load(); });
    simple("received_bytes_total", "counter",
           absl::StrCat("Bytes of the messages ", who,
                        " received, after decompression."),
           [](const CallStats& s) { return s.bytes_received.load(); });
    simple("received_wire_bytes_total", "counter",
           absl::StrCat("Bytes of the messages ", who,
                        " received, as they came on the wire (before "
                        "decompression)."),
           [](const CallStats& s) { return s.wire_bytes_received.load(); });
  }
  for (const char* side : {"server", "client"}) {
    const bool server = std::string_view(side) == "server";
    absl::StrAppend(
        &out, "# HELP dynrpc_", side, "_connections ",
        server ? "Connections the process's servers hold, by plane."
               : "Connections in the process's channels' pools, by plane.",
        "\n# TYPE dynrpc_", side, "_connections gauge\n");
    for (int plane : {0, 1}) {
      const int64_t n = server ? server_connections_[plane].load()
                               : client_connections_[plane].load();
      absl::StrAppend(&out, "dynrpc_", side, "_connections{plane=\"",
                      plane == 0 ? "tcp" : "http", "\"} ", n, "\n");
    }
  }
  absl::StrAppend(
      &out,
      "# HELP dynrpc_nats_connected Connections to a NATS server that are up.\n"
      "# TYPE dynrpc_nats_connected gauge\n"
      "dynrpc_nats_connected ", nats_connected_.load(), "\n",
      "# HELP dynrpc_nats_reconnects_total Times a NATS connection came back.\n"
      "# TYPE dynrpc_nats_reconnects_total counter\n"
      "dynrpc_nats_reconnects_total ", nats_reconnects_.load(), "\n");
  return out;
}

}  // namespace dynrpc::internal
