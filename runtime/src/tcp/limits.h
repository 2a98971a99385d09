// The TCP plane's size-limit errors, worded the same on both sides.
#ifndef DYNRPC_RUNTIME_SRC_TCP_LIMITS_H_
#define DYNRPC_RUNTIME_SRC_TCP_LIMITS_H_

#include <cstddef>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tcp/frame.h"

namespace dynrpc::internal::tcp {

// RESOURCE_EXHAUSTED: "<what> of N bytes exceeds DYN_TCP_MAX_MESSAGE_SIZE=M
// bytes".
inline absl::Status OversizedError(absl::string_view what, std::size_t size,
                                   std::size_t limit) {
  return absl::ResourceExhaustedError(
      absl::StrCat(what, " message of ", size,
                   " bytes exceeds DYN_TCP_MAX_MESSAGE_SIZE=", limit,
                   " bytes"));
}

// The same for a frame the receiver dropped unread.
inline absl::Status OversizedError(absl::string_view what,
                                   const FrameHeader& header,
                                   std::size_t limit) {
  if (header.head_len > kMaxHeadSize) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " head (method, status and metadata) of ",
                     header.head_len, " bytes exceeds the limit of ",
                     kMaxHeadSize, " bytes"));
  }
  return OversizedError(what, header.payload_len, limit);
}

}  // namespace dynrpc::internal::tcp

#endif  // DYNRPC_RUNTIME_SRC_TCP_LIMITS_H_
