#include "support/nats_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace dynrpc::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxLog = 256 << 10;
constexpr std::string_view kListeningLine =
    "Listening for client connections on ";
constexpr std::string_view kReadyLine = "Server is ready";

std::string Errno(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

std::chrono::milliseconds Left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - Clock::now());
  return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

// The lowest port of the kernel's ephemeral range (what a bind to port 0
// gets); 32768, Linux's default, when it cannot be read.
int FirstEphemeralPort() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  if (in >> low && low > 2048) return low;
  return 32768;
}

// Whether 127.0.0.1:`port` can be bound now.
bool PortIsFree(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool free =
      bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return free;
}

// The server's first line, which a NATS server sends unasked
// ("INFO {...}\r\n"), by `deadline`.
absl::StatusOr<std::string> ReadGreeting(uint16_t port,
                                         Clock::time_point deadline) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(Errno("socket"));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 &&
      errno != EINPROGRESS) {
    return absl::UnavailableError(Errno("connect"));
  }
  std::string received;
  for (;;) {
    if (std::size_t end = received.find("\r\n"); end != std::string::npos) {
      return received.substr(0, end);
    }
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(Left(deadline).count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError("no greeting in time; received \"" +
                                    received + "\"");
    }
    char buf[4096];
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got < 0) return absl::UnavailableError(Errno("read"));
    if (got == 0) {
      return absl::UnavailableError("connection closed; received \"" +
                                    received + "\"");
    }
    received.append(buf, static_cast<std::size_t>(got));
  }
}

}  // namespace

std::string NatsServerPath() { return DYNRPC_NATS_SERVER_PATH; }

absl::StatusOr<std::string> ReadNatsInfo(uint16_t port,
                                         std::chrono::milliseconds timeout) {
  absl::StatusOr<std::string> greeting =
      ReadGreeting(port, Clock::now() + timeout);
  if (!greeting.ok()) return greeting.status();
  if (!greeting->starts_with("INFO ")) {
    return absl::UnavailableError("127.0.0.1:" + std::to_string(port) +
                                  " greeted with \"" + *greeting +
                                  "\", not INFO");
  }
  return greeting->substr(5);
}

absl::StatusOr<std::unique_ptr<NatsServerProcess>> NatsServerProcess::Start(
    std::string extra_config, std::chrono::milliseconds ready_timeout) {
  std::unique_ptr<NatsServerProcess> server(new NatsServerProcess);
  const char* tmp = std::getenv("TMPDIR");
  std::string dir_template =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
      "/dynrpc-nats-XXXXXX";
  if (mkdtemp(dir_template.data()) == nullptr) {
    return absl::InternalError(Errno("mkdtemp " + dir_template));
  }
  server->dir_ = dir_template;
  server->config_path_ = server->dir_ + "/nats-server.conf";
  {
    std::ofstream out(server->config_path_);
    out << "# Written by dynrpc's NatsServerProcess; the address and port "
           "come from the command line.\n"
        << extra_config << "\n";
    if (!out.good()) {
      return absl::InternalError("cannot write " + server->config_path_);
    }
  }
  // The port is taken below the kernel's ephemeral range: a port nats-server
  // chose itself (port 0) could, once it is stopped, go to any socket bound
  // to port 0 meanwhile (a test's own TCP server did, once), and Restart()
  // would find it in use. Below the range only an explicit bind competes;
  // a port lost to one between the check and the launch is tried again.
  const int below = FirstEphemeralPort();
  const int lowest = below > 12000 ? below - 10000 : 1024;
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> pick(lowest, below - 1);
  absl::Status launched =
      absl::UnavailableError("no free port below " + std::to_string(below));
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int port = pick(random);
    if (!PortIsFree(port)) continue;
    launched = server->Launch(port, ready_timeout);
    if (launched.ok()) return server;
    server->Stop();
    if (!absl::StrContains(launched.message(), "address already in use")) {
      return launched;
    }
  }
  return launched;
}

NatsServerProcess::~NatsServerProcess() {
  Stop();
  if (!config_path_.empty()) unlink(config_path_.c_str());
  if (!dir_.empty()) rmdir(dir_.c_str());
}

