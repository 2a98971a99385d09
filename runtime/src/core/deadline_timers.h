// Many calls' deadlines on one timer.
#ifndef DYNRPC_RUNTIME_SRC_CORE_DEADLINE_TIMERS_H_
#define DYNRPC_RUNTIME_SRC_CORE_DEADLINE_TIMERS_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "boost/asio/any_io_executor.hpp"
#include "dynrpc/context.h"

namespace dynrpc::internal {

// A call arms its deadline here rather than on an Asio timer of its own.
// Every call carries a deadline (the planes' default request timeouts), and
// with one timer per call each call cost, on each side, a scheduler round
// (cancelling a timer posts its handler) and a `timerfd_settime` (a new
// earliest timer re-arms the reactor's timerfd). Here the one timer is set
// to the earliest pending deadline and left alone when a call ends before
// it: adding a deadline later than the armed one, and removing any, costs no
// system call and posts nothing. When the timer fires, it runs what has
// expired and re-arms for the earliest left.
//
// Thread-safe. Expiries run on the executor, outside any lock. Destroying
// the object drops what is pending (those never expire); handles may
// outlive it. Memory: a slot per deadline pending at once (reused), and a
// queue of at most twice that plus 64 entries (removed deadlines leave
// their entries behind until it is compacted).
class DeadlineTimers {
 public:
  // What a deadline ends: shared with the table until it expires or its
  // handle goes, so a call's own record can be it (no allocation of its
  // own).
  class Target {
   public:
    // The deadline passed. On the timer's executor; must not block.
    virtual void Expired() = 0;

   protected:
    ~Target() = default;
  };

  explicit DeadlineTimers(boost::asio::any_io_executor executor);
  ~DeadlineTimers();
  DeadlineTimers(const DeadlineTimers&) = delete;
  DeadlineTimers& operator=(const DeadlineTimers&) = delete;

  struct State;

  // A pending deadline; destroying or Cancel()ing it removes the deadline.
  // A callback that has already begun may still be running then: it must
  // own (or share) whatever it touches.
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& other) noexcept { *this = std::move(other); }
    Handle& operator=(Handle&& other) noexcept;
    ~Handle() { Cancel(); }
    void Cancel();

   private:
    friend class DeadlineTimers;
    Handle(std::weak_ptr<State> state, uint32_t slot, uint32_t generation)
        : state_(std::move(state)), slot_(slot), generation_(generation) {}
    std::weak_ptr<State> state_;  // empty: nothing pending
    uint32_t slot_ = 0;
    uint32_t generation_ = 0;
  };

  // Calls `target->Expired()` once `at` has passed, unless the handle goes
  // first.
  [[nodiscard]] Handle Add(Clock::time_point at,
                           std::shared_ptr<Target> target);

  // Deadlines pending, and entries in the queue (removed ones included):
  // the bound above, for tests.
  std::size_t pending() const;
  std::size_t queued() const;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_DEADLINE_TIMERS_H_
