// The core's connection pool over fake connections: which connection a call
// takes, when one is dialled, who waits, when an unused one closes.
#include "core/connection_pool.h"

#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/experimental/channel.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/polled_io.h"
#include "support/status_matchers.h"

namespace dynrpc::internal {
namespace {

namespace asio = boost::asio;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::PolledIo;
using ::dynrpc::testing::Ready;
using ::dynrpc::testing::StatusIs;
using ::testing::HasSubstr;
using Lease = ConnectionPool::Lease;

class FakeConnection final : public PooledConnection {
 public:
  explicit FakeConnection(std::size_t capacity) : capacity_(capacity) {}
  bool accepting() const override { return !closed.has_value(); }
  std::size_t capacity() const override { return capacity_; }
  void Close(absl::Status why) override {
    if (!closed) closed = std::move(why);
  }
  void OnCallsOpen(bool open) override { opened.push_back(open); }

  std::optional<absl::Status> closed;
  std::vector<bool> opened;  // each OnCallsOpen()

 private:
  std::size_t capacity_;
};

// A dialer the test completes by hand: each dial waits until the test
// answers it with Answer().
class Dials {
 public:
  explicit Dials(asio::io_context& io) : io_(io) {}

  ConnectionPool::Dialer dialer() {
    return [this](ConnectionPool&)
               -> asio::awaitable<
                   absl::StatusOr<std::shared_ptr<PooledConnection>>> {
      ++started;
      auto gate = std::make_shared<Gate>(io_, 1);
      gates_.push_back(gate);
      auto [ec, outcome] =
          co_await gate->async_receive(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return absl::CancelledError("dial abandoned");
      if (!outcome.ok()) co_return outcome;
      auto connection = std::make_shared<FakeConnection>(capacity);
      made.push_back(connection);
      co_return connection;
    };
  }
  // Ends the oldest dial still waiting: a connection, or `failure`.
  void Answer(absl::Status failure = absl::OkStatus()) {
    ASSERT_FALSE(gates_.empty());
    gates_.front()->try_send(boost::system::error_code{}, failure);
    gates_.erase(gates_.begin());
  }

  std::size_t capacity = 2;
  int started = 0;
  std::vector<std::shared_ptr<FakeConnection>> made;

 private:
  using Gate = asio::experimental::channel<void(boost::system::error_code,
                                                absl::Status)>;
  asio::io_context& io_;
  std::vector<std::shared_ptr<Gate>> gates_;
};

class ConnectionPoolTest : public ::testing::Test {
 protected:
  std::shared_ptr<ConnectionPool> NewPool(ConnectionPool::Options options) {
    return std::make_shared<ConnectionPool>(std::move(options),
                                            dials_.dialer());
  }
  // Acquires one slot, answering the dial if it needs one.
  Lease AcquireDialling(ConnectionPool& pool) {
    std::future<absl::StatusOr<Lease>> f = io_.Start(pool.Acquire());
    if (!Ready(f)) {
      dials_.Answer();
      io_.Poll();
    }
    absl::StatusOr<Lease> lease = f.get();
    EXPECT_THAT(lease, IsOk());
    return *std::move(lease);
  }

