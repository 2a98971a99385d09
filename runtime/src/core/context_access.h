// The runtime's access to ClientContext's and ServerContext's private state.
#ifndef DYNRPC_RUNTIME_SRC_CORE_CONTEXT_ACCESS_H_
#define DYNRPC_RUNTIME_SRC_CORE_CONTEXT_ACCESS_H_

#include <atomic>
#include <functional>
#include <memory>

#include "dynrpc/context.h"

namespace dynrpc::internal {

struct ContextAccess {
  // Registers how to cancel the call running under `context` (any thread).
  // If the context was already cancelled, runs `cancel` at once. Returns
  // false then.
  static bool SetCanceller(ClientContext& context,
                           std::function<void()> cancel);
  static void ClearCanceller(ClientContext& context);
  static void SetServerMetadata(ClientContext& context, Metadata initial,
                                Metadata trailing);

  static void SetRoutedTo(ClientContext& context, uint64_t instance_id) {
    context.routed_to_ = instance_id;
  }

  static void SetCancelledFlag(ServerContext& context,
                               std::shared_ptr<std::atomic<bool>> flag) {
    context.cancelled_ = std::move(flag);
  }
  static const Metadata& InitialMetadata(const ServerContext& context) {
    return context.initial_metadata_;
  }
  static Metadata TakeTrailingMetadata(ServerContext& context) {
    return std::move(context.trailing_metadata_);
  }
  static Metadata TakeInitialMetadata(ServerContext& context) {
    return std::move(context.initial_metadata_);
  }
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_CONTEXT_ACCESS_H_
