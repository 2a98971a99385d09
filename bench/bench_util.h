// Shared by the benchmark servers: pinning to a CPU and announcing the
// address.
#ifndef DYNRPC_BENCH_BENCH_UTIL_H_
#define DYNRPC_BENCH_BENCH_UTIL_H_

#include <sched.h>

#include <cstdio>
#include <string>
#include <string_view>

namespace bench {

// Pins the calling process (all its future threads) to `cpu`; no-op when
// cpu < 0 or the machine has fewer CPUs.
inline void PinToCpu(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

// Parses "--cpu=N" (default -1: not pinned).
inline int CpuFlag(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--cpu=")) return std::stoi(std::string(arg.substr(6)));
  }
  return -1;
}

// The first line a benchmark server prints; the harness reads the address
// from it.
inline void AnnounceAddress(const std::string& address) {
  std::printf("listening on %s\n", address.c_str());
  std::fflush(stdout);
}

}  // namespace bench

#endif  // DYNRPC_BENCH_BENCH_UTIL_H_
