#include "dynrpc/config.h"

#include <map>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace dynrpc {
namespace {

using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusOr<Config> Parse(const std::map<std::string, std::string>& env) {
  return Config::FromLookup(
      [&](std::string_view name) -> std::optional<std::string> {
        auto it = env.find(std::string(name));
        if (it == env.end()) return std::nullopt;
        return it->second;
      });
}

TEST(Config, DefaultsMatchTheGuide) {
  absl::StatusOr<Config> c = Parse({});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->request_plane, RequestPlaneKind::kTcp);
  EXPECT_EQ(c->tcp.host, "");  // detected at Server::Start
  EXPECT_EQ(c->tcp.port, 0);
  EXPECT_EQ(c->tcp.max_message_size, 32u << 20);
  EXPECT_EQ(c->tcp.request_timeout, std::chrono::seconds(10));
  EXPECT_EQ(c->tcp.pool_size, 50u);
  EXPECT_EQ(c->tcp.connect_timeout, std::chrono::seconds(3));
  EXPECT_EQ(c->tcp.channel_buffer, 100u);
  EXPECT_EQ(c->http.host, "");
  EXPECT_EQ(c->http.port, 8888);
  EXPECT_EQ(c->http.root_path, "/v1/rpc");
  EXPECT_EQ(c->http.max_frame_size, 1u << 20);
  EXPECT_EQ(c->http.max_concurrent_streams, 1000u);
  EXPECT_EQ(c->http.pool_max_idle_per_host, 100u);
  EXPECT_EQ(c->http.pool_idle_timeout, std::chrono::seconds(90));
  EXPECT_EQ(c->http.keep_alive_interval, std::chrono::seconds(30));
  EXPECT_EQ(c->http.keep_alive_timeout, std::chrono::seconds(10));
  EXPECT_TRUE(c->http.adaptive_window);
  EXPECT_EQ(c->http.max_message_size, 32u << 20);
  EXPECT_EQ(c->http.request_timeout, std::chrono::seconds(10));
  EXPECT_EQ(c->nats.server, "nats://localhost:4222");
  EXPECT_EQ(c->nats.name_space, "dynamo");
  EXPECT_EQ(c->nats.max_message_size, 0u);  // the server's max_payload
  EXPECT_EQ(c->nats.request_timeout, std::chrono::seconds(10));
  EXPECT_TRUE(c->nats.user.empty() && c->nats.token.empty());
}

TEST(Config, RequestPlaneIsCaseInsensitive) {
  struct Case {
    std::string value;
    RequestPlaneKind want;
  };
  for (const Case& c : std::vector<Case>{
           {"tcp", RequestPlaneKind::kTcp},
           {"TCP", RequestPlaneKind::kTcp},
           {"", RequestPlaneKind::kTcp},
           {"http", RequestPlaneKind::kHttp},
           {"HTTP", RequestPlaneKind::kHttp},
           {"nats", RequestPlaneKind::kNats},
           {"Nats", RequestPlaneKind::kNats},
       }) {
    SCOPED_TRACE(c.value);
    absl::StatusOr<Config> config = Parse({{"DYN_REQUEST_PLANE", c.value}});
    ASSERT_THAT(config, IsOk());
    EXPECT_EQ(config->request_plane, c.want);
  }
}

TEST(Config, InvalidRequestPlaneHasTheGuidesExactMessage) {
  absl::StatusOr<Config> c = Parse({{"DYN_REQUEST_PLANE", "grpc"}});
  ASSERT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(c.status().message(),
            "Invalid request plane mode: 'grpc'. Valid options are: 'nats', "
            "'http', 'tcp'");
}

