#include "discovery/file_discovery.h"

#include "core/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace dynrpc::internal {
namespace {

namespace asio = boost::asio;

std::string DefaultDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp != nullptr && tmp[0] == '/') ? tmp : "/tmp";
  return base + "/dynrpc-discovery";
}

std::string ErrnoText(int err) { return std::strerror(err); }

// mkdir -p (mode 0777 less the umask: with the usual umask, the processes
// of the user who made a directory may register in it, and everyone may
// read it).
absl::Status MakeDirs(const std::string& path) {
  std::string partial;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i != path.size() && path[i] != '/') continue;
    partial = path.substr(0, i);
    if (mkdir(partial.c_str(), 0777) != 0 && errno != EEXIST) {
      return absl::UnavailableError(absl::StrCat(
          "cannot create the discovery directory ", partial, ": ",
          ErrnoText(errno)));
    }
  }
  return absl::OkStatus();
}

// Writes `contents` to `path` atomically: a reader sees the old file or the
// new one, never a part.
absl::Status WriteAtomically(const std::string& path,
                             const std::string& contents) {
  thread_local absl::BitGen gen;
  std::string temp = absl::StrFormat("%s.tmp.%d.%016x", path, getpid(),
                                     absl::Uniform<uint64_t>(gen));
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot write discovery entry ", temp, ": ",
                     ErrnoText(errno)));
  }
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      unlink(temp.c_str());
      return absl::UnavailableError(absl::StrCat(
          "cannot write discovery entry ", temp, ": ", ErrnoText(err)));
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  if (rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(temp.c_str());
    return absl::UnavailableError(absl::StrCat(
        "cannot write discovery entry ", path, ": ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

// An entry's contents: a regular file of at most kMaxEntryBytes (a FIFO or
// device planted in the directory never blocks the reader; a huge file is
// not read).
constexpr std::size_t kMaxEntryBytes = 64 * 1024;

std::optional<std::string> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::size_t>(st.st_size) > kMaxEntryBytes) {
    close(fd);
    return std::nullopt;
  }
  std::string contents;
  char buffer[4096];
  while (contents.size() <= kMaxEntryBytes) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    contents.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (contents.size() > kMaxEntryBytes) return std::nullopt;
  return contents;
}

// A server's files, rewritten every third of the lease by a task.
class FileRegistration final : public Registration {
 public:
  struct State {
    std::mutex mu;
    bool deregistered = false;  // under mu
    std::vector<std::pair<std::string, Instance>> entries;  // path, instance
    std::string name_space;
    std::chrono::milliseconds ttl;

    // Writes every entry with a fresh expiry; the first error.
    absl::Status WriteAll() {
      std::lock_guard lock(mu);
      if (deregistered) return absl::OkStatus();
      int64_t expires = UnixMillis() + ttl.count();
      absl::Status first;
      for (const auto& [path, instance] : entries) {
        absl::Status s =
            WriteAtomically(path, EncodeInstance(instance, name_space, expires));
        if (!s.ok() && first.ok()) first = s;
      }
      return first;
    }
  };

  FileRegistration(std::shared_ptr<State> state,
                   std::unique_ptr<TaskGroup> renewal)
      : state_(std::move(state)), renewal_(std::move(renewal)) {}
  ~FileRegistration() override { renewal_->Stop(); }

  void Deregister() override {
    renewal_->Stop();
    std::lock_guard lock(state_->mu);
    if (state_->deregistered) return;
    state_->deregistered = true;
    for (const auto& [path, instance] : state_->entries) unlink(path.c_str());
  }

 private:
  std::shared_ptr<State> state_;
  std::unique_ptr<TaskGroup> renewal_;
};

asio::awaitable<void> Renew(std::shared_ptr<FileRegistration::State> state) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(state->ttl / 3);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;  // deregistered or shut down
    if (absl::Status s = state->WriteAll(); !s.ok()) {
      // Retried at the next renewal; readers keep the entry until it
      // expires.
      DYNRPC_LOG(kWarn, "dynrpc::discovery", s.message());
    }
  }
}

class FileWatch final : public WatchHandle {
 public:
  explicit FileWatch(std::unique_ptr<TaskGroup> poll)
      : poll_(std::move(poll)) {}
  ~FileWatch() override { poll_->Stop(); }

 private:
  std::unique_ptr<TaskGroup> poll_;
};

