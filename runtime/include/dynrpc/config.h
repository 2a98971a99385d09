// Process configuration: which request plane to use and how each plane is
// tuned, from the DYN_* environment variables (see the README's table).
//
// Example:
//   const absl::StatusOr<dynrpc::Config>& config = dynrpc::Config::Global();
//   if (!config.ok()) { std::cerr << config.status() << "\n"; return 1; }
//
// Tests and embedders build a Config in code instead and never touch the
// environment:
//   dynrpc::Config config;
//   config.tcp.host = "127.0.0.1";
//   config.tcp.max_message_size = 1 << 20;
#ifndef DYNRPC_CONFIG_H_
#define DYNRPC_CONFIG_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynrpc/context.h"

namespace dynrpc {

enum class RequestPlaneKind { kTcp, kHttp, kNats };

// "tcp", "http" or "nats".
std::string_view RequestPlaneName(RequestPlaneKind kind);

// Case-insensitive; empty means tcp. Anything else fails with
// "Invalid request plane mode: '<value>'. Valid options are: 'nats', 'http',
// 'tcp'".
absl::StatusOr<RequestPlaneKind> ParseRequestPlane(std::string_view value);

struct TcpConfig {
  // Address the server binds and advertises. Empty: detected at Server::Start
  // (DetectHostAddress()).
  std::string host;
  // 0: the OS assigns a free port.
  uint16_t port = 0;
  bool port_from_environment = false;  // DYN_TCP_RPC_PORT set it (messages)
  // Largest serialized message either side sends or accepts, in bytes.
  std::size_t max_message_size = 32u << 20;
  // Timeout of a call whose context sets no deadline.
  std::chrono::milliseconds request_timeout{10'000};
  // Connections a client keeps per destination.
  std::size_t pool_size = 50;
  std::chrono::milliseconds connect_timeout{3'000};
  // Calls in flight per connection; further calls wait for a slot.
  std::size_t channel_buffer = 100;

  // What a server lets one connection hold (a hostile or slow peer cannot
  // make it hold more):
  // Calls running at once; a call past it ends at once with
  // RESOURCE_EXHAUSTED. Keep it at or above the clients' channel_buffer.
  std::size_t max_calls_per_connection = 1000;
  // Bytes queued for the peer; past it the server stops reading the
  // connection's requests until the peer has read enough of its responses.
  std::size_t max_queued_bytes = 8u << 20;
  // A frame that has begun to arrive and then receives no byte for this
  // long closes the connection (both sides). Memory stays bounded however
  // slowly a frame arrives: it is allocated as its bytes come.
  std::chrono::milliseconds read_timeout{30'000};

  // Liveness (both sides). A client whose connection has calls in flight and
  // has received nothing for keepalive_interval sends a PING; no reply within
  // keepalive_timeout closes the connection and its calls end UNAVAILABLE.
  // Both also set the kernel's TCP keepalive and TCP_USER_TIMEOUT from them,
  // so a dead peer of an idle connection is found too.
  std::chrono::milliseconds keepalive_interval{30'000};
  std::chrono::milliseconds keepalive_timeout{10'000};
};

// What one server admits, whatever its plane and however its peers behave.
struct ServerLimits {
  // Connections open at once (TCP and HTTP planes); one past it is closed as
  // soon as it is accepted.
  std::size_t max_connections = 10'000;
  // Handlers running at once; a call past it ends at once with
  // RESOURCE_EXHAUSTED, without running.
  std::size_t max_handlers = 10'000;
};

struct HttpConfig {
  std::string host;  // empty: detected, as for TCP
  uint16_t port = 8888;  // 0: OS-assigned
  bool port_from_environment = false;  // DYN_HTTP_RPC_PORT set it (messages)
  // "/" or empty: the bare gRPC path "/package.Service/Method".
  std::string root_path = "/v1/rpc";
  // Largest serialized message either side sends or accepts (a JSON body
  // too), in bytes.
  std::size_t max_message_size = 32u << 20;
  // Timeout of a call whose context sets no deadline.
  std::chrono::milliseconds request_timeout{10'000};
  std::chrono::milliseconds connect_timeout{3'000};
  std::size_t max_frame_size = 1u << 20;
  std::size_t max_concurrent_streams = 1000;
  std::size_t pool_max_idle_per_host = 100;
  std::chrono::seconds pool_idle_timeout{90};
  std::chrono::seconds keep_alive_interval{30};
  std::chrono::seconds keep_alive_timeout{10};
  bool adaptive_window = true;
};

struct NatsConfig {
  // nats://host[:port] (or tls://), several separated by commas.
  std::string server = "nats://localhost:4222";
  // Authentication, all optional: user and password, a token, or a
  // credentials (JWT + NKey seed) file.
  std::string user;
  std::string password;
  std::string token;
  std::string credentials_file;
  // Scopes every subject: "<namespace>.rpc.<package.Service>.<Method>".
  std::string name_space = "dynamo";
  // Largest serialized message either side sends, in bytes; 0: the NATS
  // server's max_payload (less the headers) is the only limit.
  std::size_t max_message_size = 0;
  // Timeout of a call whose context sets no deadline.
  std::chrono::milliseconds request_timeout{10'000};
  // Time to connect to the NATS server before calls fail with UNAVAILABLE.
  std::chrono::milliseconds connect_timeout{3'000};
};

enum class DiscoveryBackend { kFile, kEtcd };

// "file" or "etcd".
std::string_view DiscoveryBackendName(DiscoveryBackend backend);

// Case-insensitive; empty means file. Anything else fails with
// "Invalid discovery backend: '<value>'. Valid options are: 'file', 'etcd'".
absl::StatusOr<DiscoveryBackend> ParseDiscoveryBackend(std::string_view value);

// Where servers register the services they host and channels bound to a
// service find its instances (see the README's "Deployments of many
// processes").
struct DiscoveryConfig {
  DiscoveryBackend backend = DiscoveryBackend::kFile;
  // Every entry lives under it; a client finds only its own namespace's
  // instances. DYN_NAMESPACE (which scopes NATS subjects too).
  std::string name_space = "dynamo";
  // file: the directory shared by this machine's processes. Empty:
  // "$TMPDIR/dynrpc-discovery" ("/tmp/..." without TMPDIR).
  std::string file_dir;
  // etcd: the cluster's client URLs, http://host:port (tried in order).
  std::vector<std::string> etcd_endpoints = {"http://localhost:2379"};
  // How long an instance's entries outlive its process (or a server cut
  // off from the backend): the lease's time to live. The server renews it
  // every third of it.
  std::chrono::milliseconds lease_ttl{10'000};
  // Whether Server::Start() registers its services (Server::Start() fails
  // when it cannot).
  bool register_servers = true;
};

struct Config {
  RequestPlaneKind request_plane = RequestPlaneKind::kTcp;
  TcpConfig tcp;
  HttpConfig http;
  NatsConfig nats;
  ServerLimits limits;
  DiscoveryConfig discovery;
  // DYN_LOG: the log's levels, "info" by default; per module too:
  // "warn,dynrpc::nats=debug" (error, warn, info, debug, trace).
  std::string log = "info";
  // How long a draining server (Server::Drain(), or Server::Wait() on
  // SIGTERM or SIGINT) lets the calls in flight run before it cancels them.
  std::chrono::milliseconds graceful_shutdown_timeout{30'000};
  // DYN_COMPRESSION: how channels compress requests and servers responses
  // unless a call's context says otherwise (ClientContext::set_compression,
  // ServerContext::set_compression): identity (default), deflate or gzip.
  Compression compression = Compression::kIdentity;
  // DYN_COMPRESSION_MIN_BYTES: messages smaller than this go uncompressed.
  std::size_t compression_min_bytes = 1024;
  // DYN_SYSTEM_PORT: the port of the process's system server (/health,
  // /live, /metrics); unset: none, and no metrics are counted. 0: the OS
  // picks one.
  std::optional<uint16_t> system_port;
  // DYN_SYSTEM_HOST: the address it listens on.
  std::string system_host = "127.0.0.1";

  // Looks a variable up by name; nullopt when it is not set.
  using Lookup = std::function<std::optional<std::string>(std::string_view)>;

  // Parses every variable `lookup` knows. On error the status is
  // INVALID_ARGUMENT and lists every bad variable with its value and what is
  // allowed, one per line (an invalid DYN_REQUEST_PLANE's exact message
  // comes first).
  static absl::StatusOr<Config> FromLookup(const Lookup& lookup);
  // FromLookup over the process environment. Prints a warning on stderr
  // for each variable that looks like a misspelt dynrpc variable (see
  // UnknownVariableWarnings).
  static absl::StatusOr<Config> FromEnvironment();
  // One warning for each of `names` (the environment's variable names) that
  // starts with DYN_ or NATS_, is not one of dynrpc's and is within a few
  // edits of one: "DYN_REQUEST_PLAN is not a dynrpc variable and is
  // ignored; did you mean DYN_REQUEST_PLANE?". None when `lookup` sets
  // DYN_IGNORE_UNKNOWN_VARIABLES to true (for a process with DYN_ variables
  // of its own).
  static std::vector<std::string> UnknownVariableWarnings(
      const std::vector<std::string>& names, const Lookup& lookup);
  // FromEnvironment(), evaluated on first use and cached for the process.
  static const absl::StatusOr<Config>& Global();
};

// One network interface address, as DetectHostAddress sees it.
struct InterfaceAddress {
  std::string name;     // "eth0"
  std::string address;  // numeric IPv4 or IPv6
  bool is_loopback = false;
  bool is_up = false;
};

// The address a server advertises when no host is configured: the first
// IPv4 address of an up, non-loopback interface, else the first such IPv6
// address, else "127.0.0.1". Pure: it sends nothing.
std::string PickHostAddress(const std::vector<InterfaceAddress>& interfaces);
// PickHostAddress over this machine's interfaces (getifaddrs).
std::string DetectHostAddress();

}  // namespace dynrpc

#endif  // DYNRPC_CONFIG_H_
