#include "dynrpc/config.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/log.h"

namespace dynrpc {
namespace {

// Collects every problem so one run reports all of them.
class Parser {
 public:
  explicit Parser(const Config::Lookup& lookup) : lookup_(lookup) {}

  // The variable's value with surrounding white space removed, or nullopt
  // when it is unset or empty (both mean "use the default").
  std::optional<std::string> Get(absl::string_view name) {
    std::optional<std::string> raw =
        lookup_(std::string_view(name.data(), name.size()));
    if (!raw) return std::nullopt;
    std::string value(absl::StripAsciiWhitespace(*raw));
    if (value.empty()) return std::nullopt;
    return value;
  }

  void Fail(absl::string_view name, absl::string_view value,
            absl::string_view allowed) {
    errors_.push_back(
        absl::StrCat(name, "='", value, "' is invalid: expected ", allowed));
  }
  void FailRaw(std::string message) { errors_.push_back(std::move(message)); }

  // An integer in [min, max], decimal digits only.
  template <typename T>
  void Integer(absl::string_view name, uint64_t min, uint64_t max, T& out) {
    std::optional<std::string> value = Get(name);
    if (!value) return;
    uint64_t n = 0;
    if (!ParseDigits(*value, n) || n < min || n > max) {
      Fail(name, *value, absl::StrCat("an integer from ", min, " to ", max));
      return;
    }
    out = static_cast<T>(n);
  }

  // A byte count: digits with an optional binary unit (B, KiB, MiB, GiB).
  void Size(absl::string_view name, uint64_t min, uint64_t max,
            std::size_t& out) {
    std::optional<std::string> value = Get(name);
    if (!value) return;
    absl::string_view v = *value;
    uint64_t scale = 1;
    static constexpr std::pair<absl::string_view, uint64_t> kUnits[] = {
        {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
        {"B", 1}};
    for (const auto& [unit, factor] : kUnits) {
      if (absl::EndsWithIgnoreCase(v, unit)) {
        v.remove_suffix(unit.size());
        scale = factor;
        break;
      }
    }
    uint64_t n = 0;
    if (!ParseDigits(absl::StripTrailingAsciiWhitespace(v), n) ||
        n > max / scale || n * scale < min) {
      Fail(name, *value,
           absl::StrCat("a size from ", min, " to ", max,
                        " bytes: digits with an optional unit B, KiB, MiB "
                        "or GiB"));
      return;
    }
    out = static_cast<std::size_t>(n * scale);
  }

  // A positive duration: digits with an optional unit ms, s (the default)
  // or m.
  void Duration(absl::string_view name, std::chrono::milliseconds& out) {
    std::optional<std::string> value = Get(name);
    if (!value) return;
    absl::string_view v = *value;
    uint64_t scale = 1000;
    if (absl::EndsWith(v, "ms")) {
      v.remove_suffix(2);
      scale = 1;
    } else if (absl::EndsWith(v, "s")) {
      v.remove_suffix(1);
    } else if (absl::EndsWith(v, "m")) {
      v.remove_suffix(1);
      scale = 60'000;
    }
    constexpr uint64_t kMaxMs = 7ull * 24 * 3600 * 1000;  // a week
    uint64_t n = 0;
    if (!ParseDigits(v, n) || n == 0 || n > kMaxMs / scale) {
      Fail(name, *value,
           "a positive duration of at most a week: digits with an optional "
           "unit ms, s (the default) or m");
      return;
    }
    out = std::chrono::milliseconds(n * scale);
  }

  void Seconds(absl::string_view name, uint64_t min,
               std::chrono::seconds& out) {
    uint64_t n = out.count();
    Integer(name, min, 7 * 24 * 3600, n);
    out = std::chrono::seconds(n);
  }

  void Bool(absl::string_view name, bool& out) {
    std::optional<std::string> value = Get(name);
    if (!value) return;
    std::string v = absl::AsciiStrToLower(*value);
    if (v == "true" || v == "1" || v == "yes" || v == "on") {
      out = true;
    } else if (v == "false" || v == "0" || v == "no" || v == "off") {
      out = false;
    } else {
      Fail(name, *value, "true or false (also 1/0, yes/no, on/off)");
    }
  }

  void Host(absl::string_view name, std::string& out) {
    std::optional<std::string> value = Get(name);
    if (!value) return;
    if (!IsValidHost(*value)) {
      Fail(name, *value, "an IPv4 or IPv6 address or a host name");
      return;
    }
    out = *value;
  }

  absl::Status Result() const {
    if (errors_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
  }

  static bool ParseDigits(absl::string_view s, uint64_t& out) {
    if (s.empty() || s.size() > 19) return false;
    uint64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    out = n;
    return true;
  }

  static bool IsValidHost(const std::string& host) {
    in_addr v4;
    in6_addr v6;
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1 ||
        inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
      return true;
    }
    // RFC 1123 host name: dot-separated labels of letters, digits and '-'.
    if (host.size() > 253) return false;
    for (absl::string_view label : absl::StrSplit(host, '.')) {
      if (label.empty() || label.size() > 63 || label.front() == '-' ||
          label.back() == '-') {
        return false;
      }
      for (char c : label) {
        if (!absl::ascii_isalnum(c) && c != '-') return false;
      }
    }
    return true;
  }

 private:
  const Config::Lookup& lookup_;
  std::vector<std::string> errors_;
};

// nats://host[:port], or a comma-separated list of them (nats.c's form);
// tls:// is accepted too.
bool IsValidNatsUrl(absl::string_view urls) {
  for (absl::string_view url : absl::StrSplit(urls, ',')) {
    url = absl::StripAsciiWhitespace(url);
    size_t scheme_end = url.find("://");
    if (scheme_end == absl::string_view::npos) return false;
    std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
    if (scheme != "nats" && scheme != "tls") return false;
    absl::string_view rest = url.substr(scheme_end + 3);
    if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
      rest = rest.substr(at + 1);  // user:password@ or token@
    }
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    absl::string_view host = rest;
    std::optional<absl::string_view> port;
    if (!rest.empty() && rest.front() == '[') {  // [v6-address]:port
      size_t close = rest.find(']');
      if (close == absl::string_view::npos) return false;
      host = rest.substr(1, close - 1);
      absl::string_view after = rest.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') return false;
        port = after.substr(1);
      }
    } else if (size_t colon = rest.rfind(':');
               colon != absl::string_view::npos) {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
    }
    uint64_t port_number = 0;
    if (port && (!Parser::ParseDigits(*port, port_number) ||
                 port_number == 0 || port_number > 65535)) {
      return false;
    }
    if (host.empty() || !Parser::IsValidHost(std::string(host))) return false;
  }
  return true;
}

// http://host:port, as ETCD_ENDPOINTS lists them.
bool IsValidEtcdEndpoint(absl::string_view url) {
  if (!absl::ConsumePrefix(&url, "http://")) return false;
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  size_t colon = url.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host = url.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  uint64_t port = 0;
  return Parser::ParseDigits(url.substr(colon + 1), port) && port > 0 &&
         port <= 65535 && !host.empty() &&
         Parser::IsValidHost(std::string(host));
}

}  // namespace

