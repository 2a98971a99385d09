#include "core/connection_pool.h"

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/deadline.h"

namespace dynrpc::internal {
namespace asio = boost::asio;

ConnectionPool::Lease::Lease(std::shared_ptr<ConnectionPool> pool,
                             std::shared_ptr<PooledConnection> connection)
    : pool_(std::move(pool)), connection_(std::move(connection)) {}

ConnectionPool::Lease::~Lease() {
  if (pool_) pool_->Release(*connection_);
}

ConnectionPool::ConnectionPool(Options options, Dialer dial)
    : options_(std::move(options)), dial_(std::move(dial)) {}

ConnectionPool::~ConnectionPool() {
  for (auto& connection : connections_) {
    connection->Close(absl::UnavailableError("the channel was destroyed"));
  }
  connections_.clear();
  ReportLocked();  // no other user is left
}

void ConnectionPool::ReportLocked() {
  if (options_.connections_gauge == nullptr) return;
  options_.connections_gauge->fetch_add(
      static_cast<int64_t>(connections_.size()) -
          static_cast<int64_t>(reported_),
      std::memory_order_relaxed);
  reported_ = connections_.size();
}

std::optional<ConnectionPool::Lease> ConnectionPool::TryAcquire() {
  std::lock_guard lock(mu_);
  return TryAcquireLocked();
}

std::optional<ConnectionPool::Lease> ConnectionPool::TryAcquireLocked() {
  std::erase_if(connections_, [](const auto& c) { return !c->accepting(); });
  ReportLocked();
  std::shared_ptr<PooledConnection> best;
  for (const auto& c : connections_) {
    if (c->calls_ < c->capacity() &&
        (best == nullptr || c->calls_ < best->calls_)) {
      best = c;
    }
  }
  if (best == nullptr) return std::nullopt;
  if (++best->calls_ == 1) best->OnCallsOpen(true);
  return Lease(shared_from_this(), std::move(best));
}

asio::awaitable<absl::StatusOr<ConnectionPool::Lease>>
ConnectionPool::AcquireForCall(std::optional<Clock::time_point> deadline,
                               OpenCancel& cancel,
                               const asio::any_io_executor& executor) {
  if (std::optional<Lease> lease = TryAcquire()) co_return *std::move(lease);
  co_return co_await WithDeadline(
      Acquire(), deadline.value_or(Clock::time_point::max()),
      "the call's deadline passed while it waited for a connection",
      /*context=*/nullptr, cancel.Arm(executor));
}

asio::awaitable<absl::StatusOr<ConnectionPool::Lease>>
ConnectionPool::Acquire() {
  // The pool lives while a caller waits in it (a waiter's cleanup uses it).
  std::shared_ptr<ConnectionPool> self = shared_from_this();
  for (;;) {
    std::shared_ptr<WakeChannel> waiter;
    {
      std::lock_guard lock(mu_);
      if (std::optional<Lease> lease = TryAcquireLocked()) {
        co_return *std::move(lease);
      }
      if (!dialing_ && connections_.size() < options_.max_connections) {
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
      auto [ec, outcome] = co_await waiter->async_receive(
          asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return absl::CancelledError(
            "cancelled while waiting for a connection");
      }
      woken = true;
      if (!outcome.ok()) co_return outcome;  // the dial we waited for failed
      continue;
    }
    absl::StatusOr<std::shared_ptr<PooledConnection>> connection =
        absl::CancelledError("dial cancelled");
    {
      // Also runs if the dial is cancelled: the waiters retry.
      absl::Cleanup done_dialing = [this, &connection] {
        std::lock_guard lock(mu_);
        dialing_ = false;
        if (connection.ok()) {
          // Ours before anyone else can see it.
          (*connection)->calls_ = 1;
          (*connection)->OnCallsOpen(true);
          connections_.push_back(*connection);
          ReportLocked();
        }
        absl::Status outcome =
            connection.ok() || absl::IsCancelled(connection.status())
                ? absl::OkStatus()
                : connection.status();
        for (auto& w : dial_waiters_) {
          w->try_send(boost::system::error_code{}, outcome);
        }
        dial_waiters_.clear();
      };
      connection = co_await dial_(*this);
    }
    if (!connection.ok()) co_return connection.status();
    co_return Lease(shared_from_this(), *std::move(connection));
  }
}

void ConnectionPool::Release(PooledConnection& connection) {
  std::shared_ptr<PooledConnection> closing;
  {
    std::lock_guard lock(mu_);
    if (--connection.calls_ == 0) {
      connection.OnCallsOpen(false);
      // Past max_idle unused connections, this one closes now.
      std::size_t idle = std::count_if(
          connections_.begin(), connections_.end(),
          [](const auto& c) { return c->calls_ == 0 && c->accepting(); });
      auto it = std::find_if(
          connections_.begin(), connections_.end(),
          [&](const auto& c) { return c.get() == &connection; });
      if (idle > options_.max_idle && it != connections_.end()) {
        closing = std::move(*it);
        connections_.erase(it);
        ReportLocked();
      }
    }
    WakeSlotWaiterLocked();
  }
  // Outside the mutex: Close() runs the connection's close hooks.
  if (closing) {
    closing->Close(absl::UnavailableError(absl::StrCat(
        "more than ", options_.max_idle_setting, " idle connections")));
  }
}

bool ConnectionPool::CloseIfIdle(PooledConnection& connection,
                                 absl::Status why) {
  std::shared_ptr<PooledConnection> closing;
  {
    std::lock_guard lock(mu_);
    if (connection.calls_ > 0) return false;
    auto it = std::find_if(
        connections_.begin(), connections_.end(),
        [&](const auto& c) { return c.get() == &connection; });
    if (it != connections_.end()) {
      closing = std::move(*it);
      connections_.erase(it);
      ReportLocked();
    }
  }
  connection.Close(std::move(why));
  return true;
}

std::vector<std::shared_ptr<PooledConnection>> ConnectionPool::connections()
    const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<PooledConnection>> open;
  for (const auto& c : connections_) {
    if (c->accepting()) open.push_back(c);
  }
  return open;
}

void ConnectionPool::WakeSlotWaiterLocked() {
  while (!slot_waiters_.empty()) {
    std::shared_ptr<WakeChannel> w = std::move(slot_waiters_.front());
    slot_waiters_.pop_front();
    if (w->try_send(boost::system::error_code{}, absl::OkStatus())) return;
  }
}

std::shared_ptr<ConnectionPool> ConnectionPools::For(std::string_view target) {
  // Looked up without building a std::string: this runs on every call.
  absl::string_view key(target.data(), target.size());
  std::lock_guard lock(mu_);
  if (auto it = pools_.find(key); it != pools_.end()) return it->second;
  std::shared_ptr<ConnectionPool> pool = make_(target);
  pools_.emplace(std::string(target), pool);
  return pool;
}

std::shared_ptr<ConnectionPool> ConnectionPools::Find(
    std::string_view target) const {
  std::lock_guard lock(mu_);
  auto it = pools_.find(absl::string_view(target.data(), target.size()));
  return it == pools_.end() ? nullptr : it->second;
}

void ConnectionPools::Clear() {
  absl::flat_hash_map<std::string, std::shared_ptr<ConnectionPool>> pools;
  {
    std::lock_guard lock(mu_);
    pools.swap(pools_);
  }
  // Destroyed outside the mutex: a pool closes its connections.
}

}  // namespace dynrpc::internal