absl::Status NatsServerProcess::Launch(
    int port, std::chrono::milliseconds ready_timeout) {
  const Clock::time_point deadline = Clock::now() + ready_timeout;
  {
    std::lock_guard lock(mu_);
    log_.clear();
    listening_port_ = 0;
    ready_ = false;
    exited_ = false;
  }
  // Close-on-exec, so that no other child this process spawns meanwhile
  // holds the write end (we would then never see end of file).
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError(Errno("pipe2"));

  // Everything the child needs, built before fork: after it, the child may
  // only make async-signal-safe calls.
  const std::string path = NatsServerPath();
  std::vector<std::string> args = {path,        "-c", config_path_,        "-a",
                                   "127.0.0.1", "-p", std::to_string(port)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const std::string exec_failed = "cannot execute " + path + "\n";

  pid_t pid = fork();
  if (pid < 0) {
    int saved = errno;
    close(fds[0]);
    close(fds[1]);
    errno = saved;
    return absl::InternalError(Errno("fork"));
  }
  if (pid == 0) {
    // The child: dies with the thread that started it; output to the pipe.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);  // that thread is already gone
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execv(path.c_str(), argv.data());
    ssize_t ignored =
        write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
    (void)ignored;
    _exit(127);
  }
  close(fds[1]);
  pid_ = pid;
  reader_ = std::thread([this, fd = fds[0]] { ReadOutput(fd); });

  // Wait for the log to say the server listens and is ready (or exited).
  int listening_port = 0;
  {
    std::unique_lock lock(mu_);
    changed_.wait_until(lock, deadline, [&] { return ready_ || exited_; });
    if (!ready_ || listening_port_ == 0) {
      std::string why = exited_
                            ? "nats-server exited before it was ready"
                            : "nats-server was not ready within " +
                                  std::to_string(ready_timeout.count()) + " ms";
      lock.unlock();
      return Failure(why);
    }
    listening_port = listening_port_;
  }
  if (port > 0 && listening_port != port) {
    return Failure("nats-server listens on port " +
                   std::to_string(listening_port) + ", not " +
                   std::to_string(port));
  }
  port_ = static_cast<uint16_t>(listening_port);
  url_ = "nats://127.0.0.1:" + std::to_string(port_);

  // The proof: a client connecting now is greeted with INFO.
  absl::StatusOr<std::string> info = ReadNatsInfo(port_, Left(deadline));
  if (!info.ok()) {
    return Failure("no INFO from " + url_ + ": " +
                   std::string(info.status().message()));
  }
  info_ = *std::move(info);
  return absl::OkStatus();
}

void NatsServerProcess::ReadOutput(int fd) {
  std::string line;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard lock(mu_);
    for (ssize_t i = 0; i < n; ++i) {
      line.push_back(buf[i]);
      if (buf[i] != '\n') continue;
      log_ += line;
      if (std::size_t at = line.find(kListeningLine);
          at != std::string::npos && listening_port_ == 0) {
        // "... Listening for client connections on 127.0.0.1:40845"
        std::size_t colon = line.rfind(':');
        if (colon != std::string::npos && colon > at) {
          listening_port_ = std::atoi(line.c_str() + colon + 1);
        }
      }
      if (line.find(kReadyLine) != std::string::npos) ready_ = true;
      line.clear();
    }
    if (log_.size() > kMaxLog) log_.erase(0, log_.size() - kMaxLog);
    changed_.notify_all();
  }
  close(fd);
  std::lock_guard lock(mu_);
  log_ += line;
  exited_ = true;
  changed_.notify_all();
}

bool NatsServerProcess::exited() const {
  std::lock_guard lock(mu_);
  return exited_;
}

std::string NatsServerProcess::log() const {
  std::lock_guard lock(mu_);
  return log_;
}

absl::Status NatsServerProcess::Failure(const std::string& what) const {
  return absl::UnavailableError(what + "; its log:\n" + log());
}

void NatsServerProcess::Stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  {
    std::unique_lock lock(mu_);
    if (!changed_.wait_for(lock, grace, [&] { return exited_; })) {
      ::kill(pid_, SIGKILL);
    }
  }
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
}

absl::Status NatsServerProcess::Restart(
    std::chrono::milliseconds ready_timeout) {
  Stop();
  return Launch(port_, ready_timeout);
}

std::string SharedNatsUrl() {
  if (const char* url = std::getenv("NATS_SERVER");
      url != nullptr && *url != '\0') {
    return url;
  }
  // The settings of tests/nats/nats-server.conf, which ./scripts/test's
  // server uses (its listen line is overridden by the command line).
  static const absl::StatusOr<std::unique_ptr<NatsServerProcess>> shared =
      []() -> absl::StatusOr<std::unique_ptr<NatsServerProcess>> {
    std::ifstream in(DYNRPC_NATS_SERVER_CONF);
    if (!in) {
      return absl::NotFoundError(std::string("cannot read ") +
                                 DYNRPC_NATS_SERVER_CONF);
    }
    std::stringstream config;
    config << in.rdbuf();
    return NatsServerProcess::Start(config.str());
  }();
  if (!shared.ok()) {
    ADD_FAILURE() << "NATS_SERVER is unset and no nats-server could be "
                     "started: "
                  << shared.status();
    return "";
  }
  if ((*shared)->exited()) {
    ADD_FAILURE() << "the shared nats-server at " << (*shared)->url()
                  << " has exited; its log:\n"
                  << (*shared)->log();
  }
  return (*shared)->url();
}

std::string UniqueNatsNamespace(const std::string& prefix) {
  static std::atomic<int> next{0};
  return prefix + "_" + std::to_string(getpid()) + "_" + std::to_string(next++);
}

}  // namespace dynrpc::testing