  PolledIo io_;
  Dials dials_{io_.io()};
};

TEST_F(ConnectionPoolTest, CallsTakeTheLeastLoadedConnectionWithRoom) {
  auto pool = NewPool({});
  EXPECT_FALSE(pool->TryAcquire().has_value());  // nothing dialled yet
  Lease a = AcquireDialling(*pool);
  Lease b = AcquireDialling(*pool);  // the first one has room: no dial
  EXPECT_EQ(dials_.started, 1);
  Lease c = AcquireDialling(*pool);  // full (2): a second connection
  ASSERT_EQ(dials_.started, 2);
  std::optional<Lease> d = pool->TryAcquire();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(&d->get<FakeConnection>(), dials_.made[1].get());  // less loaded
  EXPECT_FALSE(pool->TryAcquire().has_value());
  EXPECT_EQ(dials_.made[0]->opened, std::vector<bool>{true});
}

TEST_F(ConnectionPoolTest, OneDialServesEveryWaiterAndItsFailureFailsThemAll) {
  auto pool = NewPool({});
  std::vector<std::future<absl::StatusOr<Lease>>> waiting;
  for (int i = 0; i < 5; ++i) waiting.push_back(io_.Start(pool->Acquire()));
  EXPECT_EQ(dials_.started, 1);
  dials_.Answer(absl::UnavailableError("connection refused"));
  io_.Poll();
  for (auto& f : waiting) {
    ASSERT_TRUE(Ready(f));
    EXPECT_THAT(f.get(), StatusIs(absl::StatusCode::kUnavailable,
                                  HasSubstr("connection refused")));
  }
  EXPECT_EQ(dials_.started, 1);  // a dead server cost one attempt
  // A success serves the waiters that fit; the rest dial again.
  for (int i = 0; i < 3; ++i) waiting[i] = io_.Start(pool->Acquire());
  dials_.Answer();
  io_.Poll();
  EXPECT_TRUE(Ready(waiting[0]) && Ready(waiting[1]));
  EXPECT_FALSE(Ready(waiting[2]));  // it found the new one full: it dials
  EXPECT_EQ(dials_.started, 3);
  dials_.Answer();
  io_.Poll();
  EXPECT_TRUE(Ready(waiting[2]));
}

TEST_F(ConnectionPoolTest, AFullPoolMakesCallsWaitForASlot) {
  ConnectionPool::Options options;
  options.max_connections = 1;
  auto pool = NewPool(options);
  std::optional<Lease> a = AcquireDialling(*pool);
  Lease b = AcquireDialling(*pool);
  std::future<absl::StatusOr<Lease>> waiting = io_.Start(pool->Acquire());
  EXPECT_FALSE(Ready(waiting));
  EXPECT_EQ(dials_.started, 1);  // no room for a second connection
  a.reset();
  io_.Poll();
  ASSERT_TRUE(Ready(waiting));
  EXPECT_THAT(waiting.get(), IsOk());
}

TEST_F(ConnectionPoolTest, ConnectionsPastMaxIdleCloseWhenTheirLastCallEnds) {
  ConnectionPool::Options options;
  options.max_idle = 1;
  options.max_idle_setting = "MAX_IDLE=1";
  dials_.capacity = 1;
  auto pool = NewPool(options);
  std::optional<Lease> a = AcquireDialling(*pool);
  std::optional<Lease> b = AcquireDialling(*pool);
  a.reset();
  EXPECT_FALSE(dials_.made[0]->closed.has_value());  // the one idle kept
  b.reset();
  ASSERT_TRUE(dials_.made[1]->closed.has_value());
  EXPECT_THAT(*dials_.made[1]->closed,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("MAX_IDLE=1")));
  EXPECT_EQ(dials_.made[1]->opened, (std::vector<bool>{true, false}));
  EXPECT_EQ(pool->connections().size(), 1u);
}

TEST_F(ConnectionPoolTest, AnIdleConnectionClosesOnlyWithoutCalls) {
  auto pool = NewPool({});
  std::optional<Lease> a = AcquireDialling(*pool);
  FakeConnection& connection = *dials_.made[0];
  EXPECT_FALSE(pool->CloseIfIdle(connection, absl::UnavailableError("idle")));
  EXPECT_FALSE(connection.closed.has_value());
  a.reset();
  EXPECT_TRUE(pool->CloseIfIdle(connection, absl::UnavailableError("idle")));
  EXPECT_THAT(connection.closed,
              ::testing::Optional(StatusIs(absl::StatusCode::kUnavailable)));
  EXPECT_TRUE(pool->connections().empty());
}

TEST_F(ConnectionPoolTest, TheLastOwnerClosesEveryConnection) {
  auto pool = NewPool({});
  std::optional<Lease> a = AcquireDialling(*pool);
  std::shared_ptr<FakeConnection> connection = dials_.made[0];
  pool.reset();
  EXPECT_FALSE(connection->closed.has_value());  // the lease keeps it
  a.reset();
  EXPECT_THAT(connection->closed,
              ::testing::Optional(StatusIs(absl::StatusCode::kUnavailable,
                                           HasSubstr("channel was destroyed"))));
}

}  // namespace
}  // namespace dynrpc::internal