TEST(Config, ParsesEveryVariable) {
  absl::StatusOr<Config> c = Parse({
      {"DYN_TCP_RPC_HOST", "10.1.2.3"},
      {"DYN_TCP_RPC_PORT", "7000"},
      {"DYN_TCP_MAX_MESSAGE_SIZE", "4MiB"},
      {"DYN_TCP_REQUEST_TIMEOUT", "2500ms"},
      {"DYN_TCP_POOL_SIZE", "4"},
      {"DYN_TCP_CONNECT_TIMEOUT", "1"},
      {"DYN_TCP_CHANNEL_BUFFER", "7"},
      {"DYN_HTTP_RPC_HOST", "example.internal"},
      {"DYN_HTTP_RPC_PORT", "0"},
      {"DYN_HTTP_RPC_ROOT_PATH", "/api/rpc/"},
      {"DYN_HTTP2_MAX_FRAME_SIZE", "65536"},
      {"DYN_HTTP2_MAX_CONCURRENT_STREAMS", "10"},
      {"DYN_HTTP2_POOL_MAX_IDLE_PER_HOST", "0"},
      {"DYN_HTTP2_POOL_IDLE_TIMEOUT_SECS", "5"},
      {"DYN_HTTP2_KEEP_ALIVE_INTERVAL_SECS", "6"},
      {"DYN_HTTP2_KEEP_ALIVE_TIMEOUT_SECS", "7"},
      {"DYN_HTTP2_ADAPTIVE_WINDOW", "FALSE"},
      {"NATS_SERVER", "nats://127.0.0.1:4333"},
      {"DYN_HTTP_MAX_MESSAGE_SIZE", "8MiB"},
      {"DYN_HTTP_REQUEST_TIMEOUT", "3s"},
      {"DYN_HTTP_CONNECT_TIMEOUT", "500ms"},
      {"NATS_AUTH_USERNAME", "ada"},
      {"NATS_AUTH_PASSWORD", "secret"},
      {"NATS_AUTH_TOKEN", "t0ken"},
      {"NATS_AUTH_CREDENTIALS_FILE", "/etc/nats/user.creds"},
      {"DYN_NAMESPACE", "prod.eu"},
      {"DYN_NATS_MAX_MESSAGE_SIZE", "2MiB"},
      {"DYN_NATS_REQUEST_TIMEOUT", "4s"},
      {"DYN_NATS_CONNECT_TIMEOUT", "2s"},
  });
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->http.max_message_size, 8u << 20);
  EXPECT_EQ(c->http.request_timeout, std::chrono::seconds(3));
  EXPECT_EQ(c->http.connect_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(c->nats.user, "ada");
  EXPECT_EQ(c->nats.password, "secret");
  EXPECT_EQ(c->nats.token, "t0ken");
  EXPECT_EQ(c->nats.credentials_file, "/etc/nats/user.creds");
  EXPECT_EQ(c->nats.name_space, "prod.eu");
  EXPECT_EQ(c->nats.max_message_size, 2u << 20);
  EXPECT_EQ(c->nats.request_timeout, std::chrono::seconds(4));
  EXPECT_EQ(c->nats.connect_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c->tcp.host, "10.1.2.3");
  EXPECT_EQ(c->tcp.port, 7000);
  EXPECT_EQ(c->tcp.max_message_size, 4u << 20);
  EXPECT_EQ(c->tcp.request_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(c->tcp.pool_size, 4u);
  EXPECT_EQ(c->tcp.connect_timeout, std::chrono::seconds(1));
  EXPECT_EQ(c->tcp.channel_buffer, 7u);
  EXPECT_EQ(c->http.host, "example.internal");
  EXPECT_EQ(c->http.port, 0);
  EXPECT_EQ(c->http.root_path, "/api/rpc");
  EXPECT_EQ(c->http.max_frame_size, 65536u);
  EXPECT_EQ(c->http.max_concurrent_streams, 10u);
  EXPECT_EQ(c->http.pool_max_idle_per_host, 0u);
  EXPECT_EQ(c->http.pool_idle_timeout, std::chrono::seconds(5));
  EXPECT_EQ(c->http.keep_alive_interval, std::chrono::seconds(6));
  EXPECT_EQ(c->http.keep_alive_timeout, std::chrono::seconds(7));
  EXPECT_FALSE(c->http.adaptive_window);
  EXPECT_EQ(c->nats.server, "nats://127.0.0.1:4333");
}

TEST(Config, UnitsOfSizesAndDurations) {
  struct Case {
    std::string size, duration;
    std::size_t want_size;
    std::chrono::milliseconds want_duration;
  };
  for (const Case& c : std::vector<Case>{
           {"1048576", "3", 1u << 20, std::chrono::seconds(3)},
           {"512B", "3s", 512, std::chrono::seconds(3)},
           {"64KiB", "250ms", 64u << 10, std::chrono::milliseconds(250)},
           {"1GiB", "2m", 1u << 30, std::chrono::minutes(2)},
           {"2mib", " 7 ", 2u << 20, std::chrono::seconds(7)},
       }) {
    SCOPED_TRACE(c.size + " / " + c.duration);
    absl::StatusOr<Config> config =
        Parse({{"DYN_TCP_MAX_MESSAGE_SIZE", c.size},
               {"DYN_TCP_REQUEST_TIMEOUT", c.duration}});
    ASSERT_THAT(config, IsOk());
    EXPECT_EQ(config->tcp.max_message_size, c.want_size);
    EXPECT_EQ(config->tcp.request_timeout, c.want_duration);
  }
}

TEST(Config, EmptyValueMeansDefault) {
  absl::StatusOr<Config> c =
      Parse({{"DYN_TCP_RPC_PORT", ""}, {"DYN_TCP_POOL_SIZE", "  "}});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->tcp.port, 0);
  EXPECT_EQ(c->tcp.pool_size, 50u);
}

