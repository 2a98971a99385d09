// Channels bound to a service (Channel::ForService) on every request plane:
// discovery through the file backend, the routing policies, faults and the
// one retry, health, and graceful drain under load.
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "dynrpc/testing/echo.dynrpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.dynrpc.pb.h"
#include "gtest/gtest.h"
#include "support/echo_service.h"
#include "support/etcd_server.h"
#include "support/nats_server.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"
#include "support/wait_for.h"

namespace dynrpc {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoService;
using ::dynrpc::testing::EchoServiceImpl;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::WaitFor;
using ::dynrpc::testing::StatusIs;
using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kService[] = "dynrpc.testing.EchoService";

const std::string& Namespace() {
  static const std::string name_space =
      dynrpc::testing::UniqueNatsNamespace("routing");
  return name_space;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "dynrpc-routing-XXXXXX")
            .string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Config ConfigFor(RequestPlaneKind plane, const std::string& dir,
                 DiscoveryBackend backend = DiscoveryBackend::kFile,
                 const std::string& name_space = Namespace()) {
  Config config;
  config.request_plane = plane;
  config.tcp.host = "127.0.0.1";
  config.http.host = "127.0.0.1";
  config.http.port = 0;
  config.nats.server = plane == RequestPlaneKind::kNats
                           ? dynrpc::testing::SharedNatsUrl()
                           : config.nats.server;
  config.nats.name_space = name_space;
  config.discovery.name_space = name_space;
  config.discovery.backend = backend;
  config.discovery.file_dir = dir;
  if (backend == DiscoveryBackend::kEtcd) {
    config.discovery.etcd_endpoints = {dynrpc::testing::SharedEtcdEndpoint()};
  }
  config.discovery.lease_ttl = std::chrono::seconds(2);
  return config;
}

struct Setup {
  RequestPlaneKind plane;
  DiscoveryBackend backend;
};

// One server instance in this process, with its own service (so each
// counts its own calls).
struct Worker {
  EchoServiceImpl service;
  std::unique_ptr<Server> server;
};

class RoutingTest : public ::testing::TestWithParam<Setup> {
 protected:
  RequestPlaneKind plane() const { return GetParam().plane; }
  Config config() const {
    return ConfigFor(plane(), dir_.path(), GetParam().backend, name_space_);
  }

  // `n` workers, and a channel to the service once it lists all of them.
  std::vector<Worker*> StartWorkers(int n, ChannelOptions options,
                                    std::shared_ptr<Channel>& channel) {
    std::vector<Worker*> started;
    for (int i = 0; i < n; ++i) started.push_back(&StartWorker());
    channel = ServiceChannel(std::move(options));
    EXPECT_TRUE(Lists(*channel, n));
    return started;
  }

  Worker& StartWorker(std::optional<Config> config = std::nullopt) {
    auto worker = std::make_unique<Worker>();
    worker->server = std::make_unique<Server>(runtime_.executor(),
                                              config.value_or(this->config()));
    EXPECT_THAT(worker->server->AddService(worker->service), IsOk());
    EXPECT_THAT(worker->server->Start(), IsOk());
    workers_.push_back(std::move(worker));
    return *workers_.back();
  }

  std::shared_ptr<Channel> ServiceChannel(ChannelOptions options = {}) {
    absl::StatusOr<std::shared_ptr<Channel>> channel = Channel::ForService(
        runtime_.executor(), kService, std::move(options), config());
    EXPECT_THAT(channel, IsOk());
    return *channel;
  }

  // Waits until `channel` lists `n` instances.
  static bool Lists(Channel& channel, std::size_t n) {
    return WaitFor([&] { return channel.instances().size() == n; },
                   std::chrono::seconds(5));
  }

  // `n` Echo calls, one after another; the statuses that were not OK.
  std::vector<absl::Status> Calls(std::shared_ptr<Channel> channel, int n,
                                  std::optional<uint64_t> instance = {}) {
    auto run = [](std::shared_ptr<Channel> channel, int n,
                  std::optional<uint64_t> instance)
        -> asio::awaitable<std::vector<absl::Status>> {
      EchoService::Stub stub(channel);
      std::vector<absl::Status> failed;
      for (int i = 0; i < n; ++i) {
        ClientContext context;
        if (instance) context.set_instance_id(*instance);
        EchoRequest request;
        request.set_text("hi");
        absl::StatusOr<EchoReply> reply = co_await stub.Echo(context, request);
        if (!reply.ok()) failed.push_back(reply.status());
      }
      co_return failed;
    };
    return runtime_.Run(run(std::move(channel), n, instance));
  }

