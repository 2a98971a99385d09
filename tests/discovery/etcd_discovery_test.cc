// The etcd backend, against a real etcd (Debian's etcd-server), spoken
// through dynrpc's own HTTP/2 client: leases, keys per namespace, watches.
#include "discovery/etcd_discovery.h"

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dynrpc/context.h"
#include "dynrpc/runtime.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/etcd_server.h"
#include "support/nats_server.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"
#include "support/wait_for.h"

namespace dynrpc::internal {
namespace {

using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::WaitFor;
using ::dynrpc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kService[] = "dynrpc.testing.EchoService";

std::string NextNamespace() {
  static const std::string base =
      dynrpc::testing::UniqueNatsNamespace("etcd");
  static std::atomic<int> n{0};
  return base + "_" + std::to_string(n++);
}

// Records what a watch delivers.
class Recorder {
 public:
  InstancesCallback callback() {
    return [this](absl::StatusOr<std::vector<Instance>> listed) {
      std::lock_guard lock(mu_);
      if (listed.ok()) {
        sizes_.push_back(listed->size());
        last_ = *listed;
      } else {
        errors_.push_back(listed.status());
      }
    };
  }
  bool Saw(std::size_t size) {
    return WaitFor(
        [&] {
          std::lock_guard lock(mu_);
          return !sizes_.empty() && sizes_.back() == size;
        },
        std::chrono::seconds(10));
  }
  std::vector<Instance> last() {
    std::lock_guard lock(mu_);
    return last_;
  }

 private:
  std::mutex mu_;
  std::vector<std::size_t> sizes_;
  std::vector<Instance> last_;
  std::vector<absl::Status> errors_;
};

class EtcdDiscoveryTest : public ::testing::Test {
 protected:
  EtcdDiscoveryTest() {
    config_.backend = DiscoveryBackend::kEtcd;
    config_.etcd_endpoints = {dynrpc::testing::SharedEtcdEndpoint()};
    config_.name_space = NextNamespace();
    config_.lease_ttl = std::chrono::seconds(2);
  }

  std::shared_ptr<Discovery> NewDiscovery() {
    absl::StatusOr<std::shared_ptr<Discovery>> d =
        CreateEtcdDiscovery(config_, runtime_.executor());
    EXPECT_THAT(d, IsOk());
    return *d;
  }

  static Instance Make(uint64_t id, std::string address) {
    Instance i;
    i.service = kService;
    i.id = id;
    i.plane = "http";
    i.address = std::move(address);
    i.start_time_unix_ms = 42;
    return i;
  }

  std::unique_ptr<dynrpc::testing::Subprocess> StartProcess() {
    auto p = std::make_unique<dynrpc::testing::Subprocess>(
        DYNRPC_ECHO_SERVER_PATH, std::vector<std::string>{},
        std::vector<std::string>{
            "DYN_REQUEST_PLANE=tcp", "DYN_TCP_RPC_HOST=127.0.0.1",
            "DYN_NAMESPACE=" + config_.name_space,
            "DYN_DISCOVERY_BACKEND=etcd",
            "ETCD_ENDPOINTS=" + config_.etcd_endpoints[0],
            "DYN_DISCOVERY_LEASE_TTL=2s"});
    std::optional<std::string> line = p->ReadLine(std::chrono::seconds(20));
    EXPECT_TRUE(line.has_value() && line->starts_with("listening"))
        << line.value_or("(no output)");
    return p;
  }

