// Socket plumbing shared by the request planes that run over TCP (tcp/ and
// http/): listening on the configured address and dialling a "host:port"
// target with a timeout. Errors name the variables that set the values.
#ifndef DYNRPC_RUNTIME_SRC_NET_SOCKETS_H_
#define DYNRPC_RUNTIME_SRC_NET_SOCKETS_H_

#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "core/admission.h"

namespace dynrpc::internal::net {

// Where a server listens, and the variables that chose it (for messages).
struct ListenSpec {
  std::string host;                    // empty: DetectHostAddress()
  uint16_t port = 0;                   // 0: the OS picks
  std::string_view host_variable;      // "DYN_TCP_RPC_HOST"
  std::string_view port_variable;      // "DYN_TCP_RPC_PORT"
  bool port_from_environment = false;  // else the default (for messages)
  // Counts the server's connections (the process's metrics), if set.
  std::atomic<int64_t>* connections_gauge = nullptr;
};

// The line a server prints when it binds `address`, advertised as
// `advertised`, that other machines can reach (not loopback): why that
// address, and how to keep the server local. nullopt for loopback.
std::optional<std::string> NonLoopbackNotice(
    const boost::asio::ip::address& address, std::string_view advertised,
    const ListenSpec& spec);

struct Listener {
  boost::asio::ip::tcp::acceptor acceptor;
  std::string address;  // "host:port" ("[v6]:port"), as clients dial it
};

// Binds and listens on `spec`, on an acceptor using `executor`.
// INVALID_ARGUMENT for a host that does not resolve; UNAVAILABLE naming the
// address and the port variable (and whether the port was its default)
// when it cannot bind. An address other machines can reach (not loopback)
// is said in one line on stderr.
absl::StatusOr<Listener> Listen(boost::asio::any_io_executor executor,
                                const ListenSpec& spec);

// Accepts connections until `acceptor` is closed or the task is cancelled,
// then closes it. Each socket is accepted on a fresh strand from
// `new_strand` and handed, with that strand and a unit of `connections`, to
// `on_accept`, which keeps the unit for the connection's life. With
// `connections` used up (DYN_SERVER_MAX_CONNECTIONS) a new connection is
// closed at once. A transient error (out of file descriptors, a peer that
// reset first) pauses 10 ms rather than spinning.
boost::asio::awaitable<void> AcceptLoop(
    boost::asio::ip::tcp::acceptor& acceptor, Admission& connections,
    std::function<boost::asio::any_io_executor()> new_strand,
    std::function<void(boost::asio::ip::tcp::socket,
                       boost::asio::any_io_executor strand,
                       Admission::Token connection)>
        on_accept);

// Runs `task` and holds `token` until it ends (a connection's reader holds
// its connection's unit).
boost::asio::awaitable<void> Holding(Admission::Token token,
                                     boost::asio::awaitable<void> task);

// Sets the kernel's liveness checks on a connected socket: TCP keepalive
// probes after `idle` without traffic, and TCP_USER_TIMEOUT so that data
// unacknowledged for `idle + timeout` fails the connection.
void SetKeepalive(boost::asio::ip::tcp::socket& socket,
                  std::chrono::milliseconds idle,
                  std::chrono::milliseconds timeout);

// Readies a connected socket for small messages (TCP_NODELAY) and returns
// its peer as "ip:port" ("[v6]:port"), for messages.
std::string PrepareSocket(boost::asio::ip::tcp::socket& socket);

// How many calls' frames a connection's inline write waits for (the TCP
// plane's FramedSocket::Send, the HTTP/2 plane's H2Connection::SentLocked):
// 1 while calls come one per read (a lone call goes at once, without the
// hop to the writer's strand), else a quarter of what a read brings (its
// peak, decaying by an eighth a read), from 2 to 16. (Measured on loopback
// with 8 and 64 calls in flight: a fixed 8 left a burst of 8 in two halves
// that still took turns; fixed pairs kept 8 in flight busy but spent a
// syscall per two calls at 64, where a read brings dozens.) The reader
// calls Read(); any thread may call Group().
class BurstMeter {
 public:
  // A read brought `calls` calls (or calls' frames).
  void Read(std::size_t calls) {
    const std::size_t peak = peak_.load(std::memory_order_relaxed);
    peak_.store(std::max(calls << 8, peak - (peak >> 3)),
                std::memory_order_relaxed);
  }
  std::size_t Group() const {
    const std::size_t burst = peak_.load(std::memory_order_relaxed) >> 8;
    return burst <= 1 ? 1 : std::clamp<std::size_t>(burst / 4, 2, 16);
  }

 private:
  std::atomic<std::size_t> peak_{0};  // in 1/256ths of a call
};

// Writes what the socket `fd` takes now of `iov` (non-blocking gather
// writes, no SIGPIPE) and returns how many bytes went; `iov` is left
// advanced past them. Stops, without an error, when the socket is full or
// failed: the connection's writer meets a failure itself.
std::size_t SendNow(int fd, std::vector<iovec>& iov);

// async_write's completion condition for a connection's writer: all of it,
// each write offering what is left (up to Asio's 16 buffers a write).
// Asio's transfer_all() offers at most 64 KiB a write, and each write that
// completes at once is still a trip through the scheduler (a posted
// completion, a reactor poll): a 1 MiB message went out in 16 of them.
struct WriteAll {
  std::size_t operator()(const boost::system::error_code& ec,
                         std::size_t /*written*/) const {
    return ec ? 0 : std::numeric_limits<std::size_t>::max();
  }
};

// OK when `target` is "host:port" or "[v6]:port" (a TCP-based plane's
// Channel target); INVALID_ARGUMENT saying what a target is otherwise.
absl::Status CheckTarget(std::string_view target);

// Splits "host:port" or "[v6]:port"; INVALID_ARGUMENT otherwise.
absl::Status SplitTarget(std::string_view target, std::string& host,
                         std::string& port);

// Connects a socket on `executor` to `target` ("host:port"), resolving a
// host name. UNAVAILABLE when it fails or `timeout` passes (naming
// `timeout_variable`); CANCELLED when the awaiting coroutine is cancelled.
boost::asio::awaitable<absl::StatusOr<boost::asio::ip::tcp::socket>> Connect(
    boost::asio::any_io_executor executor, std::string_view target,
    std::chrono::milliseconds timeout, std::string_view timeout_variable);

}  // namespace dynrpc::internal::net

#endif  // DYNRPC_RUNTIME_SRC_NET_SOCKETS_H_