  // Each test its own (an etcd keeps the last test's expiring entries).
  static std::string NextNamespace() {
    static std::atomic<int> n{0};
    return Namespace() + "_" + std::to_string(n++);
  }

  TempDir dir_;
  const std::string name_space_ = NextNamespace();
  Runtime runtime_{2};
  std::vector<std::unique_ptr<Worker>> workers_;
};

TEST_P(RoutingTest, RoundRobinSplitsCallsEvenly) {
  std::shared_ptr<Channel> channel;
  std::vector<Worker*> workers = StartWorkers(3, {}, channel);
  EXPECT_THAT(Calls(channel, 1000), ::testing::IsEmpty());
  std::vector<int> split;
  for (Worker* w : workers) split.push_back(w->service.calls());
  std::sort(split.begin(), split.end());
  EXPECT_THAT(split, ::testing::ElementsAre(333, 333, 334));
}

TEST_P(RoutingTest, RandomSpreadsCallsOverEveryInstance) {
  ChannelOptions options;
  options.policy = RoutingPolicy::kRandom;
  std::shared_ptr<Channel> channel;
  std::vector<Worker*> workers = StartWorkers(3, options, channel);
  EXPECT_THAT(Calls(channel, 1000), ::testing::IsEmpty());
  // Each share is binomial(1000, 1/3): 333 ± 15; these bounds are ±5.5
  // standard deviations.
  int total = 0;
  for (Worker* w : workers) {
    EXPECT_THAT(w->service.calls(),
                AllOf(::testing::Ge(250), ::testing::Le(417)));
    total += w->service.calls();
  }
  EXPECT_EQ(total, 1000);
}

TEST_P(RoutingTest, LeastLoadedAvoidsTheBusyInstance) {
  ChannelOptions options;
  options.policy = RoutingPolicy::kLeastLoaded;
  std::shared_ptr<Channel> channel;
  std::vector<Worker*> workers = StartWorkers(3, options, channel);
  Worker& busy = *workers[0];
  Worker& b = *workers[1];
  Worker& c = *workers[2];
  // Eight slow calls held on one instance, through the same channel.
  EchoService::Stub stub(channel);
  std::vector<std::unique_ptr<ClientContext>> held;
  std::vector<std::future<absl::StatusOr<EchoReply>>> blocked;
  EchoRequest block;
  for (int i = 0; i < 8; ++i) {
    held.push_back(std::make_unique<ClientContext>());
    held.back()->set_instance_id(busy.server->instance_id());
    blocked.push_back(
        CallAsFuture(runtime_.executor(), &stub, &EchoService::Stub::Block,
                     *held.back(), block));
  }
  busy.service.WaitForBlocked(8);
  // Of any two instances, the busy one has more in flight: never picked.
  EXPECT_THAT(Calls(channel, 300), ::testing::IsEmpty());
  EXPECT_EQ(busy.service.calls(), 8);
  EXPECT_EQ(b.service.calls() + c.service.calls(), 300);
  // Both others got calls: the choice is random among the idle.
  EXPECT_GT(b.service.calls(), 50);
  EXPECT_GT(c.service.calls(), 50);
  busy.service.ReleaseAll();
  for (auto& f : blocked) EXPECT_THAT(f.get(), IsOk());
}

TEST_P(RoutingTest, DirectSendsEachCallToTheNamedInstance) {
  StartWorker();
  Worker& b = StartWorker();
  ChannelOptions options;
  options.policy = RoutingPolicy::kDirect;
  std::shared_ptr<Channel> channel = ServiceChannel(options);
  ASSERT_TRUE(Lists(*channel, 2));
  EXPECT_THAT(Calls(channel, 50, b.server->instance_id()),
              ::testing::IsEmpty());
  EXPECT_EQ(b.service.calls(), 50);

  // No instance named: the direct policy cannot choose.
  std::vector<absl::Status> unnamed = Calls(channel, 1);
  ASSERT_EQ(unnamed.size(), 1u);
  EXPECT_THAT(unnamed[0], StatusIs(absl::StatusCode::kInvalidArgument,
                                   HasSubstr("set_instance_id")));
  // An instance that is not registered.
  std::vector<absl::Status> unknown = Calls(channel, 1, 42);
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_THAT(unknown[0], StatusIs(absl::StatusCode::kUnavailable,
                                   HasSubstr("not registered")));
}

TEST_P(RoutingTest, TheContextSaysWhichInstanceServedTheCall) {
  Worker& a = StartWorker();
  std::shared_ptr<Channel> channel = ServiceChannel();
  ASSERT_TRUE(Lists(*channel, 1));
  EchoService::Stub stub(channel);
  ClientContext context;
  EchoRequest request;
  EXPECT_THAT(runtime_.Run(stub.Echo(context, request)), IsOk());
  EXPECT_EQ(context.routed_to(), a.server->instance_id());
}

TEST_P(RoutingTest, ANewInstanceTakesCallsWithinASecond) {
  StartWorker();
  std::shared_ptr<Channel> channel = ServiceChannel();
  ASSERT_TRUE(Lists(*channel, 1));
  EXPECT_THAT(Calls(channel, 10), ::testing::IsEmpty());
  Worker& late = StartWorker();
  Clock::time_point started = Clock::now();
  while (late.service.calls() == 0 &&
         Clock::now() - started < std::chrono::seconds(1)) {
    ASSERT_THAT(Calls(channel, 2), ::testing::IsEmpty());
  }
  EXPECT_GT(late.service.calls(), 0)
      << "no call reached the new instance within a second";
}

TEST_P(RoutingTest, AnInstanceThatShutsDownIsNotPickedAndNoCallFails) {
  Worker& a = StartWorker();
  Worker& b = StartWorker();
  std::shared_ptr<Channel> channel = ServiceChannel();
  ASSERT_TRUE(Lists(*channel, 2));
  EXPECT_THAT(Calls(channel, 20), ::testing::IsEmpty());
  a.server->Shutdown();
  int a_calls = a.service.calls();
  // At once, before the watch has seen it go: its refusals are retried.
  EXPECT_THAT(Calls(channel, 100), ::testing::IsEmpty());
  EXPECT_EQ(a.service.calls(), a_calls);
  EXPECT_TRUE(Lists(*channel, 1));
  EXPECT_EQ(channel->instances()[0].id, b.server->instance_id());
}

TEST_P(RoutingTest, AKilledInstanceIsSkippedWithNoCallLost) {
  StartWorker();
  StartWorker();
  std::vector<std::string> env = {
      "DYN_REQUEST_PLANE=" + std::string(RequestPlaneName(plane())),
      "DYN_TCP_RPC_HOST=127.0.0.1", "DYN_HTTP_RPC_HOST=127.0.0.1",
      "DYN_HTTP_RPC_PORT=0", "DYN_NAMESPACE=" + name_space_,
      "DYN_FILE_KV=" + dir_.path(), "DYN_DISCOVERY_LEASE_TTL=30s",
      "DYN_DISCOVERY_BACKEND=" +
          std::string(DiscoveryBackendName(GetParam().backend)),
      "ETCD_ENDPOINTS=" + config().discovery.etcd_endpoints[0]};
  if (plane() == RequestPlaneKind::kNats) {
    env.push_back("NATS_SERVER=" + dynrpc::testing::SharedNatsUrl());
  }
  dynrpc::testing::Subprocess victim(DYNRPC_ECHO_SERVER_PATH, {}, env);
  std::optional<std::string> line = victim.ReadLine(std::chrono::seconds(10));
  ASSERT_TRUE(line.has_value());
  ASSERT_THAT(*line, HasSubstr("listening"));
  std::shared_ptr<Channel> channel = ServiceChannel();
  ASSERT_TRUE(Lists(*channel, 3));
  EXPECT_THAT(Calls(channel, 30), ::testing::IsEmpty());
  std::string victim_address;
  for (const Instance& instance : channel->instances()) {
    if (instance.id != workers_[0]->server->instance_id() &&
        instance.id != workers_[1]->server->instance_id()) {
      victim_address = instance.address;
    }
  }
  ASSERT_FALSE(victim_address.empty());
  victim.Kill();
  if (plane() == RequestPlaneKind::kNats) {
    // A NATS server forgets a killed subscriber only once it reads the
    // closed socket; a request it routes there before then is lost with the
    // process, and its caller, who cannot know it was not processed, gets
    // UNAVAILABLE after the heartbeat (CI saw one). From the moment the
    // server refuses the victim's subjects, the promise below holds: wait
    // for that, with real requests, each on a channel of its own.
    EXPECT_TRUE(WaitFor(
        [&] {
          absl::StatusOr<std::shared_ptr<Channel>> direct =
              Channel::Create(runtime_.executor(), victim_address, config());
          if (!direct.ok()) return false;
          std::vector<absl::Status> failed = Calls(*direct, 1);
          return failed.size() == 1 &&
                 absl::StrContains(failed[0].message(),
                                   "no server subscribes");
        },
        std::chrono::seconds(30)));
  }
  // Its entry stays (a 30 s lease), but every call it gets is refused
  // before it could be processed: marked down, retried elsewhere.
  EXPECT_THAT(Calls(channel, 300), ::testing::IsEmpty());
  EXPECT_EQ(channel->instances().size(), 3u);
  EXPECT_EQ(workers_[0]->service.calls() + workers_[1]->service.calls(), 320);
}

TEST_P(RoutingTest, ACallItsHandlerFailedIsNotRetried) {
  Worker& a = StartWorker();
  Worker& b = StartWorker();
  std::shared_ptr<Channel> channel = ServiceChannel();
  ASSERT_TRUE(Lists(*channel, 2));
  EchoService::Stub stub(channel);
  ClientContext context;
  dynrpc::testing::FailRequest fail;
  fail.set_code(static_cast<int>(absl::StatusCode::kUnavailable));
  fail.set_message("the handler says no");
  EXPECT_THAT(runtime_.Run(stub.Fail(context, fail)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("the handler says no")));
  EXPECT_EQ(a.service.calls() + b.service.calls(), 1);
  // Nor marked down: both still take calls.
  EXPECT_THAT(Calls(channel, 10), ::testing::IsEmpty());
  EXPECT_EQ(a.service.calls() + b.service.calls(), 11);
  EXPECT_GT(a.service.calls(), 1);
  EXPECT_GT(b.service.calls(), 1);
}

// A router of the application's own (dynrpc/routing.h) that counts its
// picks and takes the first candidate: a retry would pick twice.
class CountingRouter final : public Router {
 public:
  std::size_t Pick(std::span<const Candidate> candidates,
                   const ClientContext&) override {
    picks.fetch_add(1);
    return 0;
  }
  std::atomic<int> picks{0};
};

TEST_P(RoutingTest, CallsRefusedAsInvalidOrTooLargeAreNotRetried) {
  Config small = config();
  small.tcp.max_message_size = 1024;
  small.http.max_message_size = 1024;
  StartWorker(small);
  StartWorker(small);
  auto router = std::make_shared<CountingRouter>();
  ChannelOptions options;
  options.router = router;
  std::shared_ptr<Channel> channel = ServiceChannel(options);
  ASSERT_TRUE(Lists(*channel, 2));

  // A method no instance has: UNIMPLEMENTED, one pick.
  ClientContext unknown;
  EXPECT_THAT(runtime_.Run(channel->CallUnary(
                  unknown, "/dynrpc.testing.EchoService/Nope", "")),
              StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_EQ(router->picks.load(), 1);

  // Over the servers' limit (the NATS plane's limit is its sender's, so
  // this part is for the planes whose servers refuse it).
  if (plane() != RequestPlaneKind::kNats) {
    EchoService::Stub stub(channel);
    ClientContext large;
    EchoRequest request;
    request.set_payload(std::string(4096, 'x'));
    EXPECT_THAT(runtime_.Run(stub.Echo(large, request)),
                StatusIs(absl::StatusCode::kResourceExhausted));
    EXPECT_EQ(router->picks.load(), 2);
  }
  // Neither marked its instance down: both still take calls.
  int before = router->picks.load();
  EXPECT_THAT(Calls(channel, 4), ::testing::IsEmpty());
  EXPECT_EQ(router->picks.load(), before + 4);
  // All on the first candidate (the lower instance id).
  EXPECT_EQ(std::max(workers_[0]->service.calls(),
                     workers_[1]->service.calls()),
            4);
}

TEST_P(RoutingTest, NoInstanceIsUnavailableNamingTheService) {
  std::shared_ptr<Channel> channel = ServiceChannel();
  std::vector<absl::Status> failed = Calls(channel, 1);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_THAT(failed[0],
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("no instance of"), HasSubstr(kService),
                             HasSubstr(Namespace()))));
}

