// A process's memory as the kernel reports it, for tests that bound a
// server's memory while peers attack it.
#ifndef DYNRPC_TESTS_SUPPORT_PROCESS_MEMORY_H_
#define DYNRPC_TESTS_SUPPORT_PROCESS_MEMORY_H_

#include <sys/types.h>

#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace dynrpc::testing {

// The bound the hostile-peer tests hold a server's peak memory growth to
// while it is attacked, in KiB. AddressSanitizer keeps freed memory in
// quarantine (up to 256 MiB) and pads every block, so its builds get four
// times the room: still far below what an unbounded server takes
// (gigabytes).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr int64_t kMemoryBoundKiB = 4 * 64 * 1024;
#else
inline constexpr int64_t kMemoryBoundKiB = 64 * 1024;
#endif

// A field of /proc/<pid>/status in KiB ("VmRSS": resident now; "VmHWM": the
// most ever resident), or nullopt when the process or field is gone.
inline std::optional<int64_t> ProcessMemoryKiB(pid_t pid,
                                               const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream in(line.substr(field.size() + 1));
    int64_t kib = 0;
    if (in >> kib) return kib;
  }
  return std::nullopt;
}

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_PROCESS_MEMORY_H_