std::string_view DiscoveryBackendName(DiscoveryBackend backend) {
  return backend == DiscoveryBackend::kEtcd ? "etcd" : "file";
}

absl::StatusOr<DiscoveryBackend> ParseDiscoveryBackend(
    std::string_view value_in) {
  absl::string_view value(value_in.data(), value_in.size());
  std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
  if (v.empty() || v == "file") return DiscoveryBackend::kFile;
  if (v == "etcd") return DiscoveryBackend::kEtcd;
  return absl::InvalidArgumentError(
      absl::StrCat("Invalid discovery backend: '", value,
                   "' (DYN_DISCOVERY_BACKEND). Valid options are: 'file', "
                   "'etcd'"));
}

std::string_view RequestPlaneName(RequestPlaneKind kind) {
  switch (kind) {
    case RequestPlaneKind::kTcp:
      return "tcp";
    case RequestPlaneKind::kHttp:
      return "http";
    case RequestPlaneKind::kNats:
      return "nats";
  }
  return "unknown";
}

absl::StatusOr<RequestPlaneKind> ParseRequestPlane(std::string_view value_in) {
  absl::string_view value(value_in.data(), value_in.size());
  std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
  if (v.empty() || v == "tcp") return RequestPlaneKind::kTcp;
  if (v == "http") return RequestPlaneKind::kHttp;
  if (v == "nats") return RequestPlaneKind::kNats;
  return absl::InvalidArgumentError(
      absl::StrCat("Invalid request plane mode: '", value,
                   "'. Valid options are: 'nats', 'http', 'tcp'"));
}

