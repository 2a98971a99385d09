#include "net/sockets.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <optional>
#include <utility>
#include <variant>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/connect.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/log.h"
#include "core/task_group.h"
#include "dynrpc/config.h"

namespace dynrpc::internal::net {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;
using asio::ip::tcp;

std::optional<std::string> NonLoopbackNotice(const asio::ip::address& address,
                                             std::string_view advertised,
                                             const ListenSpec& spec) {
  if (address.is_loopback()) return std::nullopt;
  std::string variable(spec.host_variable);
  return absl::StrCat(
      "serving on ", std::string(advertised),
      ", which other machines can reach (",
      spec.host.empty()
          ? absl::StrCat(variable,
                         " is not set: the first non-loopback interface's "
                         "address")
          : absl::StrCat(variable, "=", spec.host),
      "); set ", variable, "=127.0.0.1 to serve this machine only");
}

absl::StatusOr<Listener> Listen(asio::any_io_executor executor,
                                const ListenSpec& spec) {
  std::string host = spec.host.empty() ? DetectHostAddress() : spec.host;
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    // A host name: take its first address.
    tcp::resolver resolver(executor);
    auto results = resolver.resolve(host, "0", ec);
    if (ec || results.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot resolve ", std::string(spec.host_variable), "=",
                       host, ": ", ec.message()));
    }
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, spec.port);
  tcp::acceptor acceptor(executor);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::string where = address.is_v6()
                            ? absl::StrCat("[", host, "]:", spec.port)
                            : absl::StrCat(host, ":", spec.port);
    std::string variable(spec.port_variable);
    std::string hint;
    if (spec.port != 0 && spec.port_from_environment) {
      hint = absl::StrCat(" (port ", spec.port, " set by ", variable,
                          "; unset it or use 0 to let the OS pick a free "
                          "port)");
    } else if (spec.port != 0) {
      hint = absl::StrCat(" (port ", spec.port, ", the default of ", variable,
                          ", which is not set; set ", variable,
                          "=0 to let the OS pick a free port, or another "
                          "port)");
    }
    std::string why = ec == asio::error::address_in_use
                          ? std::string("address already in use")
                          : ec.message();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", where, ": ", why, hint));
  }
  uint16_t port = acceptor.local_endpoint(ec).port();
  std::string advertised =
      address.is_v6() ? absl::StrCat("[", address.to_string(), "]:", port)
                      : absl::StrCat(address.to_string(), ":", port);
  if (std::optional<std::string> notice =
          NonLoopbackNotice(address, advertised, spec)) {
    DYNRPC_LOG(kWarn, "dynrpc::net", *notice);
  }
  return Listener{std::move(acceptor), std::move(advertised)};
}

asio::awaitable<void> AcceptLoop(
    tcp::acceptor& acceptor, Admission& connections,
    std::function<asio::any_io_executor()> new_strand,
    std::function<void(tcp::socket, asio::any_io_executor, Admission::Token)>
        on_accept) {
  co_await asio::this_coro::throw_if_cancelled(false);
  asio::steady_timer backoff(acceptor.get_executor());
  while (!co_await TaskCancelled()) {
    asio::any_io_executor strand = new_strand();
    auto [ec, socket] =
        co_await acceptor.async_accept(strand, as_tuple(use_awaitable));
    if (ec == asio::error::operation_aborted) break;
    if (ec) {
      backoff.expires_after(std::chrono::milliseconds(10));
      auto [wait_ec] = co_await backoff.async_wait(as_tuple(use_awaitable));
      if (wait_ec) break;
      continue;
    }
    std::optional<Admission::Token> token = connections.TryAcquire();
    if (!token) {
      // Over DYN_SERVER_MAX_CONNECTIONS: the peer sees the connection
      // closed before anything was read from it.
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    on_accept(std::move(socket), std::move(strand), *std::move(token));
  }
  boost::system::error_code ignored;
  acceptor.close(ignored);
}

asio::awaitable<void> Holding(Admission::Token token,
                              asio::awaitable<void> task) {
  co_await std::move(task);
}

std::size_t SendNow(int fd, std::vector<iovec>& iov) {
  std::size_t written = 0;
  std::size_t next = 0;  // the first iovec not wholly written
  while (next < iov.size()) {
    msghdr message{};
    message.msg_iov = &iov[next];
    message.msg_iovlen = std::min<std::size_t>(iov.size() - next, IOV_MAX);
    ssize_t n = ::sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // full (EAGAIN) or failed
    written += static_cast<std::size_t>(n);
    while (n > 0) {
      iovec& at = iov[next];
      if (static_cast<std::size_t>(n) < at.iov_len) {
        at.iov_base = static_cast<char*>(at.iov_base) + n;
        at.iov_len -= static_cast<std::size_t>(n);
        break;
      }
      n -= static_cast<ssize_t>(at.iov_len);
      ++next;
    }
  }
  return written;
}

std::string PrepareSocket(tcp::socket& socket) {
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  return remote.address().is_v6()
             ? absl::StrCat("[", remote.address().to_string(),
                            "]:", remote.port())
             : absl::StrCat(remote.address().to_string(), ":", remote.port());
}

void SetKeepalive(tcp::socket& socket, std::chrono::milliseconds idle,
                  std::chrono::milliseconds timeout) {
  int fd = socket.native_handle();
  int on = 1;
  int idle_s = static_cast<int>(std::max<int64_t>(
      1, std::chrono::ceil<std::chrono::seconds>(idle).count()));
  int interval_s = static_cast<int>(std::max<int64_t>(
      1, std::chrono::ceil<std::chrono::seconds>(timeout).count()));
  int count = 1;
  unsigned int user_timeout =
      static_cast<unsigned int>((idle + timeout).count());
  // Best effort: a socket that refuses an option keeps the kernel default.
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
             sizeof user_timeout);
}

