#include "dynrpc/message_buffers.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace dynrpc::internal {
namespace {

constexpr std::size_t kMinRecycled = 64 * 1024;
constexpr std::size_t kMaxCachedBytes = 64 * 1024 * 1024;
constexpr std::size_t kMaxCachedBuffers = 4;

struct Cache {
  std::vector<std::string> buffers;
  std::size_t bytes = 0;
};

Cache& ThreadCache() {
  thread_local Cache cache;
  return cache;
}

}  // namespace

std::string TakeMessageBuffer(std::size_t capacity) {
  std::string out = TakeRecycledBuffer(capacity);
  // Small ones are left to the caller's first append (as they are not kept).
  if (capacity >= kMinRecycled && out.capacity() < capacity) {
    out.reserve(capacity);
  }
  return out;
}

std::string TakeRecycledBuffer(std::size_t capacity) {
  std::string out;
  if (capacity < kMinRecycled) return out;
  Cache& cache = ThreadCache();
  // The smallest buffer that fits, so large ones stay for large messages.
  auto best = cache.buffers.end();
  for (auto it = cache.buffers.begin(); it != cache.buffers.end(); ++it) {
    if (it->capacity() >= capacity &&
        (best == cache.buffers.end() || it->capacity() < best->capacity())) {
      best = it;
    }
  }
  if (best == cache.buffers.end()) return out;
  out = std::move(*best);
  cache.buffers.erase(best);
  cache.bytes -= out.capacity();
  out.clear();
  return out;
}

void RecycleMessageBuffer(std::string&& buffer) {
  std::string owned = std::move(buffer);
  std::size_t size = owned.capacity();
  if (size < kMinRecycled || size > kMaxCachedBytes) return;
  Cache& cache = ThreadCache();
  // Make room by dropping the smallest buffers, but only for a larger one.
  while (cache.buffers.size() >= kMaxCachedBuffers ||
         cache.bytes + size > kMaxCachedBytes) {
    auto smallest = std::min_element(
        cache.buffers.begin(), cache.buffers.end(),
        [](const std::string& a, const std::string& b) {
          return a.capacity() < b.capacity();
        });
    if (smallest == cache.buffers.end() || smallest->capacity() >= size) {
      return;
    }
    cache.bytes -= smallest->capacity();
    cache.buffers.erase(smallest);
  }
  cache.bytes += size;
  cache.buffers.push_back(std::move(owned));
}

}  // namespace dynrpc::internal
