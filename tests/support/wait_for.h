// Waiting, in a test, for a condition another thread or process brings
// about: polled, with a bound, never a fixed sleep.
#ifndef DYNRPC_TESTS_SUPPORT_WAIT_FOR_H_
#define DYNRPC_TESTS_SUPPORT_WAIT_FOR_H_

#include <chrono>
#include <functional>
#include <thread>

namespace dynrpc::testing {

// Polls `done` every 10 ms until it holds (true) or `timeout` passes
// (false).
inline bool WaitFor(const std::function<bool()>& done,
                    std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_WAIT_FOR_H_
