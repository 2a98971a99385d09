// Runs a helper program with its stdout on a pipe, for tests that need a
// peer in another process (to kill it).
#ifndef DYNRPC_TESTS_SUPPORT_SUBPROCESS_H_
#define DYNRPC_TESTS_SUPPORT_SUBPROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace dynrpc::testing {

// Stops the child process `pid` (SIGSTOP) and returns once it is stopped:
// kill() only queues the signal, and a child still running on another core
// could answer one more request. False if `pid` is not a live child.
bool StopChild(pid_t pid);
// Lets a child stopped by StopChild run again (SIGCONT).
void ContinueChild(pid_t pid);

class Subprocess {
 public:
  // Starts `path` with `args` and the environment plus `env` ("K=V").
  Subprocess(const std::string& path, const std::vector<std::string>& args,
             const std::vector<std::string>& env);
  // Kills (SIGKILL) and reaps the child if it still runs.
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // The next line of the child's stdout without its newline, or nullopt on
  // end of file or when `timeout` passes first.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout);
  // SIGKILL, then wait for the child to end.
  void Kill();
  // Waits for the child to end by itself: its exit status, or -1 when a
  // signal ended it.
  int Wait();
  // The child's pid; -1 once killed.
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffered_;
};

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_SUBPROCESS_H_