TEST(Config, MalformedValuesNameVariableValueAndWhatIsAllowed) {
  struct Case {
    std::string name, value, allowed;
  };
  for (const Case& c : std::vector<Case>{
           {"DYN_TCP_RPC_PORT", "abc", "an integer from 0 to 65535"},
           {"DYN_TCP_RPC_PORT", "-5", "an integer from 0 to 65535"},
           {"DYN_TCP_RPC_PORT", "10x", "an integer from 0 to 65535"},
           {"DYN_TCP_RPC_PORT", "99999999999", "an integer from 0 to 65535"},
           {"DYN_TCP_RPC_PORT", "65536", "an integer from 0 to 65535"},
           {"DYN_HTTP_RPC_PORT", "http", "an integer from 0 to 65535"},
           {"DYN_TCP_RPC_HOST", "not a host", "address or a host name"},
           {"DYN_HTTP_RPC_HOST", "-bad-.example", "address or a host name"},
           {"DYN_TCP_MAX_MESSAGE_SIZE", "0", "a size from 1"},
           {"DYN_TCP_MAX_MESSAGE_SIZE", "32MB", "a size from 1"},
           {"DYN_TCP_MAX_MESSAGE_SIZE", "3GiB", "a size from 1"},
           {"DYN_TCP_MAX_MESSAGE_SIZE", "-1", "a size from 1"},
           {"DYN_TCP_REQUEST_TIMEOUT", "0", "a positive duration"},
           {"DYN_TCP_REQUEST_TIMEOUT", "10x", "a positive duration"},
           {"DYN_TCP_REQUEST_TIMEOUT", "1.5", "a positive duration"},
           {"DYN_TCP_CONNECT_TIMEOUT", "-5", "a positive duration"},
           {"DYN_TCP_POOL_SIZE", "0", "an integer from 1 to"},
           {"DYN_TCP_CHANNEL_BUFFER", "abc", "an integer from 1 to"},
           {"DYN_HTTP_RPC_ROOT_PATH", "", "a path starting with '/'"},
           {"DYN_HTTP_RPC_ROOT_PATH", "v1/rpc", "a path starting with '/'"},
           {"DYN_HTTP_RPC_ROOT_PATH", "/v1//rpc", "a path starting with '/'"},
           {"DYN_HTTP2_MAX_FRAME_SIZE", "1024", "a size from 16384"},
           {"DYN_HTTP2_MAX_FRAME_SIZE", "16MiB", "a size from 16384"},
           {"DYN_HTTP2_MAX_CONCURRENT_STREAMS", "0", "an integer from 1"},
           {"DYN_HTTP2_POOL_MAX_IDLE_PER_HOST", "-5", "an integer from 0"},
           {"DYN_HTTP2_POOL_IDLE_TIMEOUT_SECS", "abc", "an integer from 0"},
           {"DYN_HTTP2_KEEP_ALIVE_INTERVAL_SECS", "0", "an integer from 1"},
           {"DYN_HTTP2_KEEP_ALIVE_TIMEOUT_SECS", "10x", "an integer from 1"},
           {"DYN_HTTP2_ADAPTIVE_WINDOW", "maybe", "true or false"},
           {"NATS_SERVER", "localhost:4222", "nats://host[:port]"},
           {"NATS_SERVER", "nats://", "nats://host[:port]"},
           {"NATS_SERVER", "nats://localhost:99999", "nats://host[:port]"},
           {"NATS_SERVER", "http://localhost:4222", "nats://host[:port]"},
           {"DYN_HTTP_MAX_MESSAGE_SIZE", "0", "a size from 1"},
           {"DYN_HTTP_REQUEST_TIMEOUT", "soon", "a positive duration"},
           {"DYN_NAMESPACE", "a b", "NATS subject tokens"},
           {"DYN_NAMESPACE", "prod.*", "NATS subject tokens"},
           {"DYN_NAMESPACE", ".prod", "NATS subject tokens"},
           {"DYN_NATS_MAX_MESSAGE_SIZE", "1MB", "a size from 1"},
           {"DYN_NATS_REQUEST_TIMEOUT", "0", "a positive duration"},
       }) {
    SCOPED_TRACE(c.name + "=" + c.value);
    absl::StatusOr<Config> config = Parse({{c.name, c.value}});
    EXPECT_THAT(config,
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(c.name + "='" + c.value + "'"),
                               HasSubstr(c.allowed))));
  }
}