bool SameInstances(const std::vector<Instance>& a,
                   const std::vector<Instance>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const Instance& x, const Instance& y) {
                      return x.id == y.id && x.address == y.address &&
                             x.plane == y.plane &&
                             x.start_time_unix_ms == y.start_time_unix_ms;
                    });
}

}  // namespace

FileDiscovery::FileDiscovery(DiscoveryConfig config,
                             asio::any_io_executor executor)
    : config_(std::move(config)),
      root_(absl::StrCat(
          config_.file_dir.empty() ? DefaultDir() : config_.file_dir, "/",
          config_.name_space)),
      executor_(std::move(executor)) {}

FileDiscovery::~FileDiscovery() = default;

std::string FileDiscovery::Describe() const {
  return absl::StrCat("file discovery in ", root_,
                      config_.file_dir.empty() ? " (the default; DYN_FILE_KV)"
                                               : " (DYN_FILE_KV)");
}

std::string FileDiscovery::ServiceDir(const std::string& service) const {
  return absl::StrCat(root_, "/", service);
}

absl::StatusOr<std::unique_ptr<Registration>> FileDiscovery::Register(
    std::vector<Instance> instances) {
  auto state = std::make_shared<FileRegistration::State>();
  state->name_space = config_.name_space;
  state->ttl = config_.lease_ttl;
  for (Instance& instance : instances) {
    std::string dir = ServiceDir(instance.service);
    if (absl::Status s = MakeDirs(dir); !s.ok()) {
      return absl::UnavailableError(
          absl::StrCat(s.message(), " (", Describe(), ")"));
    }
    std::string path = absl::StrFormat("%s/%016x.json", dir, instance.id);
    state->entries.emplace_back(std::move(path), std::move(instance));
  }
  if (absl::Status s = state->WriteAll(); !s.ok()) {
    for (const auto& [path, instance] : state->entries) unlink(path.c_str());
    return absl::UnavailableError(
        absl::StrCat(s.message(), " (", Describe(), ")"));
  }
  auto renewal = std::make_unique<TaskGroup>(executor_);
  renewal->Spawn(renewal->NewStrand(), Renew(state), "file discovery renewal");
  return std::make_unique<FileRegistration>(std::move(state),
                                            std::move(renewal));
}

absl::StatusOr<std::vector<Instance>> FileDiscovery::List(
    const std::string& service) const {
  std::string dir = ServiceDir(service);
  std::vector<Instance> live;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return live;  // nothing registered yet
    return absl::UnavailableError(absl::StrCat(
        "cannot read ", dir, ": ", ErrnoText(errno), " (", Describe(), ")"));
  }
  const int64_t now = UnixMillis();
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (!absl::EndsWith(name, ".json")) continue;
    std::string path = absl::StrCat(dir, "/", name);
    std::optional<std::string> contents = ReadFile(path);
    if (!contents) continue;  // deregistered meanwhile
    absl::StatusOr<DecodedInstance> entry = DecodeInstance(*contents);
    if (!entry.ok()) continue;
    if (entry->expires_unix_ms < now) {
      // Its owner stopped renewing: ignored, and once it has been expired
      // for another lease's time, deleted.
      if (entry->expires_unix_ms + config_.lease_ttl.count() < now) {
        unlink(path.c_str());
      }
      continue;
    }
    live.push_back(std::move(entry->instance));
  }
  closedir(d);
  std::sort(live.begin(), live.end(),
            [](const Instance& a, const Instance& b) { return a.id < b.id; });
  return live;
}

std::unique_ptr<WatchHandle> FileDiscovery::Watch(std::string service,
                                                  InstancesCallback on_change) {
  auto poll = [](std::shared_ptr<const FileDiscovery> self,
                 std::string service,
                 InstancesCallback on_change) -> asio::awaitable<void> {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    std::optional<std::vector<Instance>> last;
    bool failing = false;
    for (;;) {
      absl::StatusOr<std::vector<Instance>> now = self->List(service);
      if (!now.ok()) {
        if (!failing) on_change(now.status());
        failing = true;
      } else if (failing || !last || !SameInstances(*last, *now)) {
        failing = false;
        last = *now;
        on_change(*std::move(now));
      }
      timer.expires_after(kPollInterval);
      auto [ec] =
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
    }
  };
  auto group = std::make_unique<TaskGroup>(executor_);
  group->Spawn(group->NewStrand(),
               poll(shared_from_this(), std::move(service),
                    std::move(on_change)),
               "file discovery watch");
  return std::make_unique<FileWatch>(std::move(group));
}

}  // namespace dynrpc::internal