absl::Status SplitTarget(std::string_view target_view, std::string& host,
                         std::string& port) {
  absl::string_view target(target_view.data(), target_view.size());
  size_t colon = target.rfind(':');
  uint32_t n = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(target.substr(colon + 1), &n) || n == 0 || n > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid target '", target,
        "': expected host:port, the address a server reports (for example "
        "127.0.0.1:50051)"));
  }
  absl::string_view h = target.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  }
  if (h.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid target '", target,
        "': expected host:port, the address a server reports (for example "
        "127.0.0.1:50051)"));
  }
  host = std::string(h);
  port = std::string(target.substr(colon + 1));
  return absl::OkStatus();
}

absl::Status CheckTarget(std::string_view target) {
  std::string host, port;
  return SplitTarget(target, host, port);
}

asio::awaitable<absl::StatusOr<tcp::socket>> Connect(
    asio::any_io_executor executor, std::string_view target,
    std::chrono::milliseconds timeout, std::string_view timeout_variable) {
  using namespace asio::experimental::awaitable_operators;
  std::string host, port;
  if (absl::Status s = SplitTarget(target, host, port); !s.ok()) co_return s;
  tcp::resolver resolver(executor);
  tcp::socket socket(executor);
  asio::steady_timer timer(executor, timeout);
  bool timed_out = false;
  auto connect = [&]() -> asio::awaitable<boost::system::error_code> {
    boost::system::error_code ec;
    asio::ip::address address = asio::ip::make_address(host, ec);
    if (!ec) {  // an IP address: no lookup
      auto [connect_ec] = co_await socket.async_connect(
          tcp::endpoint(address, static_cast<uint16_t>(std::stoi(port))),
          as_tuple(use_awaitable));
      co_return connect_ec;
    }
    auto [resolve_ec, endpoints] =
        co_await resolver.async_resolve(host, port, as_tuple(use_awaitable));
    if (resolve_ec) co_return resolve_ec;
    auto [connect_ec, endpoint] = co_await asio::async_connect(
        socket, endpoints, as_tuple(use_awaitable));
    co_return connect_ec;
  };
  // Asio 1.26 cannot cancel a lookup through a cancellation slot; the
  // watchdog cancels the resolver itself, on timeout or cancellation.
  auto watchdog = [&]() -> asio::awaitable<void> {
    auto [ec] = co_await timer.async_wait(as_tuple(use_awaitable));
    timed_out = !ec;
    resolver.cancel();
  };
  std::variant<boost::system::error_code, std::monostate> outcome =
      co_await (connect() || watchdog());
  asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
  if (state.cancelled() != asio::cancellation_type::none) {
    co_return absl::CancelledError("dial cancelled");
  }
  if (outcome.index() == 1 || timed_out) {
    co_return absl::UnavailableError(absl::StrCat(
        "connecting to ", std::string(target), " timed out after ",
        timeout.count(), " ms (", std::string(timeout_variable), ")"));
  }
  if (boost::system::error_code ec = std::get<0>(outcome)) {
    co_return absl::UnavailableError(absl::StrCat(
        "cannot connect to ", std::string(target), ": ", ec.message()));
  }
  co_return std::move(socket);
}

}  // namespace dynrpc::internal::net
