#include "tcp/tcp_client.h"

#include <algorithm>
#include <chrono>
#include <list>
#include <utility>
#include <variant>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/connect.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/experimental/concurrent_channel.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "tcp/framed_socket.h"
#include "tcp/limits.h"

namespace dynrpc::internal::tcp {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

using Reply = absl::StatusOr<std::string>;
using ReplyChannel = asio::experimental::concurrent_channel<void(
    boost::system::error_code, Reply)>;
// Wakes a caller waiting for a connection; carries the failure of the dial it
// waited for, if that failed.
using WakeChannel = asio::experimental::concurrent_channel<void(
    boost::system::error_code, absl::Status)>;

// Splits "host:port" or "[v6]:port".
absl::Status SplitTarget(absl::string_view target, std::string& host,
                         std::string& port) {
  size_t colon = target.rfind(':');
  uint32_t n = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(target.substr(colon + 1), &n) || n == 0 ||
      n > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid TCP target '", target, "': expected host:port"));
  }
  absl::string_view h = target.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  }
  if (h.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid TCP target '", target, "': expected host:port"));
  }
  host = std::string(h);
  port = std::string(target.substr(colon + 1));
  return absl::OkStatus();
}

}  // namespace

// One multiplexed connection: calls are matched to responses by call id.
class ClientConnection {
 public:
  explicit ClientConnection(std::shared_ptr<FramedSocket> socket)
      : socket_(std::move(socket)) {}

  // Sends a request frame (`prefix` from EncodeRequestPrefix, any call id)
  // and waits for its response. If the awaiting coroutine is cancelled the
  // server is told (a CANCEL frame) and the call yields CANCELLED.
  asio::awaitable<Reply> Call(std::string prefix, std::string payload) {
    auto reply =
        std::make_shared<ReplyChannel>(co_await asio::this_coro::executor, 1);
    uint64_t id;
    {
      std::lock_guard lock(mu_);
      if (closed_) co_return close_status_;
      id = next_id_++;
      pending_.emplace(id, reply);
    }
    // Runs also when the wait below throws because the call was cancelled.
    absl::Cleanup forget = [this, id] {
      bool was_pending;
      {
        std::lock_guard lock(mu_);
        was_pending = pending_.erase(id) > 0;
      }
      if (was_pending) socket_->Send(EncodeCancel(id));
    };
    SetCallId(prefix, id);
    socket_->Send(std::move(prefix), std::move(payload));
    auto [ec, result] = co_await reply->async_receive(as_tuple(use_awaitable));
    if (ec) co_return absl::CancelledError("call cancelled");
    co_return std::move(result);
  }

  // Delivers responses until the connection fails, then fails every call
  // still waiting with the reason (UNAVAILABLE for a lost connection). The
  // coroutine owns `self`.
  static asio::awaitable<void> ReadLoop(std::shared_ptr<ClientConnection> self) {
    // Every wait below uses as_tuple: cancellation arrives as an error code
    // and the cleanup after the loop still runs.
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await self->ReadResponses();
  }

 private:
  asio::awaitable<void> ReadResponses() {
    absl::Status why;
    for (;;) {
      absl::StatusOr<InFrame> frame = co_await socket_->ReadFrame();
      if (!frame.ok()) {
        // A lost connection, or a peer whose frames cannot be trusted:
        // either way the connection is gone for its calls.
        why = absl::IsUnavailable(frame.status())
                  ? frame.status()
                  : absl::UnavailableError(absl::StrCat(
                        "connection to ", socket_->peer(),
                        " closed: ", frame.status().message()));
        break;
      }
      const FrameHeader& header = frame->header;
      if (header.type != FrameType::kResponse) {
        why = absl::UnavailableError(absl::StrCat(
            "connection to ", socket_->peer(),
            " closed: malformed frame: unexpected frame type ",
            static_cast<int>(header.type)));
        break;
      }
      std::shared_ptr<ReplyChannel> reply;
      {
        std::lock_guard lock(mu_);
        auto it = pending_.find(header.call_id);
        if (it == pending_.end()) continue;  // cancelled meanwhile
        reply = std::move(it->second);
        pending_.erase(it);
      }
      reply->try_send(boost::system::error_code{}, ToReply(*std::move(frame)));
    }
    FailAll(why);
    socket_->Close();
  }


 public:
  void Close() {
    FailAll(absl::UnavailableError(
        absl::StrCat("connection to ", socket_->peer(), " closed by the client")));
    socket_->Close();
  }