TEST_P(RoutingTest, StreamsAreRoutedToo) {
  Worker& a = StartWorker();
  Worker& b = StartWorker();
  std::shared_ptr<Channel> channel = ServiceChannel();
  ASSERT_TRUE(Lists(*channel, 2));
  EchoService::Stub stub(channel);
  auto run = [&]() -> asio::awaitable<absl::Status> {
    for (int i = 0; i < 4; ++i) {
      ClientContext context;
      dynrpc::testing::StreamRequest request;
      request.set_count(3);
      auto reader = stub.Generate(context, request);
      dynrpc::testing::StreamMessage message;
      int n = 0;
      while (co_await reader.Next(message)) ++n;
      if (absl::Status s = co_await reader.Finish(); !s.ok()) co_return s;
      if (n != 3) co_return absl::InternalError("lost messages");
    }
    co_return absl::OkStatus();
  };
  EXPECT_THAT(runtime_.Run(run()), IsOk());
  // Round robin: two streams of three messages each.
  EXPECT_EQ(a.service.generated(), 6);
  EXPECT_EQ(b.service.generated(), 6);
}

TEST_P(RoutingTest, HealthChecksAndWatchesEveryServiceAndTheServer) {
  Worker& a = StartWorker();
  absl::StatusOr<std::shared_ptr<Channel>> channel =
      Channel::Create(runtime_.executor(), a.server->address(), config());
  ASSERT_THAT(channel, IsOk());
  Health::Stub health(*channel);
  auto check = [&](std::string service) {
    ClientContext context;
    HealthCheckRequest request;
    request.set_service(std::move(service));
    return runtime_.Run(health.Check(context, request));
  };
  absl::StatusOr<HealthCheckResponse> overall = check("");
  ASSERT_THAT(overall, IsOk());
  EXPECT_EQ(overall->status(), HealthCheckResponse::SERVING);
  absl::StatusOr<HealthCheckResponse> echo = check(kService);
  ASSERT_THAT(echo, IsOk());
  EXPECT_EQ(echo->status(), HealthCheckResponse::SERVING);
  EXPECT_THAT(check("no.Such"), StatusIs(absl::StatusCode::kNotFound,
                                          HasSubstr("no.Such")));

  // Watch: SERVING now, NOT_SERVING once the server drains.
  ClientContext context;
  HealthCheckRequest request;
  request.set_service(kService);
  ClientReader<HealthCheckResponse> watch = health.Watch(context, request);
  HealthCheckResponse seen;
  ASSERT_TRUE(runtime_.Run(watch.Next(seen)));
  EXPECT_EQ(seen.status(), HealthCheckResponse::SERVING);
  // A held call keeps the drain going while the watch reads.
  EchoService::Stub stub(*channel);
  ClientContext held;
  EchoRequest block;
  auto blocked = CallAsFuture(runtime_.executor(), &stub,
                              &EchoService::Stub::Block, held, block);
  a.service.WaitForBlocked(1);
  std::thread drain([&] { a.server->Drain(std::chrono::seconds(30)); });
  bool next = runtime_.Run(watch.Next(seen));
  EXPECT_TRUE(next) << runtime_.Run(watch.Finish());
  if (next) {
    EXPECT_EQ(seen.status(), HealthCheckResponse::NOT_SERVING);
  }
  a.service.ReleaseAll();
  EXPECT_THAT(blocked.get(), IsOk());  // the drain let it finish
  drain.join();
}

