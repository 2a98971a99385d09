#include "core/deadline_timers.h"

#include <algorithm>
#include <mutex>
#include <vector>

#include "boost/asio/steady_timer.hpp"

namespace dynrpc::internal {

namespace asio = boost::asio;

struct DeadlineTimers::State : std::enable_shared_from_this<State> {
  explicit State(asio::any_io_executor executor)
      : timer(std::move(executor)) {}

  // A pending deadline's place; `generation` tells a reused slot from the
  // deadline a handle or a queue entry was made for.
  struct Slot {
    std::shared_ptr<Target> target;  // null: free
    uint32_t generation = 0;
  };
  // A deadline in the queue, earliest first (a min-heap).
  struct Due {
    Clock::time_point at;
    uint32_t slot;
    uint32_t generation;
    bool operator>(const Due& other) const { return at > other.at; }
  };

  bool Live(const Due& due) const {
    const Slot& slot = slots[due.slot];
    return slot.target != nullptr && slot.generation == due.generation;
  }
  std::shared_ptr<Target> Free(uint32_t index) {
    --live;
    free.push_back(index);
    return std::move(slots[index].target);
  }
  void PopDue() {
    std::pop_heap(queue.begin(), queue.end(), std::greater<>());
    queue.pop_back();
  }
  // Removed deadlines stay queued until they come up; rebuild the queue
  // without them before they outnumber the live ones.
  void MaybeCompact() {
    if (queue.size() <= 2 * live + 64) return;
    std::erase_if(queue, [&](const Due& due) { return !Live(due); });
    std::make_heap(queue.begin(), queue.end(), std::greater<>());
  }
  // Sets the timer for `at`; a wait set before ends unseen.
  void Arm(Clock::time_point at) {
    armed_at = at;
    const uint64_t wait = ++waits;
    timer.expires_at(at);
    timer.async_wait([weak = weak_from_this(),
                      wait](const boost::system::error_code& ec) {
      if (ec) return;
      if (std::shared_ptr<State> self = weak.lock()) self->Fire(wait);
    });
  }
  void Fire(uint64_t wait) {
    std::vector<std::shared_ptr<Target>> expired;
    {
      std::lock_guard lock(mu);
      if (wait != waits) return;  // re-armed since
      armed_at = Clock::time_point::max();
      const Clock::time_point now = Clock::now();
      while (!queue.empty() &&
             (queue.front().at <= now || !Live(queue.front()))) {
        const Due due = queue.front();
        PopDue();
        if (Live(due)) expired.push_back(Free(due.slot));
      }
      if (!queue.empty()) Arm(queue.front().at);
    }
    for (const std::shared_ptr<Target>& target : expired) target->Expired();
  }

  std::mutex mu;
  asio::steady_timer timer;  // all below under mu
  Clock::time_point armed_at = Clock::time_point::max();  // max: not armed
  uint64_t waits = 0;  // the timer's current wait
  std::vector<Slot> slots;
  std::vector<uint32_t> free;
  std::vector<Due> queue;
  std::size_t live = 0;
};

DeadlineTimers::DeadlineTimers(asio::any_io_executor executor)
    : state_(std::make_shared<State>(std::move(executor))) {}

DeadlineTimers::~DeadlineTimers() {
  std::lock_guard lock(state_->mu);
  state_->slots.clear();
  state_->queue.clear();
  state_->live = 0;
  state_->timer.cancel();
}

DeadlineTimers::Handle DeadlineTimers::Add(Clock::time_point at,
                                           std::shared_ptr<Target> target) {
  State& s = *state_;
  std::lock_guard lock(s.mu);
  uint32_t index;
  if (!s.free.empty()) {
    index = s.free.back();
    s.free.pop_back();
  } else {
    index = static_cast<uint32_t>(s.slots.size());
    s.slots.emplace_back();
  }
  State::Slot& slot = s.slots[index];
  slot.target = std::move(target);
  ++slot.generation;
  ++s.live;
  s.queue.push_back({at, index, slot.generation});
  std::push_heap(s.queue.begin(), s.queue.end(), std::greater<>());
  if (at < s.armed_at) s.Arm(at);
  return Handle(state_, index, slot.generation);
}

std::size_t DeadlineTimers::pending() const {
  std::lock_guard lock(state_->mu);
  return state_->live;
}

std::size_t DeadlineTimers::queued() const {
  std::lock_guard lock(state_->mu);
  return state_->queue.size();
}

DeadlineTimers::Handle& DeadlineTimers::Handle::operator=(
    Handle&& other) noexcept {
  if (this != &other) {
    Cancel();
    state_ = std::move(other.state_);
    other.state_.reset();
    slot_ = other.slot_;
    generation_ = other.generation_;
  }
  return *this;
}

void DeadlineTimers::Handle::Cancel() {
  std::shared_ptr<State> state = state_.lock();
  state_.reset();
  if (state == nullptr) return;
  std::shared_ptr<Target> target;  // released outside the lock
  {
    std::lock_guard lock(state->mu);
    if (slot_ >= state->slots.size()) return;  // the table was dropped
    State::Slot& slot = state->slots[slot_];
    if (slot.target == nullptr || slot.generation != generation_) return;
    target = state->Free(slot_);
    state->MaybeCompact();
  }
}

}  // namespace dynrpc::internal