TEST(Config, NatsPasswordNeedsAUserAndIsNotEchoed) {
  absl::StatusOr<Config> config = Parse({{"NATS_AUTH_PASSWORD", "hunter2"}});
  EXPECT_THAT(config, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("NATS_AUTH_USERNAME")));
  EXPECT_THAT(config.status().message(), Not(HasSubstr("hunter2")));
}

TEST(Config, ReportsEveryErrorAtOnce) {
  absl::StatusOr<Config> c = Parse({{"DYN_REQUEST_PLANE", "tpc"},
                                    {"DYN_TCP_RPC_PORT", "abc"},
                                    {"DYN_TCP_POOL_SIZE", "0"}});
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr("Invalid request plane mode: 'tpc'"),
                                HasSubstr("DYN_TCP_RPC_PORT='abc'"),
                                HasSubstr("DYN_TCP_POOL_SIZE='0'"))));
}

TEST(Config, AcceptsNatsUrlForms) {
  for (const char* url :
       {"nats://localhost:4222", "nats://localhost", "tls://10.0.0.1:4443",
        "nats://user:pass@host.example:4222",
        "nats://a:4222, nats://b:4222", "nats://[::1]:4222"}) {
    SCOPED_TRACE(url);
    EXPECT_THAT(Parse({{"NATS_SERVER", url}}), IsOk());
  }
}

TEST(Config, FromEnvironmentReadsTheProcessEnvironment) {
  ASSERT_EQ(setenv("DYN_TCP_POOL_SIZE", "3", 1), 0);
  absl::StatusOr<Config> c = Config::FromEnvironment();
  unsetenv("DYN_TCP_POOL_SIZE");
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->tcp.pool_size, 3u);
}

TEST(PickHostAddress, PrefersFirstUpNonLoopbackIpv4) {
  EXPECT_EQ(PickHostAddress({{"lo", "127.0.0.1", true, true},
                             {"eth0", "fd00::5", false, true},
                             {"eth1", "192.0.2.7", false, false},
                             {"eth2", "198.51.100.4", false, true}}),
            "198.51.100.4");
}

TEST(PickHostAddress, FallsBackToIpv6ThenLoopback) {
  EXPECT_EQ(PickHostAddress({{"lo", "::1", true, true},
                             {"eth0", "fe80::1", false, true},
                             {"eth1", "2001:db8::9", false, true}}),
            "2001:db8::9");
  EXPECT_EQ(PickHostAddress({{"lo", "127.0.0.1", true, true}}), "127.0.0.1");
  EXPECT_EQ(PickHostAddress({}), "127.0.0.1");
}

TEST(DetectHostAddress, ReturnsANumericAddressOfThisHost) {
  // Only inspects the interface list; sends nothing to the address.
  std::string address = DetectHostAddress();
  absl::StatusOr<Config> c = Parse({{"DYN_TCP_RPC_HOST", address}});
  EXPECT_THAT(c, IsOk()) << address;
  EXPECT_FALSE(address.empty());
}