TEST_P(RoutingTest, ShutdownEndsADrainAtOnce) {
  Worker& a = StartWorker();
  absl::StatusOr<std::shared_ptr<Channel>> channel =
      Channel::Create(runtime_.executor(), a.server->address(), config());
  ASSERT_THAT(channel, IsOk());
  EchoService::Stub stub(*channel);
  ClientContext held;
  EchoRequest block;
  auto blocked = CallAsFuture(runtime_.executor(), &stub,
                              &EchoService::Stub::Block, held, block);
  a.service.WaitForBlocked(1);
  std::promise<bool> drained;
  std::thread drain(
      [&] { drained.set_value(a.server->Drain(std::chrono::hours(1))); });
  // The drain has begun once health says so; then Shutdown() cuts it short
  // (the held call would keep it going for an hour).
  Health::Stub health(*channel);
  ASSERT_TRUE(WaitFor(
      [&] {
        ClientContext context;
        HealthCheckRequest request;
        absl::StatusOr<HealthCheckResponse> r =
            runtime_.Run(health.Check(context, request));
        return r.ok() && r->status() == HealthCheckResponse::NOT_SERVING;
      },
      std::chrono::seconds(10)));
  a.server->Shutdown();
  EXPECT_FALSE(drained.get_future().get());  // the call was cancelled
  drain.join();
  EXPECT_FALSE(blocked.get().ok());
}