  bool closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }

  const std::shared_ptr<FramedSocket>& socket() const { return socket_; }

  // Calls using this connection; guarded by the pool's mutex.
  std::size_t in_flight = 0;

 private:
  Reply ToReply(InFrame frame) {
    if (frame.oversized) {
      return OversizedError("response", frame.header,
                            socket_->max_message_size());
    }
    absl::StatusOr<ResponseHead> head = DecodeResponseHead(frame.head);
    if (!head.ok()) return head.status();
    if (head->code != absl::StatusCode::kOk) {
      return absl::Status(head->code, head->message);
    }
    return std::move(frame.payload);
  }

  void FailAll(const absl::Status& why) {
    absl::flat_hash_map<uint64_t, std::shared_ptr<ReplyChannel>> pending;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      close_status_ = why;
      pending.swap(pending_);
    }
    for (auto& [id, reply] : pending) {
      reply->try_send(boost::system::error_code{}, why);
    }
  }

  std::shared_ptr<FramedSocket> socket_;
  std::mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<ReplyChannel>> pending_;
  uint64_t next_id_ = 1;
  bool closed_ = false;
  absl::Status close_status_;
};

// The connections to one target.
class ConnectionPool : public std::enable_shared_from_this<ConnectionPool> {
 public:
  // A slot on a connection: released (and a waiter woken) on destruction.
  class Lease {
   public:
    Lease(std::shared_ptr<ConnectionPool> pool,
          std::shared_ptr<ClientConnection> connection)
        : pool_(std::move(pool)), connection_(std::move(connection)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease() {
      if (pool_) pool_->Release(*connection_);
    }
    ClientConnection& connection() { return *connection_; }

   private:
    std::shared_ptr<ConnectionPool> pool_;
    std::shared_ptr<ClientConnection> connection_;
  };

  ConnectionPool(std::string target, const TcpConfig& config,
                 std::shared_ptr<TaskGroup> tasks)
      : target_(std::move(target)), config_(config), tasks_(std::move(tasks)) {}

  ~ConnectionPool() {
    for (auto& connection : connections_) connection->Close();
  }

  // A slot on the least-loaded open connection. When every connection is
  // full, one caller dials a new one (while the pool has room) and the others
  // wait for that dial: its failure fails them too, so a dead server costs
  // one connect attempt, not one per call. When the pool is full, callers
  // wait for a slot to free up.
  asio::awaitable<absl::StatusOr<Lease>> Acquire() {
    for (;;) {
      std::shared_ptr<WakeChannel> waiter;
      {
        std::lock_guard lock(mu_);
        std::erase_if(connections_,
                      [](const auto& c) { return c->closed(); });
        std::shared_ptr<ClientConnection> best;
        for (const auto& c : connections_) {
          if (c->in_flight < config_.channel_buffer &&
              (best == nullptr || c->in_flight < best->in_flight)) {
            best = c;
          }
        }
        if (best != nullptr) {
          ++best->in_flight;
          co_return Lease(shared_from_this(), std::move(best));
        }
        if (!dialing_ && connections_.size() < config_.pool_size) {
          dialing_ = true;
        } else {
          waiter = std::make_shared<WakeChannel>(
              co_await asio::this_coro::executor, 1);
          (dialing_ ? dial_waiters_ : slot_waiters_).push_back(waiter);
        }
      }
      if (waiter) {
        bool woken = false;
        // Also runs when the wait throws on cancellation. A waiter that was
        // woken but gives up passes the freed slot on.
        absl::Cleanup leave = [this, &waiter, &woken] {
          if (woken) return;
          std::lock_guard lock(mu_);
          std::size_t queued =
              dial_waiters_.remove(waiter) + slot_waiters_.remove(waiter);
          if (queued == 0) WakeSlotWaiterLocked();
        };
        auto [ec, outcome] =
            co_await waiter->async_receive(as_tuple(use_awaitable));
        if (ec) {
          co_return absl::CancelledError(
              "cancelled while waiting for a connection");
        }
        woken = true;
        if (!outcome.ok()) co_return outcome;  // the dial we waited for failed
        continue;
      }
      absl::StatusOr<std::shared_ptr<ClientConnection>> connection =
          absl::CancelledError("dial cancelled");
      {
        // Also runs if the dial is cancelled: the waiters retry.
        absl::Cleanup done_dialing = [this, &connection] {
          std::lock_guard lock(mu_);
          dialing_ = false;
          if (connection.ok()) {
            // Ours before anyone else can see it.
            (*connection)->in_flight = 1;
            connections_.push_back(*connection);
          }
          absl::Status outcome = connection.ok() || absl::IsCancelled(
                                                        connection.status())
                                     ? absl::OkStatus()
                                     : connection.status();
          for (auto& w : dial_waiters_) {
            w->try_send(boost::system::error_code{}, outcome);
          }
          dial_waiters_.clear();
        };
        connection = co_await Dial();
      }
      if (!connection.ok()) co_return connection.status();
      co_return Lease(shared_from_this(), std::move(*connection));
    }
  }