TEST(ConfigTest, APortSaysWhetherTheEnvironmentSetIt) {
  absl::StatusOr<Config> defaults = Parse({});
  ASSERT_THAT(defaults, IsOk());
  EXPECT_FALSE(defaults->tcp.port_from_environment);
  EXPECT_FALSE(defaults->http.port_from_environment);
  absl::StatusOr<Config> set =
      Parse({{"DYN_TCP_RPC_PORT", "5000"}, {"DYN_HTTP_RPC_PORT", "8888"}});
  ASSERT_THAT(set, IsOk());
  EXPECT_TRUE(set->tcp.port_from_environment);
  EXPECT_TRUE(set->http.port_from_environment);
}

Config::Lookup NoVariables() {
  return [](std::string_view) -> std::optional<std::string> {
    return std::nullopt;
  };
}

TEST(ConfigTest, AMisspeltVariableIsNamedWithTheOneMeant) {
  std::vector<std::string> warnings = Config::UnknownVariableWarnings(
      {"DYN_REQUEST_PLAN", "NATS_SERVR", "DYN_TCP_RPC_PROT", "PATH", "HOME"},
      NoVariables());
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_THAT(warnings[0], AllOf(HasSubstr("DYN_REQUEST_PLAN is not a dynrpc "
                                           "variable"),
                                 HasSubstr("did you mean DYN_REQUEST_PLANE?")));
  EXPECT_THAT(warnings[1], HasSubstr("did you mean NATS_SERVER?"));
  EXPECT_THAT(warnings[2], HasSubstr("did you mean DYN_TCP_RPC_PORT?"));
}

TEST(ConfigTest, KnownAndUnrelatedVariablesGetNoWarning) {
  EXPECT_THAT(
      Config::UnknownVariableWarnings(
          {"DYN_REQUEST_PLANE", "NATS_SERVER", "DYN_HTTP2_ADAPTIVE_WINDOW",
           "DYN_NAMESPACE", "DYN_MY_APPLICATION_SETTING", "NATS_FOO", "PATH",
           "DYN_IGNORE_UNKNOWN_VARIABLES"},
          NoVariables()),
      ::testing::IsEmpty());
}

TEST(ConfigTest, UnknownVariableWarningsCanBeSilenced) {
  Config::Lookup ignore = [](std::string_view name)
      -> std::optional<std::string> {
    if (name == "DYN_IGNORE_UNKNOWN_VARIABLES") return "true";
    return std::nullopt;
  };
  EXPECT_THAT(Config::UnknownVariableWarnings({"DYN_REQUEST_PLAN"}, ignore),
              ::testing::IsEmpty());
}

// What a user who typed DYN_REQUEST_PLAN=http sees when the process reads
// its environment (and the plane stays the default).
TEST(ConfigTest, TheEnvironmentsMisspeltVariablesAreReportedOnStderr) {
  ASSERT_EQ(setenv("DYN_REQUEST_PLAN", "http", 1), 0);
  ::testing::internal::CaptureStderr();
  absl::StatusOr<Config> config = Config::FromEnvironment();
  std::string printed = ::testing::internal::GetCapturedStderr();
  unsetenv("DYN_REQUEST_PLAN");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->request_plane, RequestPlaneKind::kTcp);
  EXPECT_THAT(printed, HasSubstr("dynrpc: warning: DYN_REQUEST_PLAN is not a "
                                 "dynrpc variable and is ignored; did you "
                                 "mean DYN_REQUEST_PLANE?"));
}

}  // namespace
}  // namespace dynrpc

namespace dynrpc {
namespace {

TEST(DiscoveryConfigTest, DefaultsAndEveryVariable) {
  absl::StatusOr<Config> d = Parse({});
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->discovery.backend, DiscoveryBackend::kFile);
  EXPECT_EQ(d->discovery.name_space, "dynamo");
  EXPECT_EQ(d->discovery.file_dir, "");  // $TMPDIR/dynrpc-discovery
  EXPECT_EQ(d->discovery.etcd_endpoints,
            std::vector<std::string>{"http://localhost:2379"});
  EXPECT_EQ(d->discovery.lease_ttl, std::chrono::seconds(10));
  EXPECT_TRUE(d->discovery.register_servers);
  EXPECT_EQ(d->graceful_shutdown_timeout, std::chrono::seconds(30));

