// The connections a client keeps to one target, for the planes that
// multiplex calls over connections (TCP, HTTP/2): which connection a call
// takes, when one is dialled, who waits, when an unused one closes. The
// plane supplies the dial and what a connection can carry.
#ifndef DYNRPC_RUNTIME_SRC_CORE_CONNECTION_POOL_H_
#define DYNRPC_RUNTIME_SRC_CORE_CONNECTION_POOL_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <limits>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/experimental/concurrent_channel.hpp"
#include "core/client_call.h"
#include "dynrpc/context.h"

namespace dynrpc::internal {

// A plane's connection, as its pool sees it.
class PooledConnection {
 public:
  virtual ~PooledConnection() = default;

  // Still takes new calls.
  virtual bool accepting() const = 0;
  // How many calls it may carry at once, now.
  virtual std::size_t capacity() const = 0;
  // Ends the connection; its calls end with `why`. Any thread, idempotent.
  virtual void Close(absl::Status why) = 0;
  // Its first call started or its last one ended. Under the pool's lock:
  // must not block or call the pool.
  virtual void OnCallsOpen(bool open) {}

 private:
  friend class ConnectionPool;
  std::size_t calls_ = 0;  // under the pool's mutex
};

// A call takes a slot on the least-loaded open connection with room. When
// every one is full, one caller dials a new connection (while the pool is
// under max_connections) and the others wait for that dial: its failure
// fails them too, so a dead server costs one connect attempt, not one per
// call. When the pool is full, callers wait for a slot. Past max_idle
// unused connections, a connection closes when its last call ends.
class ConnectionPool : public std::enable_shared_from_this<ConnectionPool> {
 public:
  struct Options {
    std::size_t max_connections = std::numeric_limits<std::size_t>::max();
    std::size_t max_idle = std::numeric_limits<std::size_t>::max();
    std::string max_idle_setting;  // "DYN_HTTP2_POOL_MAX_IDLE_PER_HOST=100"
    // Counts the pool's connections (the process's metrics), if set.
    std::atomic<int64_t>* connections_gauge = nullptr;
  };
  // Opens a new connection for `pool` (which the connection may keep
  // weakly, for CloseIfIdle()). Cancelling the awaiting coroutine abandons
  // the dial.
  using Dialer = std::function<
      boost::asio::awaitable<absl::StatusOr<std::shared_ptr<PooledConnection>>>(
          ConnectionPool& pool)>;

  // A slot on a connection, given back (and a waiter woken) on destruction.
  // It keeps the pool and the connection alive.
  class Lease {
   public:
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease();

    // The connection, as the plane's type.
    template <typename T>
    T& get() const {
      return static_cast<T&>(*connection_);
    }
    template <typename T>
    std::shared_ptr<T> shared() const {
      return std::static_pointer_cast<T>(connection_);
    }

   private:
    friend class ConnectionPool;
    Lease(std::shared_ptr<ConnectionPool> pool,
          std::shared_ptr<PooledConnection> connection);

    std::shared_ptr<ConnectionPool> pool_;
    std::shared_ptr<PooledConnection> connection_;
  };

  ConnectionPool(Options options, Dialer dial);
  // Closes every connection: "the channel was destroyed".
  ~ConnectionPool();

  // A slot on an open connection now, if one is free.
  std::optional<Lease> TryAcquire();
  // A slot, dialling or waiting for one as above. Cancelling the awaiting
  // coroutine gives up (CANCELLED), passing on any slot it was woken for.
  boost::asio::awaitable<absl::StatusOr<Lease>> Acquire();
  // A slot for a call: TryAcquire(), else Acquire() until `deadline`
  // (DEADLINE_EXCEEDED) or until `cancel` fires.
  boost::asio::awaitable<absl::StatusOr<Lease>> AcquireForCall(
      std::optional<Clock::time_point> deadline, OpenCancel& cancel,
      const boost::asio::any_io_executor& executor);

  // Closes `connection` with `why` if no call uses it; false when a call
  // took it meanwhile. For a plane's idle timeout.
  bool CloseIfIdle(PooledConnection& connection, absl::Status why);

  // The open connections now.
  std::vector<std::shared_ptr<PooledConnection>> connections() const;

 private:
  using WakeChannel = boost::asio::experimental::concurrent_channel<void(
      boost::system::error_code, absl::Status)>;

  std::optional<Lease> TryAcquireLocked();
  void Release(PooledConnection& connection);
  void WakeSlotWaiterLocked();

  const Options options_;
  const Dialer dial_;
  mutable std::mutex mu_;
  // Brings options_.connections_gauge to connections_.size(). Under mu_.
  void ReportLocked();
  std::size_t reported_ = 0;  // under mu_
  std::vector<std::shared_ptr<PooledConnection>> connections_;
  bool dialing_ = false;  // one dial at a time
  // Callers waiting for the dial in progress; told its failure.
  std::list<std::shared_ptr<WakeChannel>> dial_waiters_;
  // Callers waiting for a slot on a full pool.
  std::list<std::shared_ptr<WakeChannel>> slot_waiters_;
};

// A client's pools, one per target, each made on first use by `make`.
class ConnectionPools {
 public:
  using Make =
      std::function<std::shared_ptr<ConnectionPool>(std::string_view target)>;
  explicit ConnectionPools(Make make) : make_(std::move(make)) {}
  // Drops every pool: each closes its connections once its last lease ends.
  ~ConnectionPools() { Clear(); }

  std::shared_ptr<ConnectionPool> For(std::string_view target);
  // The pool for `target` if there is one.
  std::shared_ptr<ConnectionPool> Find(std::string_view target) const;
  void Clear();

 private:
  const Make make_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<ConnectionPool>> pools_;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_CONNECTION_POOL_H_
