#include "core/task_group.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "boost/asio/bind_cancellation_slot.hpp"
#include "boost/asio/cancellation_signal.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/system/system_error.hpp"
#include "core/deadline.h"
#include "core/log.h"

namespace dynrpc::internal {

namespace asio = boost::asio;

namespace {

// Says how a task ended with an exception, unless it was cancellation.
void Report(std::exception_ptr e, const char* name) {
  absl::Status status =
      StatusFromException(e, std::string("dynrpc task '") + name + "'");
  if (!absl::IsCancelled(status)) {
    DYNRPC_LOG(kError, "dynrpc::core", status.message());
  }
}

}  // namespace

struct TaskGroup::State {
  struct Task {
    asio::any_io_executor strand;
    // Touched only on `strand`.
    std::shared_ptr<asio::cancellation_signal> signal;
  };
  std::mutex mu;
  std::condition_variable done;
  // (A flat map: a task's entry costs no allocation of its own.)
  absl::flat_hash_map<uint64_t, Task> tasks;
  uint64_t next_id = 0;
  bool cancelled = false;
};

TaskGroup::TaskGroup(asio::any_io_executor executor)
    : executor_(std::move(executor)), state_(std::make_shared<State>()) {}

TaskGroup::~TaskGroup() { CancelAll(); }

namespace {

using IoExecutor = asio::io_context::executor_type;

// The io_context executor under `executor` (itself, or a strand's inner
// one); nullopt for an executor of another kind.
std::optional<IoExecutor> IoExecutorOf(const asio::any_io_executor& executor) {
  if (const IoExecutor* plain = executor.target<IoExecutor>()) return *plain;
  if (const auto* strand = executor.target<asio::strand<IoExecutor>>()) {
    return strand->get_inner_executor();
  }
  return std::nullopt;
}

}  // namespace

asio::any_io_executor MakeStrand(const asio::any_io_executor& executor) {
  if (std::optional<IoExecutor> io = IoExecutorOf(executor)) {
    return asio::make_strand(*io);
  }
  return asio::make_strand(executor);
}

asio::awaitable<bool> TaskCancelled() {
  asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
  co_return state.cancelled() != asio::cancellation_type::none;
}

asio::any_io_executor TaskGroup::NewStrand() { return MakeStrand(executor_); }

namespace {

// Runs `task`, then lets co_spawn complete it at once. Asio 1.81's
// co_spawn posts once more before it completes a task that never suspended
// (so that the completion handler never runs inside co_spawn), and
// on a server most calls are such tasks: a fast unary handler runs inline
// from the connection's reader. That post cost each call a scheduler round
// and a non-blocking epoll_wait (perf, strace: one call at a time over TCP).
// The group's completion handler may run inline (Spawn() holds no lock
// across co_spawn), so the task marks its thread of execution as having
// switched context, which is what the post is there to ensure. (Asio's
// detail API: co_spawn_entry_point reads this flag in Boost 1.81.)
asio::awaitable<void> CompletingInline(asio::awaitable<void> task) {
  co_await std::move(task);
  (co_await asio::detail::awaitable_thread_has_context_switched{}) = true;
}

}  // namespace

void TaskGroup::Spawn(asio::any_io_executor strand, asio::awaitable<void> task,
                      const char* name,
                      std::shared_ptr<asio::cancellation_signal> signal) {
  if (signal == nullptr) signal = std::make_shared<asio::cancellation_signal>();
  uint64_t id;
  {
    std::lock_guard lock(state_->mu);
    id = state_->next_id++;
    state_->tasks.emplace(id, State::Task{strand, signal});
  }
  // co_spawn dispatches: on an executor thread the task may run here, and
  // even complete (its completion handler takes the lock), before co_spawn
  // returns.
  asio::co_spawn(strand, CompletingInline(std::move(task)),
                 asio::bind_cancellation_slot(
                     signal->slot(),
                     [state = state_, id, name, signal](std::exception_ptr e) {
                       if (e) Report(e, name);
                       std::lock_guard lock(state->mu);
                       state->tasks.erase(id);
                       if (state->tasks.empty()) state->done.notify_all();
                     }));
  // A CancelAll() that ran before co_spawn connected `signal` emitted into
  // an empty slot: emit again (twice, or into an ended task, is harmless).
  // One that runs after this look finds the task connected.
  bool cancelled;
  {
    std::lock_guard lock(state_->mu);
    cancelled = state_->cancelled;
  }
  if (cancelled) {
    asio::post(strand,
               [signal] { signal->emit(asio::cancellation_type::terminal); });
  }
}

void TaskGroup::CancelAll() {
  std::lock_guard lock(state_->mu);
  state_->cancelled = true;
  for (auto& [id, task] : state_->tasks) {
    asio::post(task.strand, [signal = task.signal] {
      signal->emit(asio::cancellation_type::terminal);
    });
  }
}

void TaskGroup::Stop() {
  CancelAll();
  std::optional<IoExecutor> io = IoExecutorOf(executor_);
  // An executor of another kind: its threads cannot be told, so no wait.
  if (!io || io->running_in_this_thread()) return;
  Wait();
}

void TaskGroup::Wait() {
  std::unique_lock lock(state_->mu);
  state_->done.wait(lock, [&] { return state_->tasks.empty(); });
}

}  // namespace dynrpc::internal
