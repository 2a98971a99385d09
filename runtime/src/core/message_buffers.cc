#include "dynrpc/message_buffers.h"

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

namespace dynrpc::internal {
namespace {

constexpr std::size_t kMinRecycled = 64 * 1024;
constexpr std::size_t kMaxCachedBytes = 64 * 1024 * 1024;
constexpr std::size_t kMaxCachedBuffers = 4;

// One per process: a buffer freed on one thread (a request's, once parsed)
// serves the next large message on any other (its response, serialized
// wherever the handler resumed). Taken only for messages of 64 KiB and more,
// whose copies cost far more than the lock.
struct Cache {
  std::mutex mu;
  std::vector<std::string> buffers;  // each keeps the length it came with
  std::size_t lent = 0;              // buffers out on loan
  std::size_t bytes = 0;             // the capacities of both
};

Cache& TheCache() {
  static Cache* cache = new Cache;  // never destroyed: threads may outlive main
  return *cache;
}

// The smallest cached buffer of at least `capacity`, removed from the cache
// (still counted as lent when `lend`); false when none fits.
bool TakeFitting(std::size_t capacity, std::string& out, bool lend = false) {
  if (capacity < kMinRecycled) return false;
  Cache& cache = TheCache();
  std::lock_guard lock(cache.mu);
  // The smallest buffer that fits, so large ones stay for large messages.
  auto best = cache.buffers.end();
  for (auto it = cache.buffers.begin(); it != cache.buffers.end(); ++it) {
    if (it->capacity() >= capacity &&
        (best == cache.buffers.end() || it->capacity() < best->capacity())) {
      best = it;
    }
  }
  if (best == cache.buffers.end()) return false;
  out = std::move(*best);
  cache.buffers.erase(best);
  if (lend) {
    ++cache.lent;
  } else {
    cache.bytes -= out.capacity();
  }
  return true;
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
  if (TakeFitting(capacity, out)) out.clear();
  return out;
}

bool TakeRecycledForOverwrite(std::size_t size, std::string& out) {
  std::string buffer;
  if (!TakeFitting(size, buffer)) return false;
  buffer.resize(size);  // zero-fills only past the length it kept
  out = std::move(buffer);
  return true;
}

bool LentBuffer::Borrow(std::size_t size) {
  if (lent_ || !TakeFitting(size, buffer_, /*lend=*/true)) return false;
  lent_ = true;
  buffer_.resize(size);  // within its capacity: what is counted stays true
  return true;
}

std::string LentBuffer::Keep() {
  if (lent_) {
    lent_ = false;
    Cache& cache = TheCache();
    std::lock_guard lock(cache.mu);
    --cache.lent;
    cache.bytes -= buffer_.capacity();
  }
  return std::move(buffer_);
}

void LentBuffer::Return() {
  if (!std::exchange(lent_, false)) return;
  Cache& cache = TheCache();
  std::lock_guard lock(cache.mu);
  --cache.lent;
  cache.buffers.push_back(std::move(buffer_));  // counted in `bytes` already
  buffer_ = std::string();
}

void RecycleMessageBuffer(std::string&& buffer) {
  std::string owned = std::move(buffer);
  std::size_t size = owned.capacity();
  if (size < kMinRecycled || size > kMaxCachedBytes) return;
  Cache& cache = TheCache();
  std::vector<std::string> dropped;  // freed after the lock is released
  std::lock_guard lock(cache.mu);
  // Make room by dropping the smallest buffers, but only for a larger one.
  while (cache.buffers.size() + cache.lent >= kMaxCachedBuffers ||
         cache.bytes + size > kMaxCachedBytes) {
    auto smallest =
        std::min_element(cache.buffers.begin(), cache.buffers.end(),
                         [](const std::string& a, const std::string& b) {
                           return a.capacity() < b.capacity();
                         });
    if (smallest == cache.buffers.end() || smallest->capacity() >= size) {
      return;
    }
    cache.bytes -= smallest->capacity();
    dropped.push_back(std::move(*smallest));
    cache.buffers.erase(smallest);
  }
  cache.bytes += size;
  cache.buffers.push_back(std::move(owned));
}

}  // namespace dynrpc::internal