TEST_P(RoutingTest, DrainingUnderLoadFailsNoCall) {
  Worker& a = StartWorker();
  Worker& b = StartWorker();
  std::shared_ptr<Channel> channel = ServiceChannel();
  ASSERT_TRUE(Lists(*channel, 2));
  std::atomic<bool> stop{false};
  std::atomic<int> started{0}, ok{0};
  std::mutex mu;
  std::vector<absl::Status> failed;
  auto client = [&]() -> asio::awaitable<void> {
    EchoService::Stub stub(channel);
    while (!stop.load()) {
      ClientContext context;
      EchoRequest request;
      request.set_delay_ms(5);  // calls stay in flight on the server
      started.fetch_add(1);
      absl::StatusOr<EchoReply> reply = co_await stub.Echo(context, request);
      if (reply.ok()) {
        ok.fetch_add(1);
      } else {
        std::lock_guard lock(mu);
        failed.push_back(reply.status());
      }
    }
  };
  std::vector<std::future<void>> clients;
  for (int i = 0; i < 64; ++i) {
    clients.push_back(
        asio::co_spawn(runtime_.executor(), client(), asio::use_future));
  }
  ASSERT_TRUE(WaitFor([&] { return a.service.calls() > 200; },
                      std::chrono::seconds(20)));
  EXPECT_TRUE(a.server->Drain(std::chrono::seconds(30)))
      << "calls in flight had to be cancelled";
  int b_after_drain = b.service.calls();
  ASSERT_TRUE(WaitFor([&] { return b.service.calls() > b_after_drain + 500; },
                      std::chrono::seconds(20)));
  stop.store(true);
  for (auto& c : clients) c.get();
  std::lock_guard lock(mu);
  EXPECT_THAT(failed, ::testing::IsEmpty());
  // Every call ended exactly once, well.
  EXPECT_EQ(ok.load(), started.load());
  EXPECT_EQ(a.service.calls() + b.service.calls(), started.load());
}

