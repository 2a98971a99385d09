// The liveness policy, once for every plane: when to probe a peer, when a
// silent peer is lost, when an unused connection closes. A plane supplies
// only the probe (a TCP PING frame, an HTTP/2 PING, a NATS heartbeat) and
// what ending a connection means; `Liveness` decides, and
// `WatchedConnection` runs the decisions for a connection.
//
// The bound every plane keeps: a peer heard from last at `t`, with calls
// open, is probed at t + interval and is lost at t + interval + timeout
// unless something arrives first.
#ifndef DYNRPC_RUNTIME_SRC_CORE_LIVENESS_H_
#define DYNRPC_RUNTIME_SRC_CORE_LIVENESS_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/steady_timer.hpp"
#include "dynrpc/context.h"

namespace dynrpc::internal {

class Liveness {
 public:
  struct Policy {
    Clock::duration interval{};  // silent this long with calls open: probe
    Clock::duration timeout{};   // silent this long after a probe: lost
    // No calls for this long: the connection closes (zero: as soon as its
    // last call ends; nullopt: never).
    std::optional<Clock::duration> idle_close = std::nullopt;
    // Whether the peer answers a probe (a PING and its PONG): then a probe
    // goes only when the peer has been silent. Else the probes are
    // heartbeats both sides send every interval whatever they hear.
    bool peer_answers_probes = true;
    // For the errors: what a probe is ("keepalive PING"), and the settings
    // with their values ("DYN_TCP_KEEPALIVE_TIMEOUT=10000 ms").
    std::string probe_name = "";
    std::string timeout_setting = "";
    std::string idle_setting = "";
  };

  enum class Action {
    kWait,   // nothing to do before `at`
    kProbe,  // send a probe now, then call Probed()
    kLost,   // the peer is gone: end the calls with LostError()
    kIdle,   // unused for idle_close: close with IdleError()
  };
  struct Step {
    Action action;
    Clock::time_point at;  // kWait only; max() when only an event can wake
    bool calls_open = false;  // as the decision saw them
  };

  // Shared: a plane with a liveness per call keeps one policy for all.
  Liveness(std::shared_ptr<const Policy> policy, Clock::time_point now);

  // Whether calls are open, from `now`. Any thread; callers serialise
  // (the plane's call-table lock). True when this changes it: the watcher
  // should look again.
  bool SetCallsOpen(bool open, Clock::time_point now);

  // What to do at `now`, the peer last heard from (anything arrived) at
  // `heard`. One caller at a time (the watcher).
  Step Next(Clock::time_point now, Clock::time_point heard);
  bool calls_open() const { return calls_open_.load(); }
  // The probe Next() asked for went at `now`.
  void Probed(Clock::time_point now);

  // UNAVAILABLE naming the timeout's setting: no answer from `peer`.
  absl::Status LostError(std::string_view peer) const;
  // UNAVAILABLE naming the idle setting.
  absl::Status IdleError() const;

  const Policy& policy() const { return *policy_; }

 private:
  Step Decide(Clock::time_point now, Clock::time_point heard, bool open);

  const std::shared_ptr<const Policy> policy_;
  // When calls last opened (a connection idle before is judged from
  // then: its peer had nothing to say), or last ended.
  std::atomic<Clock::rep> busy_since_;
  std::atomic<Clock::rep> idle_since_;
  std::atomic<bool> calls_open_{false};
  // The watcher's own: the last probe sent, and whether it is unanswered.
  Clock::time_point probe_sent_;
  bool probe_out_ = false;
};

// The liveness of one call, where each call is watched on its own (the NATS
// plane's heartbeats): what the call hears, and the decision at each beat.
class CallLiveness {
 public:
  explicit CallLiveness(std::shared_ptr<const Liveness::Policy> policy,
                        Clock::time_point now = Clock::now());
  // Anything arrived from the peer. Any thread.
  void Heard() {
    last_heard_.store(Clock::now().time_since_epoch().count(),
                      std::memory_order_relaxed);
  }
  // At each beat (one caller at a time): kProbe, send one (counted as
  // sent); kLost, end the call with LostError(); else nothing.
  Liveness::Action Tick();
  absl::Status LostError(std::string_view peer) const {
    return liveness_.LostError(peer);
  }

 private:
  std::atomic<Clock::rep> last_heard_;
  Liveness liveness_;
};

// A connection the core watches: the plane derives from it, supplies the
// probe and the two ways a connection ends, reports what it hears and when
// calls open, and spawns Watch() on the connection's strand.
class WatchedConnection {
 public:
  // `strand`: where Watch() runs and the probe is sent from.
  WatchedConnection(Liveness::Policy policy, boost::asio::any_io_executor strand);
  virtual ~WatchedConnection() = default;

  // Calls opened on an idle connection, or its last call ended. Wakes the
  // watcher only when it would otherwise wake too late: a connection
  // whose calls come one at a time costs no wake-up per call.
  void SetCallsOpen(bool open);
  // Ends Watch() now rather than at its next wake (the connection closed).
  void StopWatching();

  // Probes, closes and ends the connection by the policy until
  // WatchingDone() or cancellation. Owns `self` meanwhile.
  static boost::asio::awaitable<void> Watch(
      std::shared_ptr<WatchedConnection> self);

 protected:
  // All on the strand.
  virtual void SendProbe() = 0;
  virtual void Lost(absl::Status why) = 0;
  // False when the connection cannot close now (a call took it meanwhile).
  virtual bool CloseIdle(absl::Status why) = 0;
  // The connection closed: the watch ends.
  virtual bool WatchingDone() = 0;
  // Who stopped answering, for the error: "the server at 10.0.0.1:5000".
  virtual std::string peer_name() const = 0;
  // When anything last arrived from the peer.
  virtual Clock::time_point last_heard() const = 0;

 private:
  void Poke();

  Liveness liveness_;
  std::shared_ptr<boost::asio::steady_timer> timer_;  // Watch()'s (strand)
  // When Watch() wakes next (a Clock count; max while it waits for an
  // event). Published before Watch() looks at the calls again, so that a
  // SetCallsOpen() racing with it either sees it or is seen.
  std::atomic<Clock::rep> wake_at_{Clock::time_point::max().time_since_epoch().count()};
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_LIVENESS_H_
