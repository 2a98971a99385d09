#include "dynrpc/context.h"

namespace dynrpc {

std::optional<std::string_view> FindMetadata(const Metadata& metadata,
                                             std::string_view key) {
  for (const auto& [k, v] : metadata) {
    if (k == key) return std::string_view(v);
  }
  return std::nullopt;
}

}  // namespace dynrpc
