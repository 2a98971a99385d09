// The file backend: entries written atomically by many processes, listed,
// watched, expired after their owner dies and cleaned.
#include "discovery/file_discovery.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dynrpc/context.h"
#include "dynrpc/runtime.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"
#include "support/wait_for.h"

namespace dynrpc::internal {
namespace {

using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::WaitFor;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kService[] = "dynrpc.testing.EchoService";

class FileDiscoveryTest : public ::testing::Test {
 protected:
  FileDiscoveryTest() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "dynrpc-kv-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
    config_.file_dir = dir_;
    config_.name_space = "test";
    config_.lease_ttl = std::chrono::seconds(1);
    discovery_ = std::make_shared<FileDiscovery>(config_, runtime_.executor());
  }
  ~FileDiscoveryTest() override { std::filesystem::remove_all(dir_); }

  static Instance Make(uint64_t id, std::string address) {
    Instance i;
    i.service = kService;
    i.id = id;
    i.plane = "tcp";
    i.address = std::move(address);
    i.start_time_unix_ms = 1;
    return i;
  }

  std::vector<uint64_t> ListedIds() {
    absl::StatusOr<std::vector<Instance>> listed = discovery_->List(kService);
    EXPECT_THAT(listed, IsOk());
    std::vector<uint64_t> ids;
    if (listed.ok()) {
      for (const Instance& i : *listed) ids.push_back(i.id);
    }
    return ids;
  }

  // An echo_server process registering in this test's directory.
  std::unique_ptr<dynrpc::testing::Subprocess> StartProcess() {
    auto p = std::make_unique<dynrpc::testing::Subprocess>(
        DYNRPC_ECHO_SERVER_PATH, std::vector<std::string>{},
        std::vector<std::string>{
            "DYN_REQUEST_PLANE=tcp", "DYN_TCP_RPC_HOST=127.0.0.1",
            "DYN_NAMESPACE=test", "DYN_FILE_KV=" + dir_,
            "DYN_DISCOVERY_LEASE_TTL=1s"});
    std::optional<std::string> line = p->ReadLine(std::chrono::seconds(10));
    EXPECT_TRUE(line.has_value() && line->starts_with("listening"));
    return p;
  }

  std::string dir_;
  DiscoveryConfig config_;
  Runtime runtime_{2};
  std::shared_ptr<FileDiscovery> discovery_;
};

TEST_F(FileDiscoveryTest, RegistersListsAndDeregisters) {
  absl::StatusOr<std::unique_ptr<Registration>> one =
      discovery_->Register({Make(1, "127.0.0.1:1001")});
  ASSERT_THAT(one, IsOk());
  absl::StatusOr<std::unique_ptr<Registration>> two =
      discovery_->Register({Make(2, "127.0.0.1:1002")});
  ASSERT_THAT(two, IsOk());
  EXPECT_THAT(ListedIds(), ElementsAre(1, 2));
  absl::StatusOr<std::vector<Instance>> listed = discovery_->List(kService);
  ASSERT_THAT(listed, IsOk());
  EXPECT_EQ((*listed)[1].address, "127.0.0.1:1002");
  EXPECT_EQ((*listed)[1].plane, "tcp");
  (*one)->Deregister();
  EXPECT_THAT(ListedIds(), ElementsAre(2));
  // Renewals (every third of the 1 s lease) keep the other alive.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_THAT(ListedIds(), ElementsAre(2));
}

TEST_F(FileDiscoveryTest, AWatchSeesEachChange) {
  std::mutex mu;
  std::vector<std::size_t> sizes;
  std::unique_ptr<WatchHandle> watch = discovery_->Watch(
      kService, [&](absl::StatusOr<std::vector<Instance>> listed) {
        ASSERT_THAT(listed, IsOk());
        std::lock_guard lock(mu);
        sizes.push_back(listed->size());
      });
  auto seen = [&](std::vector<std::size_t> want) {
    return WaitFor(
        [&] {
          std::lock_guard lock(mu);
          return sizes == want;
        },
        std::chrono::seconds(5));
  };
  EXPECT_TRUE(seen({0}));
  absl::StatusOr<std::unique_ptr<Registration>> one =
      discovery_->Register({Make(1, "127.0.0.1:1001")});
  ASSERT_THAT(one, IsOk());
  EXPECT_TRUE(seen({0, 1}));
  absl::StatusOr<std::unique_ptr<Registration>> two =
      discovery_->Register({Make(2, "127.0.0.1:1002")});
  ASSERT_THAT(two, IsOk());
  EXPECT_TRUE(seen({0, 1, 2}));
  (*one)->Deregister();
  EXPECT_TRUE(seen({0, 1, 2, 1}));
}

TEST_F(FileDiscoveryTest, AKilledProcessExpiresAndIsCleanedUp) {
  std::unique_ptr<dynrpc::testing::Subprocess> p = StartProcess();
  ASSERT_THAT(ListedIds(), SizeIs(1));
  p->Kill();
  // Listed until its lease (1 s) runs out, then not.
  Clock::time_point killed = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return ListedIds().empty(); },
                      std::chrono::seconds(3)));
  EXPECT_LE(Clock::now() - killed, std::chrono::milliseconds(1500));
  // Deleted once expired for another lease's time.
  std::string dir = dir_ + "/test/" + kService;
  EXPECT_TRUE(WaitFor(
      [&] {
        (void)discovery_->List(kService);
        return std::filesystem::is_empty(dir);
      },
      std::chrono::seconds(3)));
}

TEST_F(FileDiscoveryTest, ManyProcessesRegisterAndRenewAtOnce) {
  constexpr int kProcesses = 8;
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
  // For two lease times every reader sees all of them: renewals replace
  // files atomically, never leaving one missing or half written.
  Clock::time_point until = Clock::now() + std::chrono::seconds(2);
  int lists = 0;
  while (Clock::now() < until) {
    ASSERT_THAT(ListedIds(), SizeIs(kProcesses));
    ++lists;
  }
  EXPECT_GT(lists, 10);
  processes.clear();  // killed
}

TEST_F(FileDiscoveryTest, FilesThatAreNotEntriesAreIgnored) {
  std::string dir = dir_ + "/test/" + kService;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/garbage.json") << "{not json";
  std::ofstream(dir + "/empty.json") << "";
  std::ofstream(dir + "/partial.json") << R"({"service": "x"})";
  // A FIFO would block a plain open(2) until someone writes to it.
  ASSERT_EQ(mkfifo((dir + "/fifo.json").c_str(), 0644), 0);
  absl::StatusOr<std::unique_ptr<Registration>> one =
      discovery_->Register({Make(7, "127.0.0.1:1007")});
  ASSERT_THAT(one, IsOk());
  EXPECT_THAT(ListedIds(), ElementsAre(7));
}

TEST_F(FileDiscoveryTest, AnUnwritableDirectoryIsAClearError) {
  DiscoveryConfig config = config_;
  config.file_dir = "/proc/dynrpc-cannot-write-here";
  auto discovery = std::make_shared<FileDiscovery>(config, runtime_.executor());
  absl::StatusOr<std::unique_ptr<Registration>> r =
      discovery->Register({Make(1, "127.0.0.1:1")});
  EXPECT_THAT(r, ::dynrpc::testing::StatusIs(
                     absl::StatusCode::kUnavailable,
                     ::testing::AllOf(
                         ::testing::HasSubstr("/proc/dynrpc-cannot-write-here"),
                         ::testing::HasSubstr("DYN_FILE_KV"))));
}

}  // namespace
}  // namespace dynrpc::internal