  DiscoveryConfig config_;
  Runtime runtime_{2};
};

TEST_F(EtcdDiscoveryTest, RegistersWatchesAndDeregisters) {
  std::shared_ptr<Discovery> discovery = NewDiscovery();
  Recorder seen;
  std::unique_ptr<WatchHandle> watch =
      discovery->Watch(kService, seen.callback());
  EXPECT_TRUE(seen.Saw(0));
  absl::StatusOr<std::unique_ptr<Registration>> one =
      discovery->Register({Make(1, "127.0.0.1:1001")});
  ASSERT_THAT(one, IsOk());
  EXPECT_TRUE(seen.Saw(1));
  absl::StatusOr<std::unique_ptr<Registration>> two =
      discovery->Register({Make(2, "127.0.0.1:1002")});
  ASSERT_THAT(two, IsOk());
  EXPECT_TRUE(seen.Saw(2));
  std::vector<Instance> listed = seen.last();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[1].id, 2u);
  EXPECT_EQ(listed[1].address, "127.0.0.1:1002");
  EXPECT_EQ(listed[1].plane, "http");
  EXPECT_EQ(listed[1].start_time_unix_ms, 42);
  (*one)->Deregister();
  EXPECT_TRUE(seen.Saw(1));
  EXPECT_EQ(seen.last()[0].id, 2u);
  // The keepalive holds the other past its 2 s lease.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_EQ(seen.last().size(), 1u);
  // A second watcher starts from what is there now.
  Recorder late;
  std::unique_ptr<WatchHandle> late_watch =
      NewDiscovery()->Watch(kService, late.callback());
  EXPECT_TRUE(late.Saw(1));
}

TEST_F(EtcdDiscoveryTest, AKilledProcessExpiresWithItsLease) {
  std::shared_ptr<Discovery> discovery = NewDiscovery();
  Recorder seen;
  std::unique_ptr<WatchHandle> watch =
      discovery->Watch(kService, seen.callback());
  std::unique_ptr<dynrpc::testing::Subprocess> p = StartProcess();
  ASSERT_TRUE(seen.Saw(1));
  p->Kill();
  // Gone once its 2 s lease expires (etcd checks leases about every
  // 500 ms).
  Clock::time_point killed = Clock::now();
  EXPECT_TRUE(seen.Saw(0));
  EXPECT_LE(Clock::now() - killed, std::chrono::seconds(5));
}

TEST_F(EtcdDiscoveryTest, ManyProcessesRegisterAtOnce) {
  constexpr int kProcesses = 8;
  std::shared_ptr<Discovery> discovery = NewDiscovery();
  Recorder seen;
  std::unique_ptr<WatchHandle> watch =
      discovery->Watch(kService, seen.callback());
  std::vector<std::unique_ptr<dynrpc::testing::Subprocess>> processes;
  std::vector<std::thread> starters;
  std::mutex mu;
  for (int i = 0; i < kProcesses; ++i) {
    starters.emplace_back([&] {
      auto p = StartProcess();
      std::lock_guard lock(mu);
      processes.push_back(std::move(p));
    });
  }
  for (auto& t : starters) t.join();
  EXPECT_TRUE(seen.Saw(kProcesses));
  processes.clear();  // killed
  EXPECT_TRUE(seen.Saw(0));
}

TEST_F(EtcdDiscoveryTest, AnUnreachableEtcdIsAClearError) {
  config_.etcd_endpoints = {absl::StrCat(
      "http://127.0.0.1:", dynrpc::testing::FreeLoopbackPort())};
  std::shared_ptr<Discovery> discovery = NewDiscovery();
  absl::StatusOr<std::unique_ptr<Registration>> r =
      discovery->Register({Make(1, "127.0.0.1:1")});
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable,
                          AllOf(HasSubstr(config_.etcd_endpoints[0]),
                                HasSubstr("ETCD_ENDPOINTS"))));
}

TEST_F(EtcdDiscoveryTest, AConfigBuiltInCodeIsCheckedToo) {
  Config config;
  config.discovery = config_;
  config.discovery.etcd_endpoints = {};
  EXPECT_THAT(CreateDiscovery(config, runtime_.executor()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ETCD_ENDPOINTS is empty")));
  config.discovery.etcd_endpoints = {"localhost:2379"};
  EXPECT_THAT(CreateDiscovery(config, runtime_.executor()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ETCD_ENDPOINTS entry 'localhost:2379'")));
  config.discovery.etcd_endpoints = config_.etcd_endpoints;
  config.discovery.lease_ttl = std::chrono::milliseconds(2);
  EXPECT_THAT(CreateDiscovery(config, runtime_.executor()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("DYN_DISCOVERY_LEASE_TTL=2ms")));
}

}  // namespace
}  // namespace dynrpc::internal
