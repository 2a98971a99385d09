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

void TaskGroup::Spawn(asio::any_io_executor strand, asio::awaitable<void> task,
                      const char* name,
                      std::shared_ptr<asio::cancellation_signal> signal) {
  if (signal == nullptr) signal = std::make_shared<asio::cancellation_signal>();
  // The lock is held until co_spawn has connected `signal` to the task, so a
  // CancelAll() that runs meanwhile cannot emit into an empty slot. co_spawn
  // dispatches: on an executor thread the task may run here until its first
  // suspension, but it cannot complete (the completion handler, which takes
  // the lock, runs only after the task's first hop through its strand).
  std::lock_guard lock(state_->mu);
  uint64_t id = state_->next_id++;
  state_->tasks.emplace(id, State::Task{strand, signal});
  asio::co_spawn(strand, std::move(task),
                 asio::bind_cancellation_slot(
                     signal->slot(),
                     [state = state_, id, name, signal](std::exception_ptr e) {
                       if (e) Report(e, name);
                       std::lock_guard lock(state->mu);
                       state->tasks.erase(id);
                       if (state->tasks.empty()) state->done.notify_all();
                     }));
  if (state_->cancelled) {
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