  absl::StatusOr<Config> c = Parse({
      {"DYN_DISCOVERY_BACKEND", "ETCD"},
      {"DYN_NAMESPACE", "prod"},
      {"DYN_FILE_KV", "/var/run/kv"},
      {"ETCD_ENDPOINTS", "http://10.0.0.1:2379, http://[::1]:2379"},
      {"DYN_DISCOVERY_LEASE_TTL", "3s"},
      {"DYN_DISCOVERY_REGISTER", "false"},
      {"DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT", "5"},
  });
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->discovery.backend, DiscoveryBackend::kEtcd);
  EXPECT_EQ(c->discovery.name_space, "prod");
  EXPECT_EQ(c->nats.name_space, "prod");
  EXPECT_EQ(c->discovery.file_dir, "/var/run/kv");
  EXPECT_EQ(c->discovery.etcd_endpoints,
            (std::vector<std::string>{"http://10.0.0.1:2379",
                                      "http://[::1]:2379"}));
  EXPECT_EQ(c->discovery.lease_ttl, std::chrono::seconds(3));
  EXPECT_FALSE(c->discovery.register_servers);
  EXPECT_EQ(c->graceful_shutdown_timeout, std::chrono::seconds(5));
}

TEST(DiscoveryConfigTest, AnUnknownBackendNamesTheValidOnes) {
  EXPECT_THAT(Parse({{"DYN_DISCOVERY_BACKEND", "consul"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("Invalid discovery backend: 'consul' "
                                 "(DYN_DISCOVERY_BACKEND). Valid options "
                                 "are: 'file', 'etcd'")));
}

TEST(DiscoveryConfigTest, MalformedValuesNameTheVariable) {
  EXPECT_THAT(Parse({{"DYN_FILE_KV", "relative/dir"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("DYN_FILE_KV='relative/dir'"),
                             HasSubstr("absolute"))));
  for (const char* bad : {"localhost:2379", "https://h:2379", "http://h",
                          "http://h:0", "http://h:2379,ftp://x:1"}) {
    EXPECT_THAT(Parse({{"ETCD_ENDPOINTS", bad}}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("ETCD_ENDPOINTS"),
                               HasSubstr("http://host:port"))))
        << bad;
  }
  EXPECT_THAT(Parse({{"DYN_DISCOVERY_LEASE_TTL", "500ms"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("DYN_DISCOVERY_LEASE_TTL"),
                             HasSubstr("at least 1s"))));
  EXPECT_THAT(Parse({{"DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT", "soon"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT='soon'")));
}

TEST(CompressionConfigTest, DefaultsVariablesAndErrors) {
  absl::StatusOr<Config> d = Parse({});
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->compression, Compression::kIdentity);
  EXPECT_EQ(d->compression_min_bytes, 1024u);
  absl::StatusOr<Config> c = Parse(
      {{"DYN_COMPRESSION", "GZip"}, {"DYN_COMPRESSION_MIN_BYTES", "4KiB"}});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->compression, Compression::kGzip);
  EXPECT_EQ(c->compression_min_bytes, 4096u);
  EXPECT_THAT(Parse({{"DYN_COMPRESSION", "brotli"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("DYN_COMPRESSION='brotli'"),
                             HasSubstr("identity, deflate or gzip"))));
  EXPECT_THAT(Parse({{"DYN_COMPRESSION_MIN_BYTES", "-1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("DYN_COMPRESSION_MIN_BYTES")));
}

TEST(SystemConfigTest, PortAndHost) {
  absl::StatusOr<Config> d = Parse({});
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->system_port, std::nullopt);  // off
  EXPECT_EQ(d->system_host, "127.0.0.1");
  absl::StatusOr<Config> c =
      Parse({{"DYN_SYSTEM_PORT", "9090"}, {"DYN_SYSTEM_HOST", "0.0.0.0"}});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->system_port, 9090);
  EXPECT_EQ(c->system_host, "0.0.0.0");
  absl::StatusOr<Config> any = Parse({{"DYN_SYSTEM_PORT", "0"}});
  ASSERT_THAT(any, IsOk());
  EXPECT_EQ(any->system_port, 0);
  EXPECT_THAT(Parse({{"DYN_SYSTEM_PORT", "70000"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("DYN_SYSTEM_PORT='70000'"),
                             HasSubstr("from 0 to 65535"))));
  EXPECT_THAT(Parse({{"DYN_SYSTEM_HOST", "not a host"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("DYN_SYSTEM_HOST")));
}

}  // namespace
}  // namespace dynrpc
