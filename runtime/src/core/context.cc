#include "dynrpc/context.h"

#include <utility>

#include "core/context_access.h"

namespace dynrpc {

std::optional<std::string_view> FindMetadata(const Metadata& metadata,
                                             std::string_view key) {
  for (const auto& [k, v] : metadata) {
    if (k == key) return std::string_view(v);
  }
  return std::nullopt;
}

std::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kDeflate:
      return "deflate";
    case Compression::kGzip:
      return "gzip";
    case Compression::kIdentity:
      break;
  }
  return "identity";
}

std::optional<Compression> ParseCompression(std::string_view name) {
  for (Compression c :
       {Compression::kIdentity, Compression::kDeflate, Compression::kGzip}) {
    if (name == CompressionName(c)) return c;
  }
  return std::nullopt;
}

void ClientContext::TryCancel() {
  std::function<void()> cancel;
  {
    std::lock_guard lock(mu_);
    if (cancelled_) return;
    cancelled_ = true;
    cancel = std::move(cancel_running_);
  }
  if (cancel) cancel();
}

bool ClientContext::IsCancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

namespace internal {

bool ContextAccess::SetCanceller(ClientContext& context,
                                 std::function<void()> cancel) {
  {
    std::lock_guard lock(context.mu_);
    if (!context.cancelled_) {
      context.cancel_running_ = std::move(cancel);
      return true;
    }
  }
  cancel();
  return false;
}

void ContextAccess::ClearCanceller(ClientContext& context) {
  std::function<void()> dropped;
  std::lock_guard lock(context.mu_);
  dropped = std::move(context.cancel_running_);
  context.cancel_running_ = nullptr;
}

void ContextAccess::SetServerMetadata(ClientContext& context, Metadata initial,
                                      Metadata trailing) {
  context.initial_metadata_ = std::move(initial);
  context.trailing_metadata_ = std::move(trailing);
}

}  // namespace internal
}  // namespace dynrpc
