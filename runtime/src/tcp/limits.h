// The TCP plane's limits: its size errors, worded the same on both sides,
// and the checks of a TcpConfig built in code.
#ifndef DYNRPC_RUNTIME_SRC_TCP_LIMITS_H_
#define DYNRPC_RUNTIME_SRC_TCP_LIMITS_H_

#include <cstddef>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "dynrpc/config.h"
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

// A Config built in code skips the environment's checks; these are the ones
// whose violation would hang or corrupt calls rather than fail them.
inline absl::Status CheckConfig(const TcpConfig& tcp) {
  if (tcp.pool_size == 0 || tcp.channel_buffer == 0) {
    return absl::InvalidArgumentError(
        "TcpConfig: pool_size and channel_buffer must be at least 1 "
        "(DYN_TCP_POOL_SIZE, DYN_TCP_CHANNEL_BUFFER)");
  }
  if (tcp.max_message_size == 0 || tcp.max_message_size > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TcpConfig: max_message_size=", tcp.max_message_size,
        " must be from 1 to 2147483647 bytes (DYN_TCP_MAX_MESSAGE_SIZE)"));
  }
  if (tcp.request_timeout.count() <= 0 || tcp.connect_timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        "TcpConfig: request_timeout and connect_timeout must be positive "
        "(DYN_TCP_REQUEST_TIMEOUT, DYN_TCP_CONNECT_TIMEOUT)");
  }
  return absl::OkStatus();
}

}  // namespace dynrpc::internal::tcp

#endif  // DYNRPC_RUNTIME_SRC_TCP_LIMITS_H_
