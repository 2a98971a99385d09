// Recycling of large serialized-message buffers, used by generated code and
// the planes; not part of the user API.
//
// A fresh multi-megabyte std::string costs more than its copy: glibc serves
// it from newly mapped pages (or pages it has just returned to the kernel),
// so every 4 KiB of it takes a page fault and a zeroing. Each thread keeps a
// few freed buffers of 64 KiB and more (at most 64 MiB in all, per thread)
// and hands them out again, so a steady stream of large messages reuses warm
// memory. Small messages are not recycled.
#ifndef DYNRPC_RUNTIME_INCLUDE_DYNRPC_MESSAGE_BUFFERS_H_
#define DYNRPC_RUNTIME_INCLUDE_DYNRPC_MESSAGE_BUFFERS_H_

#include <cstddef>
#include <string>

namespace dynrpc::internal {

// An empty string whose capacity is at least `capacity`: a recycled one
// when this thread has one, else a new one.
std::string TakeMessageBuffer(std::size_t capacity);

// A recycled buffer whose capacity is at least `capacity` if this thread has
// one, else an empty string with nothing reserved.
std::string TakeRecycledBuffer(std::size_t capacity);

// Gives `buffer`'s memory back for reuse on this thread (or frees it).
void RecycleMessageBuffer(std::string&& buffer);

// Serializes `message` into a buffer from TakeMessageBuffer(); false when
// protobuf refuses (a message over 2 GiB, or missing required fields).
template <typename T>
bool SerializeToBuffer(const T& message, std::string& out) {
  out = TakeMessageBuffer(message.ByteSizeLong());
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
