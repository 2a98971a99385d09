// Recycling of large serialized-message buffers, used by generated code and
// the planes; not part of the user API.
//
// A fresh multi-megabyte std::string costs more than its copy: glibc serves
// it from newly mapped pages (or pages it has just returned to the kernel),
// so every 4 KiB of it takes a page fault and a zeroing; and std::string
// zero-fills what it grows by before anyone writes it. The process keeps a
// few freed buffers of 64 KiB and more (at most 4 buffers and 64 MiB in all,
// shared by every thread) and hands them out again with their length, so a
// steady stream of large messages reuses warm memory that is neither faulted
// in nor zeroed again: a request's buffer, freed once it is parsed, is the
// buffer its response is serialized into. Small messages are not recycled.
#ifndef DYNRPC_RUNTIME_INCLUDE_DYNRPC_MESSAGE_BUFFERS_H_
#define DYNRPC_RUNTIME_INCLUDE_DYNRPC_MESSAGE_BUFFERS_H_

#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

namespace dynrpc::internal {

// An empty string whose capacity is at least `capacity`: a recycled one
// when this thread has one, else a new one.
std::string TakeMessageBuffer(std::size_t capacity);

// A recycled buffer whose capacity is at least `capacity` if the process
// has one, else an empty string with nothing reserved.
std::string TakeRecycledBuffer(std::size_t capacity);

// When the process has a recycled buffer of at least `size` bytes: makes
// `out` that buffer, `size` bytes long, its contents unspecified (to be
// overwritten: only bytes past the length it was recycled with are zeroed),
// and returns true. Otherwise leaves `out` alone and returns false.
bool TakeRecycledForOverwrite(std::size_t size, std::string& out);

// Gives `buffer`'s memory back for reuse (or frees it).
void RecycleMessageBuffer(std::string&& buffer);

// A buffer lent by the cache to a read that expects a large message before
// it has come (the TCP reader, which would otherwise copy the message's
// first bytes out of its read buffer). While lent it still counts against
// the cache's bounds (4 buffers, 64 MiB), so reads waiting with one hold no
// more than the cache would; the loan ends with Keep() (the message came:
// the buffer is the caller's, as if taken) or Return(), which destruction
// calls.
class LentBuffer {
 public:
  LentBuffer() = default;
  LentBuffer(const LentBuffer&) = delete;
  LentBuffer& operator=(const LentBuffer&) = delete;
  ~LentBuffer() { Return(); }

  // Borrows a recycled buffer `size` bytes long, its contents unspecified
  // (as TakeRecycledForOverwrite()); false, and nothing lent, when the
  // cache has none that fits or a loan is already held.
  bool Borrow(std::size_t size);
  bool lent() const { return lent_; }
  // The lent bytes (only while lent()); their count is fixed.
  char* data() { return buffer_.data(); }
  std::size_t size() const { return buffer_.size(); }
  // Ends the loan; the buffer is the caller's.
  std::string Keep();
  // Ends the loan, if any, giving the buffer back to the cache.
  void Return();

 private:
  std::string buffer_;
  bool lent_ = false;
};

// Serializes `message` into a buffer from TakeMessageBuffer() (written in
// place when a recycled one fits); false when protobuf refuses (a message
// over 2 GiB, or missing required fields).
template <typename T>
bool SerializeToBuffer(const T& message, std::string& out) {
  const std::size_t size = message.ByteSizeLong();
  if (size <= static_cast<std::size_t>(INT_MAX) && message.IsInitialized() &&
      TakeRecycledForOverwrite(size, out)) {
    // ByteSizeLong() cached the sizes the in-place write needs.
    message.SerializeWithCachedSizesToArray(
        reinterpret_cast<uint8_t*>(out.data()));
    return true;
  }
  out = TakeMessageBuffer(size);
  return message.SerializeToString(&out);
}

// Parses `bytes` into `message`, then recycles `bytes`.
template <typename T>
bool ParseAndRecycle(std::string&& bytes, T& message) {
  bool ok = message.ParseFromString(bytes);
  RecycleMessageBuffer(std::move(bytes));
  return ok;
}

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_INCLUDE_DYNRPC_MESSAGE_BUFFERS_H_
