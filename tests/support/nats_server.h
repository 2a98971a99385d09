// A nats-server child process for tests of the NATS request plane, and the
// suite's shared server.
//
// Example:
//   absl::StatusOr<std::unique_ptr<NatsServerProcess>> nats =
//       NatsServerProcess::Start("max_payload: 8MB");
//   ASSERT_THAT(nats, IsOk());
//   config.nats.server = (*nats)->url();
//   ...
//   ASSERT_THAT((*nats)->Restart(), IsOk());  // same port, ready again
//
// Tests that need no server of their own use SharedNatsUrl().
#ifndef DYNRPC_TESTS_SUPPORT_NATS_SERVER_H_
#define DYNRPC_TESTS_SUPPORT_NATS_SERVER_H_

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dynrpc::testing {

// The nats-server it runs is the one CMake found when configuring
// (/usr/sbin/nats-server on Debian).
std::string NatsServerPath();

// One nats-server process listening on 127.0.0.1, on a port it picked itself
// (nats-server's `-p -1`, so two tests never race for one). Its log (stdout
// and stderr) is drained by a thread of this object, so it never blocks on a
// full pipe, and is kept for failure messages.
//
// Not thread-safe: one thread starts, stops and restarts it.
//
// WARNING: the process is killed (SIGTERM) when the thread that started it
// exits, so that a test process that dies (a crash, a ctest timeout) leaves
// no server behind (PR_SET_PDEATHSIG). Start it from a thread that lives as
// long as it must: a test's own thread, not a runtime thread.
class NatsServerProcess {
 public:
  // Starts nats-server with `extra_config` (nats-server's configuration
  // syntax, e.g. "max_payload: 8MB" or "authorization { token: \"t\" }")
  // as its configuration file, and waits, up to `ready_timeout`, until it
  // accepts clients: a connection to its port is greeted with INFO.
  // The address and port are set on the command line and override any in
  // `extra_config`; the port lies below the kernel's ephemeral range, so
  // that no bind to port 0 can take it while the server is stopped. Fails with UNAVAILABLE, and the server's log, if it
  // does not become ready in time or exits.
  static absl::StatusOr<std::unique_ptr<NatsServerProcess>> Start(
      std::string extra_config = "",
      std::chrono::milliseconds ready_timeout = std::chrono::seconds(30));

  // Stop().
  ~NatsServerProcess();
  NatsServerProcess(const NatsServerProcess&) = delete;
  NatsServerProcess& operator=(const NatsServerProcess&) = delete;

  // "nats://127.0.0.1:<port>"; the same across Restart().
  const std::string& url() const { return url_; }
  uint16_t port() const { return port_; }
  // The JSON of the INFO line the server greeted the readiness probe with
  // at its latest start (max_payload, auth_required, ...).
  const std::string& info() const { return info_; }
  // What the server has logged since its latest start (at most the last
  // 256 KiB).
  std::string log() const;
  // The running process's pid; -1 when stopped.
  pid_t pid() const { return pid_; }
  // Whether the process has exited since its latest start, stopped or not
  // (its output reached end of file).
  bool exited() const;

  // Sends SIGTERM and waits for the process to exit; sends SIGKILL if it
  // has not exited within `grace`. Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  // Stop(), then starts the server again with the same configuration on the
  // same port, and waits until it is ready as Start() does. Clients see the
  // restart as a lost connection, then a server at the same URL.
  absl::Status Restart(
      std::chrono::milliseconds ready_timeout = std::chrono::seconds(30));

 private:
  NatsServerProcess() = default;

  // Starts the process on `port` (-1: nats-server picks) and waits until it
  // is ready; sets port_, url_ and info_.
  absl::Status Launch(int port, std::chrono::milliseconds ready_timeout);
  // Drains the process's output until end of file (the process exited).
  void ReadOutput(int fd);
  absl::Status Failure(const std::string& what) const;

  std::string dir_;  // holds the configuration file
  std::string config_path_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string url_;
  std::string info_;
  std::thread reader_;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::string log_;         // guarded by mu_
  int listening_port_ = 0;  // from the log; guarded by mu_
  bool ready_ = false;      // "Server is ready" logged; guarded by mu_
  bool exited_ = false;     // output reached end of file; guarded by mu_
};

// Connects to 127.0.0.1:`port` and returns the JSON of the INFO line a NATS
// server greets every client with; UNAVAILABLE when nothing answers with one
// within `timeout` (a refused connection fails at once).
absl::StatusOr<std::string> ReadNatsInfo(
    uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5));

// The NATS server the suite shares: $NATS_SERVER when set (./scripts/test
// starts one and sets it), otherwise a NatsServerProcess started on first
// use with tests/nats/nats-server.conf's settings and kept until the
// process exits, so that the tests also run under plain ctest. Tests sharing
// it must keep apart by namespace (UniqueNatsNamespace()), since other test
// processes may use it at the same time. On failure to start one, records a
// test failure and returns "".
std::string SharedNatsUrl();

// A NATS namespace (config.nats.name_space) no other test process uses:
// "<prefix>_<pid>_<n>", n counting up within the process.
std::string UniqueNatsNamespace(const std::string& prefix = "test");

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_NATS_SERVER_H_
