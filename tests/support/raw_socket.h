// Blocking POSIX sockets for tests that play a hostile peer: raw bytes, no
// client library in between.
#ifndef DYNRPC_TESTS_SUPPORT_RAW_SOCKET_H_
#define DYNRPC_TESTS_SUPPORT_RAW_SOCKET_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace dynrpc::testing {

// A connected TCP socket to `address` ("ipv4:port"), blocking, with
// TCP_NODELAY (each small write goes out at once); -1 on failure.
inline int ConnectRaw(const std::string& address) {
  std::size_t colon = address.rfind(':');
  if (colon == std::string::npos) return -1;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &to.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    ::close(fd);
    return -1;
  }
  int on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  return fd;
}

// Writes all of `bytes`; false once the peer has closed the connection.
inline bool SendAll(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n =
        ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_RAW_SOCKET_H_
