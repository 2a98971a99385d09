#include "core/liveness.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace dynrpc::internal {
namespace asio = boost::asio;

namespace {

Clock::rep Count(Clock::time_point t) { return t.time_since_epoch().count(); }
Clock::time_point At(Clock::rep count) {
  return Clock::time_point(Clock::duration(count));
}

}  // namespace

Liveness::Liveness(std::shared_ptr<const Policy> policy, Clock::time_point now)
    : policy_(std::move(policy)),
      busy_since_(Count(now)),
      idle_since_(Count(now)),
      // Heartbeats: the first is due at once.
      probe_sent_(now - policy_->interval) {}

bool Liveness::SetCallsOpen(bool open, Clock::time_point now) {
  if (calls_open_.load() == open) return false;
  (open ? busy_since_ : idle_since_).store(Count(now));
  calls_open_.store(open);
  return true;
}

Liveness::Step Liveness::Next(Clock::time_point now,
                              Clock::time_point heard) {
  const bool open = calls_open_.load();
  Step step = Decide(now, heard, open);
  step.calls_open = open;
  return step;
}

Liveness::Step Liveness::Decide(Clock::time_point now,
                                Clock::time_point heard, bool open) {
  constexpr Clock::time_point kNever = Clock::time_point::max();
  if (!open) {
    probe_out_ = false;
    if (!policy_->idle_close) {
      return {Action::kWait, kNever};  // SetCallsOpen() wakes the watcher
    }
    Clock::time_point idle_at = At(idle_since_.load()) + *policy_->idle_close;
    if (now >= idle_at) return {Action::kIdle, {}};
    return {Action::kWait, idle_at};
  }
  heard = std::max(heard, At(busy_since_.load()));
  if (!policy_->peer_answers_probes) {
    // Heartbeats: one every interval; silence past interval + timeout loses
    // the peer.
    Clock::time_point lost_at = heard + policy_->interval + policy_->timeout;
    if (now >= lost_at) return {Action::kLost, {}};
    Clock::time_point beat_at = probe_sent_ + policy_->interval;
    if (now >= beat_at) return {Action::kProbe, {}};
    return {Action::kWait, std::min(beat_at, lost_at)};
  }
  if (probe_out_ && heard >= probe_sent_) probe_out_ = false;  // answered
  if (probe_out_) {
    Clock::time_point lost_at = probe_sent_ + policy_->timeout;
    if (now >= lost_at) return {Action::kLost, {}};
    return {Action::kWait, lost_at};
  }
  Clock::time_point probe_at = heard + policy_->interval;
  if (now >= probe_at) return {Action::kProbe, {}};
  return {Action::kWait, probe_at};
}

void Liveness::Probed(Clock::time_point now) {
  probe_sent_ = now;
  probe_out_ = true;
}

absl::Status Liveness::LostError(std::string_view peer) const {
  return absl::UnavailableError(absl::StrCat(
      std::string(peer), " stopped answering: nothing heard within ",
      policy_->timeout_setting, " after a ", policy_->probe_name,
      "; the connection is presumed dead"));
}

absl::Status Liveness::IdleError() const {
  return absl::UnavailableError(
      absl::StrCat("closed after no calls for ", policy_->idle_setting));
}

CallLiveness::CallLiveness(std::shared_ptr<const Liveness::Policy> policy,
                           Clock::time_point now)
    : last_heard_(Count(now)), liveness_(std::move(policy), now) {
  (void)liveness_.SetCallsOpen(true, now);
}

Liveness::Action CallLiveness::Tick() {
  const Clock::time_point now = Clock::now();
  Liveness::Action action =
      liveness_.Next(now, At(last_heard_.load(std::memory_order_relaxed)))
          .action;
  if (action == Liveness::Action::kProbe) liveness_.Probed(now);
  return action;
}

WatchedConnection::WatchedConnection(Liveness::Policy policy,
                                     asio::any_io_executor strand)
    : liveness_(std::make_shared<const Liveness::Policy>(std::move(policy)),
                Clock::now()),
      timer_(std::make_shared<asio::steady_timer>(std::move(strand))) {}

void WatchedConnection::SetCallsOpen(bool open) {
  const Clock::time_point now = Clock::now();
  if (!liveness_.SetCallsOpen(open, now)) return;
  // The earliest the watcher may have to act now: the first probe of the
  // calls just opened, or the idle close of a connection just left idle.
  const Liveness::Policy& policy = liveness_.policy();
  Clock::time_point needed = Clock::time_point::max();
  if (open) {
    needed = now + policy.interval;
  } else if (policy.idle_close) {
    needed = now + *policy.idle_close;
  }
  if (Count(needed) < wake_at_.load()) Poke();
}

void WatchedConnection::StopWatching() { Poke(); }

void WatchedConnection::Poke() {
  asio::post(timer_->get_executor(), [timer = timer_] { timer->cancel(); });
}

asio::awaitable<void> WatchedConnection::Watch(
    std::shared_ptr<WatchedConnection> self) {
  co_await asio::this_coro::throw_if_cancelled(false);
  Liveness& liveness = self->liveness_;
  // Looked at before each wait (core/task_group.h: TaskCancelled()).
  const asio::cancellation_state state =
      co_await asio::this_coro::cancellation_state;
  for (;;) {
    if (self->WatchingDone() ||
        state.cancelled() != asio::cancellation_type::none) {
      co_return;
    }
    const Clock::time_point now = Clock::now();
    Liveness::Step step = liveness.Next(now, self->last_heard());
    switch (step.action) {
      case Liveness::Action::kProbe:
        self->SendProbe();
        liveness.Probed(now);
        continue;
      case Liveness::Action::kLost:
        self->Lost(liveness.LostError(self->peer_name()));
        co_return;
      case Liveness::Action::kIdle:
        if (self->CloseIdle(liveness.IdleError())) co_return;
        continue;  // a call took it meanwhile
      case Liveness::Action::kWait:
        break;
    }
    // Published, then the calls looked at again: a SetCallsOpen() that
    // changed them meanwhile either saw this and poked, or is seen here.
    self->wake_at_.store(Count(step.at));
    if (liveness.calls_open() != step.calls_open) continue;
    self->timer_->expires_at(step.at);
    // Woken by the time, early by Poke(), or by cancellation.
    (void)co_await self->timer_->async_wait(
        asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace dynrpc::internal