absl::StatusOr<Config> Config::FromLookup(const Lookup& lookup) {
  Config config;
  Parser p(lookup);

  if (std::optional<std::string> plane = lookup("DYN_REQUEST_PLANE")) {
    absl::StatusOr<RequestPlaneKind> kind = ParseRequestPlane(*plane);
    if (kind.ok()) {
      config.request_plane = *kind;
    } else {
      p.FailRaw(std::string(kind.status().message()));
    }
  }

  TcpConfig& tcp = config.tcp;
  p.Host("DYN_TCP_RPC_HOST", tcp.host);
  p.Integer("DYN_TCP_RPC_PORT", 0, 65535, tcp.port);
  tcp.port_from_environment = p.Get("DYN_TCP_RPC_PORT").has_value();
  p.Size("DYN_TCP_MAX_MESSAGE_SIZE", 1, std::numeric_limits<int32_t>::max(),
         tcp.max_message_size);
  p.Duration("DYN_TCP_REQUEST_TIMEOUT", tcp.request_timeout);
  p.Integer("DYN_TCP_POOL_SIZE", 1, 10'000, tcp.pool_size);
  p.Duration("DYN_TCP_CONNECT_TIMEOUT", tcp.connect_timeout);
  p.Integer("DYN_TCP_CHANNEL_BUFFER", 1, 1'000'000, tcp.channel_buffer);
  p.Integer("DYN_TCP_MAX_CALLS_PER_CONNECTION", 1, 1'000'000,
            tcp.max_calls_per_connection);
  p.Size("DYN_TCP_MAX_QUEUED_BYTES", 64 * 1024,
         std::numeric_limits<int32_t>::max(), tcp.max_queued_bytes);
  p.Duration("DYN_TCP_READ_TIMEOUT", tcp.read_timeout);
  p.Duration("DYN_TCP_KEEPALIVE_INTERVAL", tcp.keepalive_interval);
  p.Duration("DYN_TCP_KEEPALIVE_TIMEOUT", tcp.keepalive_timeout);

  p.Integer("DYN_SERVER_MAX_CONNECTIONS", 1, 1'000'000,
            config.limits.max_connections);
  p.Integer("DYN_SERVER_MAX_HANDLERS", 1, 1'000'000,
            config.limits.max_handlers);

  HttpConfig& http = config.http;
  p.Host("DYN_HTTP_RPC_HOST", http.host);
  p.Integer("DYN_HTTP_RPC_PORT", 0, 65535, http.port);
  http.port_from_environment = p.Get("DYN_HTTP_RPC_PORT").has_value();
  if (std::optional<std::string> raw = lookup("DYN_HTTP_RPC_ROOT_PATH")) {
    std::string root(absl::StripAsciiWhitespace(*raw));
    if (root.empty() || root.front() != '/' ||
        absl::StrContains(root, "//") ||
        root.find_first_of(" ?#") != std::string::npos) {
      p.Fail("DYN_HTTP_RPC_ROOT_PATH", *raw,
             "a path starting with '/', without '//', spaces, '?' or '#' "
             "(use '/' for the bare gRPC path)");
    } else {
      if (root.size() > 1 && root.back() == '/') root.pop_back();
      http.root_path = root;
    }
  }
  p.Size("DYN_HTTP_MAX_MESSAGE_SIZE", 1, std::numeric_limits<int32_t>::max(),
         http.max_message_size);
  p.Duration("DYN_HTTP_REQUEST_TIMEOUT", http.request_timeout);
  p.Duration("DYN_HTTP_CONNECT_TIMEOUT", http.connect_timeout);
  // RFC 9113: SETTINGS_MAX_FRAME_SIZE is 2^14 to 2^24-1.
  p.Size("DYN_HTTP2_MAX_FRAME_SIZE", 16384, 16777215, http.max_frame_size);
  p.Integer("DYN_HTTP2_MAX_CONCURRENT_STREAMS", 1,
            std::numeric_limits<uint32_t>::max(), http.max_concurrent_streams);
  p.Integer("DYN_HTTP2_POOL_MAX_IDLE_PER_HOST", 0, 100'000,
            http.pool_max_idle_per_host);
  p.Seconds("DYN_HTTP2_POOL_IDLE_TIMEOUT_SECS", 0, http.pool_idle_timeout);
  p.Seconds("DYN_HTTP2_KEEP_ALIVE_INTERVAL_SECS", 1, http.keep_alive_interval);
  p.Seconds("DYN_HTTP2_KEEP_ALIVE_TIMEOUT_SECS", 1, http.keep_alive_timeout);
  p.Bool("DYN_HTTP2_ADAPTIVE_WINDOW", http.adaptive_window);

  if (std::optional<std::string> url = p.Get("NATS_SERVER")) {
    if (IsValidNatsUrl(*url)) {
      config.nats.server = *url;
    } else {
      p.Fail("NATS_SERVER", *url,
             "nats://host[:port] (or tls://), several separated by commas");
    }
  }
  NatsConfig& nats = config.nats;
  if (std::optional<std::string> v = p.Get("NATS_AUTH_USERNAME")) nats.user = *v;
  if (std::optional<std::string> v = p.Get("NATS_AUTH_PASSWORD")) {
    nats.password = *v;
  }
  if (std::optional<std::string> v = p.Get("NATS_AUTH_TOKEN")) nats.token = *v;
  if (std::optional<std::string> v = p.Get("NATS_AUTH_CREDENTIALS_FILE")) {
    nats.credentials_file = *v;
  }
  if (!nats.password.empty() && nats.user.empty()) {
    p.Fail("NATS_AUTH_PASSWORD", "(set)",
           "a password needs NATS_AUTH_USERNAME too");
  }
  if (std::optional<std::string> ns = p.Get("DYN_NAMESPACE")) {
    // One or more NATS subject tokens: no spaces, '*' or '>'; no empty token.
    std::string v = *ns;
    bool ok = !v.empty() && v.front() != '.' && v.back() != '.' &&
              v.find("..") == std::string::npos &&
              v.find_first_of(" \t*>") == std::string::npos;
    if (ok) {
      nats.name_space = v;
      config.discovery.name_space = v;
    } else {
      p.Fail("DYN_NAMESPACE", v,
             "NATS subject tokens separated by '.', without spaces, '*' or "
             "'>'");
    }
  }
  p.Size("DYN_NATS_MAX_MESSAGE_SIZE", 1, std::numeric_limits<int32_t>::max(),
         nats.max_message_size);
  p.Duration("DYN_NATS_REQUEST_TIMEOUT", nats.request_timeout);
  p.Duration("DYN_NATS_CONNECT_TIMEOUT", nats.connect_timeout);

  DiscoveryConfig& discovery = config.discovery;
  if (std::optional<std::string> backend = p.Get("DYN_DISCOVERY_BACKEND")) {
    absl::StatusOr<DiscoveryBackend> parsed = ParseDiscoveryBackend(*backend);
    if (parsed.ok()) {
      discovery.backend = *parsed;
    } else {
      p.FailRaw(std::string(parsed.status().message()));
    }
  }
  if (std::optional<std::string> dir = p.Get("DYN_FILE_KV")) {
    if (dir->front() != '/') {
      p.Fail("DYN_FILE_KV", *dir, "an absolute directory path");
    } else {
      discovery.file_dir = *dir;
    }
  }
  if (std::optional<std::string> urls = p.Get("ETCD_ENDPOINTS")) {
    std::vector<std::string> endpoints;
    for (absl::string_view url : absl::StrSplit(*urls, ',')) {
      url = absl::StripAsciiWhitespace(url);
      if (!IsValidEtcdEndpoint(url)) {
        endpoints.clear();
        break;
      }
      endpoints.emplace_back(url);
    }
    if (endpoints.empty()) {
      p.Fail("ETCD_ENDPOINTS", *urls,
             "http://host:port URLs separated by commas (https is not "
             "supported)");
    } else {
      discovery.etcd_endpoints = std::move(endpoints);
    }
  }
  p.Duration("DYN_DISCOVERY_LEASE_TTL", discovery.lease_ttl);
  if (discovery.lease_ttl < std::chrono::seconds(1)) {
    p.Fail("DYN_DISCOVERY_LEASE_TTL",
           absl::StrCat(discovery.lease_ttl.count(), "ms"),
           "at least 1s (etcd counts leases in whole seconds)");
  }
  p.Bool("DYN_DISCOVERY_REGISTER", discovery.register_servers);
  p.Duration("DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT",
             config.graceful_shutdown_timeout);
  if (std::optional<std::string> c = p.Get("DYN_COMPRESSION")) {
    std::optional<Compression> parsed =
        ParseCompression(absl::AsciiStrToLower(*c));
    if (parsed) {
      config.compression = *parsed;
    } else {
      p.Fail("DYN_COMPRESSION", *c, "identity, deflate or gzip");
    }
  }
  p.Size("DYN_COMPRESSION_MIN_BYTES", 0, std::numeric_limits<int32_t>::max(),
         config.compression_min_bytes);
  if (p.Get("DYN_SYSTEM_PORT")) {
    uint16_t port = 0;
    p.Integer("DYN_SYSTEM_PORT", 0, 65535, port);
    config.system_port = port;
  }
  p.Host("DYN_SYSTEM_HOST", config.system_host);
  if (std::optional<std::string> log = p.Get("DYN_LOG")) {
    absl::StatusOr<internal::LogSpec> spec = internal::ParseLogSpec(*log);
    if (spec.ok()) {
      config.log = *log;
    } else {
      p.FailRaw(std::string(spec.status().message()));
    }
  }

  if (absl::Status s = p.Result(); !s.ok()) return s;
  return config;
}

absl::StatusOr<Config> Config::FromEnvironment() {
  Lookup lookup = [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  std::vector<std::string> names;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view e(*entry);
    names.emplace_back(e.substr(0, e.find('=')));
  }
  for (const std::string& warning : UnknownVariableWarnings(names, lookup)) {
    std::fprintf(stderr, "dynrpc: warning: %s\n", warning.c_str());
  }
  return FromLookup(lookup);
}

namespace {

// Every variable FromLookup reads, and the warnings' own opt-out.
const std::vector<std::string>& KnownVariables() {
  static const auto* const known = [] {
    auto* names = new std::vector<std::string>{"DYN_IGNORE_UNKNOWN_VARIABLES"};
    (void)Config::FromLookup(
        [names](std::string_view name) -> std::optional<std::string> {
          names->emplace_back(name);
          return std::nullopt;
        });
    std::sort(names->begin(), names->end());
    names->erase(std::unique(names->begin(), names->end()), names->end());
    return names;
  }();
  return *known;
}

// Edits (insertions, deletions, substitutions, swaps of neighbours) that
// turn `a` into `b`.
std::size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1,
                                          std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::vector<std::string> Config::UnknownVariableWarnings(
    const std::vector<std::string>& names, const Lookup& lookup) {
  std::vector<std::string> warnings;
  if (std::optional<std::string> ignore =
          lookup("DYN_IGNORE_UNKNOWN_VARIABLES")) {
    std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(*ignore));
    if (v == "1" || v == "true" || v == "yes" || v == "on") return warnings;
  }
  const std::vector<std::string>& known = KnownVariables();
  for (const std::string& name : names) {
    if (!absl::StartsWith(name, "DYN_") && !absl::StartsWith(name, "NATS_")) {
      continue;
    }
    if (std::binary_search(known.begin(), known.end(), name)) continue;
    // Close: a typo or two (more for a long name), not another word.
    const std::string* closest = nullptr;
    std::size_t best = std::max<std::size_t>(2, name.size() / 8) + 1;
    for (const std::string& k : known) {
      std::size_t d = EditDistance(name, k);
      if (d < best) {
        best = d;
        closest = &k;
      }
    }
    if (closest == nullptr) continue;
    warnings.push_back(absl::StrCat(
        name, " is not a dynrpc variable and is ignored; did you mean ",
        *closest, "? (DYN_IGNORE_UNKNOWN_VARIABLES=1 silences this)"));
  }
  return warnings;
}

const absl::StatusOr<Config>& Config::Global() {
  static const absl::StatusOr<Config> config = FromEnvironment();
  return config;
}

std::string PickHostAddress(const std::vector<InterfaceAddress>& interfaces) {
  const InterfaceAddress* v6 = nullptr;
  for (const InterfaceAddress& i : interfaces) {
    if (!i.is_up || i.is_loopback) continue;
    bool is_v6 = absl::StrContains(i.address, ':');
    // Link-local IPv6 needs a scope id to be reachable; skip it.
    if (is_v6 && absl::StartsWithIgnoreCase(i.address, "fe80:")) continue;
    if (!is_v6) return i.address;
    if (v6 == nullptr) v6 = &i;
  }
  return v6 != nullptr ? v6->address : "127.0.0.1";
}

std::string DetectHostAddress() {
  std::vector<InterfaceAddress> found;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return PickHostAddress(found);
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    int family = a->ifa_addr->sa_family;
    if (family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr,
                buf, sizeof buf);
    } else if (family == AF_INET6) {
      inet_ntop(AF_INET6,
                &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, buf,
                sizeof buf);
    } else {
      continue;
    }
    found.push_back(InterfaceAddress{a->ifa_name, buf,
                                     (a->ifa_flags & IFF_LOOPBACK) != 0,
                                     (a->ifa_flags & IFF_UP) != 0});
  }
  freeifaddrs(list);
  return PickHostAddress(found);
}

}  // namespace dynrpc
