// The TCP request plane's wire format. See README.md in this folder.
#ifndef DYNRPC_RUNTIME_SRC_TCP_FRAME_H_
#define DYNRPC_RUNTIME_SRC_TCP_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynrpc/context.h"

namespace dynrpc::internal::tcp {

inline constexpr uint8_t kFrameMagic = 0xD7;
inline constexpr std::size_t kFrameHeaderSize = 20;
// Bound on a frame's head (method, status message, metadata). Larger heads
// are refused by the sender and discarded by the receiver.
inline constexpr uint32_t kMaxHeadSize = 64 * 1024;

enum class FrameType : uint8_t {
  kRequest = 1,    // client -> server: opens a call
  kResponse = 2,   // server -> client: ends a call with a status
  kCancel = 3,     // client -> server: the caller gave up on a call
  kMessage = 4,    // either way: one message of a stream
  kHalfClose = 5,  // client -> server: no more messages from the client
  kHeaders = 6,    // server -> client: initial metadata of a stream
  kWindow = 7,     // either way: the receiver read this many more bytes
  kPing = 8,       // client -> server: liveness check (call id 0)
  kPong = 9,       // server -> client: the answer to a PING
};

// Frame flags.
inline constexpr uint16_t kFlagHasMessage = 0x1;  // REQUEST/RESPONSE payload
inline constexpr uint16_t kFlagEndStream = 0x2;   // REQUEST: no more messages
inline constexpr uint16_t kFlagStreaming = 0x4;   // REQUEST: a streaming call
// REQUEST, RESPONSE, MESSAGE: the payload is compressed (zlib's format, or
// gzip). At most one of the two.
inline constexpr uint16_t kFlagDeflate = 0x8;
inline constexpr uint16_t kFlagGzip = 0x10;
// REQUEST: the caller accepts compressed responses (deflate and gzip);
// without it, a server answers uncompressed.
inline constexpr uint16_t kFlagAcceptsCompression = 0x20;
inline constexpr uint16_t kKnownFlags = kFlagHasMessage | kFlagEndStream |
                                        kFlagStreaming | kFlagDeflate |
                                        kFlagGzip | kFlagAcceptsCompression;

// The flag for a payload compressed with `compression` (0 for identity),
// and the compression a frame's flags say (DecodeFrameHeader refuses both
// flags at once).
uint16_t CompressionFlag(Compression compression);
Compression CompressionOf(uint16_t flags);

struct FrameHeader {
  FrameType type = FrameType::kRequest;
  uint16_t flags = 0;
  uint64_t call_id = 0;
  uint32_t head_len = 0;
  uint32_t payload_len = 0;
};

struct RequestHead {
  std::string method;
  // Time the caller still allows, in microseconds; 0: no deadline.
  uint64_t timeout_us = 0;
  Metadata metadata;
};

struct ResponseHead {
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string message;
  Metadata initial_metadata;  // when no HEADERS frame carried it
  Metadata metadata;          // trailing metadata
};

// Validates the fixed 20-byte header; `bytes` must hold exactly that many.
// A wrong magic byte, an unknown type or an undefined flag is INTERNAL
// ("malformed frame: ..."). Sizes are checked by the caller, which knows the
// limits.
absl::StatusOr<FrameHeader> DecodeFrameHeader(std::string_view bytes);

// The header and head of a frame, ready to be followed on the wire by
// `payload_len` bytes of payload. Fails with RESOURCE_EXHAUSTED when the head
// would exceed kMaxHeadSize.
// `flags` defaults to a unary request: one message, then end of stream.
absl::StatusOr<std::string> EncodeRequestPrefix(
    uint64_t call_id, const RequestHead& head, std::size_t payload_len,
    uint16_t flags = kFlagHasMessage | kFlagEndStream);
absl::StatusOr<std::string> EncodeResponsePrefix(
    uint64_t call_id, const ResponseHead& head, std::size_t payload_len,
    uint16_t flags = kFlagHasMessage);
absl::StatusOr<std::string> EncodeHeaders(uint64_t call_id,
                                          const Metadata& metadata);
std::string EncodeCancel(uint64_t call_id);
std::string EncodeMessagePrefix(uint64_t call_id, std::size_t payload_len,
                                uint16_t flags = 0);
std::string EncodeHalfClose(uint64_t call_id);
std::string EncodeWindow(uint64_t call_id, uint32_t bytes);
std::string EncodePing();
std::string EncodePong();
// Rewrites the call id of an encoded prefix, so a request can be encoded (and
// its limits checked) before a connection assigns its id.
void SetCallId(std::string& prefix, uint64_t call_id);
// Rewrites the timeout of an encoded REQUEST prefix.
void SetTimeout(std::string& request_prefix, uint64_t timeout_us);

// Longest timeout a server honours; longer ones (a caller's "forever") are
// cut to this, so deadline arithmetic cannot overflow.
inline constexpr uint64_t kMaxTimeoutUs = 366ull * 24 * 3600 * 1'000'000;

// Parse a head of `head_len` bytes. Truncated or trailing bytes, or an
// unknown status code, are INTERNAL.
absl::StatusOr<RequestHead> DecodeRequestHead(std::string_view head);
absl::StatusOr<ResponseHead> DecodeResponseHead(std::string_view head);
absl::StatusOr<Metadata> DecodeHeaders(std::string_view head);
// A WINDOW frame's increment (its 4-byte head).
absl::StatusOr<uint32_t> DecodeWindow(std::string_view head);

}  // namespace dynrpc::internal::tcp

#endif  // DYNRPC_RUNTIME_SRC_TCP_FRAME_H_