 private:
  asio::awaitable<absl::StatusOr<std::shared_ptr<ClientConnection>>> Dial() {
    using namespace asio::experimental::awaitable_operators;
    std::string host, port;
    if (absl::Status s = SplitTarget(target_, host, port); !s.ok()) {
      co_return s;
    }
    asio::any_io_executor strand = tasks_->NewStrand();
    tcp::resolver resolver(strand);
    tcp::socket socket(strand);
    asio::steady_timer timer(strand, config_.connect_timeout);
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
      auto [resolve_ec, endpoints] = co_await resolver.async_resolve(
          host, port, as_tuple(use_awaitable));
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
    asio::cancellation_state state =
        co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) {
      // Our caller gave up (its deadline); say so, so that callers waiting
      // for this dial try again instead of failing with our reason.
      co_return absl::CancelledError("dial cancelled");
    }
    if (outcome.index() == 1 || timed_out) {
      co_return absl::UnavailableError(absl::StrCat(
          "connecting to ", target_, " timed out after ",
          config_.connect_timeout.count(), " ms (DYN_TCP_CONNECT_TIMEOUT)"));
    }
    if (boost::system::error_code ec = std::get<0>(outcome)) {
      co_return absl::UnavailableError(
          absl::StrCat("cannot connect to ", target_, ": ", ec.message()));
    }
    auto framed = std::make_shared<FramedSocket>(std::move(socket),
                                                 config_.max_message_size);
    auto connection = std::make_shared<ClientConnection>(framed);
    tasks_->Spawn(strand, FramedSocket::WriteLoop(framed), "tcp client writer");
    tasks_->Spawn(strand, ClientConnection::ReadLoop(connection),
                  "tcp client reader");
    co_return connection;
  }

  void Release(ClientConnection& connection) {
    std::lock_guard lock(mu_);
    --connection.in_flight;
    WakeSlotWaiterLocked();
  }

  void WakeSlotWaiterLocked() {
    while (!slot_waiters_.empty()) {
      std::shared_ptr<WakeChannel> w = std::move(slot_waiters_.front());
      slot_waiters_.pop_front();
      if (w->try_send(boost::system::error_code{}, absl::OkStatus())) return;
    }
  }

  const std::string target_;
  const TcpConfig config_;
  const std::shared_ptr<TaskGroup> tasks_;  // the client's
  std::mutex mu_;
  std::vector<std::shared_ptr<ClientConnection>> connections_;
  bool dialing_ = false;  // one dial at a time
  // Callers waiting for the dial in progress; told its failure.
  std::list<std::shared_ptr<WakeChannel>> dial_waiters_;
  // Callers waiting for a slot on a full pool.
  std::list<std::shared_ptr<WakeChannel>> slot_waiters_;
};

TcpClient::TcpClient(TcpConfig config, asio::any_io_executor executor)
    : config_(std::move(config)),
      executor_(std::move(executor)),
      tasks_(std::make_shared<TaskGroup>(executor_)) {}

TcpClient::~TcpClient() {
  {
    std::lock_guard lock(mu_);
    pools_.clear();
  }
  tasks_->CancelAll();
}

std::shared_ptr<ConnectionPool> TcpClient::PoolFor(std::string_view target) {
  std::lock_guard lock(mu_);
  std::shared_ptr<ConnectionPool>& pool = pools_[std::string(target)];
  if (pool == nullptr) {
    pool = std::make_shared<ConnectionPool>(std::string(target), config_,
                                            tasks_);
  }
  return pool;
}

asio::awaitable<absl::StatusOr<std::string>> TcpClient::Unary(
    std::string_view target, CallRequest request) {
  // Waits below use as_tuple, and their cleanup must run when the core
  // cancels the call: cancellation arrives as an error code, not a throw.
  co_await asio::this_coro::throw_if_cancelled(false);
  // Refuse what the server would refuse, before anything is written.
  if (request.payload.size() > config_.max_message_size) {
    co_return OversizedError("request", request.payload.size(),
                             config_.max_message_size);
  }
  RequestHead head;
  head.method = std::move(request.method);
  head.metadata = std::move(request.metadata);
  absl::StatusOr<std::string> prefix =
      EncodeRequestPrefix(0, head, request.payload.size());
  if (!prefix.ok()) co_return prefix.status();

  std::shared_ptr<ConnectionPool> pool = PoolFor(target);
  absl::StatusOr<ConnectionPool::Lease> lease = co_await pool->Acquire();
  if (!lease.ok()) co_return lease.status();
  if (request.deadline) {
    // The time left when the request is written, not when it was made.
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(
        *request.deadline - Clock::now());
    SetTimeout(*prefix, static_cast<uint64_t>(std::max<int64_t>(left.count(), 1)));
  }
  co_return co_await lease->connection().Call(std::move(*prefix),
                                              std::move(request.payload));
}

}  // namespace dynrpc::internal::tcp
