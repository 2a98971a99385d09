// The floor any TCP request plane pays: a blocking echo over loopback TCP
// with 4-byte length-prefixed frames, one thread per connection,
// TCP_NODELAY. No RPC at all.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"

namespace {

bool ReadAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t k = read(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

void Serve(int fd) {
  std::vector<char> buffer;
  for (;;) {
    uint32_t len_be;
    if (!ReadAll(fd, reinterpret_cast<char*>(&len_be), 4)) break;
    uint32_t len = ntohl(len_be);
    buffer.resize(len + 4);
    std::memcpy(buffer.data(), &len_be, 4);
    if (!ReadAll(fd, buffer.data() + 4, len)) break;
    if (!WriteAll(fd, buffer.data(), len + 4)) break;
  }
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  bench::PinToCpu(bench::CpuFlag(argc, argv));
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener, 128) != 0) {
    std::perror("floor_server");
    return 1;
  }
  socklen_t size = sizeof address;
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size);
  bench::AnnounceAddress("127.0.0.1:" + std::to_string(ntohs(address.sin_port)));
  for (;;) {
    int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::thread(Serve, fd).detach();  // lives until the harness kills us
  }
}
