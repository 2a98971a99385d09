// The event-driven floor: the same length-prefixed echo as floor_server
// (4-byte big-endian length, then that many bytes), served by one epoll
// thread for every connection, reading and writing in batches. Each time a
// connection is readable it reads everything the socket holds, and echoes
// every complete frame it holds with one write, straight from the read
// buffer; what the socket does not take waits for EPOLLOUT. No RPC at all:
// what a one-thread, event-driven request plane must pay, and the floor for
// calls in flight on one connection (the blocking floor spends a thread and
// a connection per call in flight).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include "bench_util.h"

namespace {

// Bytes without zero-filling: [begin, end) is held, capacity past it.
class Buffer {
 public:
  char* begin() { return data_.get() + begin_; }
  size_t size() const { return end_ - begin_; }
  char* tail() { return data_.get() + end_; }
  size_t room() const { return capacity_ - end_; }
  void Grew(size_t n) { end_ += n; }
  void Consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  // At least `n` bytes of room, moving what is held to the front first.
  void Reserve(size_t n) {
    if (room() >= n) return;
    size_t held = size();
    if (begin_ > 0 && capacity_ - held >= n) {
      std::memmove(data_.get(), begin(), held);
    } else {
      size_t capacity = std::max(capacity_ * 2, held + n);
      std::unique_ptr<char[]> bigger(new char[capacity]);
      std::memcpy(bigger.get(), begin(), held);
      data_ = std::move(bigger);
      capacity_ = capacity;
    }
    begin_ = 0;
    end_ = held;
  }
  void Append(const char* p, size_t n) {
    Reserve(n);
    std::memcpy(tail(), p, n);
    Grew(n);
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t capacity_ = 0, begin_ = 0, end_ = 0;
};

struct Connection {
  Buffer in, out;
  bool want_out = false;  // registered for EPOLLOUT
};

constexpr size_t kReadChunk = 256 << 10;

int g_epoll = -1;

void Close(std::unordered_map<int, std::unique_ptr<Connection>>& connections,
           int fd) {
  epoll_ctl(g_epoll, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  connections.erase(fd);
}

void WantOut(int fd, Connection& c, bool want) {
  if (c.want_out == want) return;
  epoll_event e{};
  e.events = want ? EPOLLIN | EPOLLOUT : EPOLLIN;
  e.data.fd = fd;
  epoll_ctl(g_epoll, EPOLL_CTL_MOD, fd, &e);
  c.want_out = want;
}

// Writes what `c.out` holds; false when the connection failed.
bool Flush(int fd, Connection& c) {
  while (c.out.size() > 0) {
    ssize_t k = write(fd, c.out.begin(), c.out.size());
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && errno == EAGAIN) break;
    if (k <= 0) return false;
    c.out.Consume(static_cast<size_t>(k));
  }
  WantOut(fd, c, c.out.size() > 0);
  return true;
}

// Reads all the socket holds, then echoes every complete frame at once;
// false when the connection ended or failed.
bool OnReadable(int fd, Connection& c) {
  for (;;) {
    c.in.Reserve(kReadChunk);
    const size_t room = c.in.room();
    ssize_t k = read(fd, c.in.tail(), room);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && errno == EAGAIN) break;
    if (k <= 0) return false;
    c.in.Grew(static_cast<size_t>(k));
    // The socket is drained when a read does not fill the room it had.
    if (static_cast<size_t>(k) < room) break;
  }
  // The complete frames at the front.
  size_t complete = 0;
  for (;;) {
    if (c.in.size() - complete < 4) break;
    uint32_t len_be;
    std::memcpy(&len_be, c.in.begin() + complete, 4);
    size_t frame = 4 + static_cast<size_t>(ntohl(len_be));
    if (c.in.size() - complete < frame) {
      c.in.Reserve(frame - (c.in.size() - complete));  // room for the rest
      break;
    }
    complete += frame;
  }
  if (complete == 0) return true;
  if (c.out.size() > 0) {
    c.out.Append(c.in.begin(), complete);
    c.in.Consume(complete);
    return Flush(fd, c);
  }
  // Straight from the read buffer; only what the socket refuses is copied.
  size_t written = 0;
  while (written < complete) {
    ssize_t k = write(fd, c.in.begin() + written, complete - written);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && errno == EAGAIN) break;
    if (k <= 0) return false;
    written += static_cast<size_t>(k);
  }
  c.out.Append(c.in.begin() + written, complete - written);
  c.in.Consume(complete);
  WantOut(fd, c, c.out.size() > 0);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bench::PinToCpu(bench::CpuFlag(argc, argv));
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) !=
          0 ||
      listen(listener, 1024) != 0) {
    std::perror("event_floor_server");
    return 1;
  }
  socklen_t size = sizeof address;
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size);
  g_epoll = epoll_create1(EPOLL_CLOEXEC);
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.fd = listener;
  epoll_ctl(g_epoll, EPOLL_CTL_ADD, listener, &e);
  bench::AnnounceAddress("127.0.0.1:" +
                         std::to_string(ntohs(address.sin_port)));

  std::unordered_map<int, std::unique_ptr<Connection>> connections;
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(g_epoll, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == listener) {
        for (;;) {
          int c = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
          if (c < 0) break;
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event ce{};
          ce.events = EPOLLIN;
          ce.data.fd = c;
          epoll_ctl(g_epoll, EPOLL_CTL_ADD, c, &ce);
          connections[c] = std::make_unique<Connection>();
        }
        continue;
      }
      auto it = connections.find(fd);
      if (it == connections.end()) continue;
      Connection& c = *it->second;
      bool ok = true;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) ok = false;
      if (ok && (events[i].events & EPOLLOUT)) ok = Flush(fd, c);
      if (ok && (events[i].events & EPOLLIN)) ok = OnReadable(fd, c);
      if (!ok) Close(connections, fd);
    }
  }
}
