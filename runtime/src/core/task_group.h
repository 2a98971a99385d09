// Owns detached coroutines: observes how they end and cancels them on demand.
#ifndef DYNRPC_RUNTIME_SRC_CORE_TASK_GROUP_H_
#define DYNRPC_RUNTIME_SRC_CORE_TASK_GROUP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/cancellation_signal.hpp"

namespace dynrpc::internal {

// A new strand of `executor`. On an io_context's own executor (the
// Runtime's) it is a strand of that concrete executor, which fits inside an
// any_io_executor: copying it, and the work-tracking preferences Asio takes
// of it on every completion, allocate nothing. A strand of the type-erased
// executor (asio::make_strand(any_io_executor)) does not fit, and each of
// those preferences allocated a new one (perf: a third of a small call's
// mallocs on the server).
boost::asio::any_io_executor MakeStrand(
    const boost::asio::any_io_executor& executor);

// Whether the running task has been cancelled. A task that turns off
// throw_if_cancelled must ask before each wait of a loop, not only look at
// the wait's error: a cancellation emitted while the task is not waiting
// (it runs, or its wait has completed and its resumption is queued behind
// the emit on its strand) reaches no operation. Only the task's
// cancellation state remembers it, and the next wait would not end.
// (A hot loop holds the state itself, `co_await
// asio::this_coro::cancellation_state` once, and reads it each turn: that
// costs no coroutine frame.)
boost::asio::awaitable<bool> TaskCancelled();

// Each task runs on the strand Spawn() is given (from NewStrand(); tasks
// that share state, like a connection's reader and writer, share one). A
// task's exception is reported on stderr with the task's name (it never
// vanishes, as with `detached`). The group's state is shared with its tasks,
// so a task may outlive the TaskGroup object; whatever a task borrows must
// outlive it.
class TaskGroup {
 public:
  explicit TaskGroup(boost::asio::any_io_executor executor);
  ~TaskGroup();  // cancels every task; does not wait
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Starts `task` on `strand` (from NewStrand()); the caller must not be
  // running on that strand. Called from an executor thread, the task may
  // run, and even end, before Spawn() returns (co_spawn dispatches): a
  // caller holding a lock the task takes must post the Spawn() instead.
  // After CancelAll() new tasks are cancelled at once.
  //
  // `signal`, when given, is the task's cancellation signal, for the caller
  // to cancel this one task: emit on it through `strand` only.
  void Spawn(
      boost::asio::any_io_executor strand, boost::asio::awaitable<void> task,
      const char* name,
      std::shared_ptr<boost::asio::cancellation_signal> signal = nullptr);
  // A new strand of the group's executor, for a task and the objects it owns.
  boost::asio::any_io_executor NewStrand();

  // Emits terminal cancellation to every running task (on its strand).
  void CancelAll();
  // Blocks until every task has ended. Not to be called from the executor's
  // threads.
  void Wait();
  // CancelAll(), then Wait() unless the calling thread runs the executor
  // (the tasks then end soon after, on their own). For owners destroyed on
  // any thread whose tasks must not outlive them when they can help it: a
  // task still pending when its Runtime is destroyed is destroyed
  // mid-operation.
  void Stop();

 private:
  struct State;
  boost::asio::any_io_executor executor_;
  std::shared_ptr<State> state_;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_TASK_GROUP_H_