INSTANTIATE_TEST_SUITE_P(
    PlanesAndBackends, RoutingTest,
    ::testing::Values(Setup{RequestPlaneKind::kTcp, DiscoveryBackend::kFile},
                      Setup{RequestPlaneKind::kHttp, DiscoveryBackend::kFile},
                      Setup{RequestPlaneKind::kNats, DiscoveryBackend::kFile},
                      Setup{RequestPlaneKind::kTcp, DiscoveryBackend::kEtcd},
                      Setup{RequestPlaneKind::kHttp, DiscoveryBackend::kEtcd},
                      Setup{RequestPlaneKind::kNats, DiscoveryBackend::kEtcd}),
    [](const ::testing::TestParamInfo<Setup>& info) {
      return std::string(RequestPlaneName(info.param.plane)) + "_" +
             std::string(DiscoveryBackendName(info.param.backend));
    });

// The guide's most common misconfiguration, detected: a tcp client of a
// service whose instances serve on http.
TEST(PlaneMismatchTest, IsFailedPreconditionNamingBothPlanes) {
  TempDir dir;
  Runtime runtime(2);
  EchoServiceImpl service;
  Server server(runtime.executor(),
                ConfigFor(RequestPlaneKind::kHttp, dir.path()));
  ASSERT_THAT(server.AddService(service), IsOk());
  ASSERT_THAT(server.Start(), IsOk());
  absl::StatusOr<std::shared_ptr<Channel>> channel = Channel::ForService(
      runtime.executor(), kService, {},
      ConfigFor(RequestPlaneKind::kTcp, dir.path()));
  ASSERT_THAT(channel, IsOk());
  EchoService::Stub stub(*channel);
  ClientContext context;
  EchoRequest request;
  EXPECT_THAT(runtime.Run(stub.Echo(context, request)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("only on the http request plane"),
                             HasSubstr("this client uses tcp"),
                             HasSubstr("DYN_REQUEST_PLANE"))));
  EXPECT_EQ(service.calls(), 0);
}

}  // namespace
}  // namespace dynrpc
