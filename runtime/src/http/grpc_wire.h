// The gRPC-over-HTTP/2 protocol's pieces that are not HTTP/2 itself: message
// framing, grpc-timeout, status and metadata encodings, and the status
// mappings to and from HTTP. Pure functions; the HTTP plane's connection
// code uses them on both sides.
//
// References: gRPC's PROTOCOL-HTTP2.md (framing, grpc-timeout, percent-
// encoded grpc-message, -bin metadata), http-grpc-status-mapping.md (HTTP
// status to gRPC code) and google.rpc.Code's HTTP mapping (gRPC code to HTTP
// status, for JSON callers).
#ifndef DYNRPC_RUNTIME_SRC_HTTP_GRPC_WIRE_H_
#define DYNRPC_RUNTIME_SRC_HTTP_GRPC_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/compression.h"
#include "dynrpc/context.h"

namespace dynrpc::internal::http {

// A message on the wire: a 1-byte compressed flag (0: not compressed), a
// 4-byte big-endian length, the bytes.
inline constexpr std::size_t kGrpcPrefixSize = 5;
std::string EncodeGrpcPrefix(uint32_t length, bool compressed = false);

// OK when a `what` message ("request", "response") of `bytes` is within
// DYN_HTTP_MAX_MESSAGE_SIZE=`max`; else RESOURCE_EXHAUSTED naming both.
absl::Status CheckMessageSize(std::string_view what, std::size_t bytes,
                              std::size_t max);

// One message off the wire, compressed with `compressed_with` (identity:
// not compressed).
struct GrpcMessage {
  std::string bytes;
  Compression compressed_with = Compression::kIdentity;
};

// Splits a stream of DATA bytes into messages, whatever the chunking.
class GrpcMessageDecoder {
 public:
  // `max_message_size` and `limit_name` (the variable that set it, for
  // messages; a string that outlives the decoder, such as a literal) bound
  // every message (as it is on the wire: the core bounds what a compressed
  // one inflates to).
  GrpcMessageDecoder(std::size_t max_message_size, const char* limit_name);

  // The stream's grpc-encoding header (nullopt: none): what a message with
  // the compressed flag is compressed with.
  void set_encoding(std::optional<std::string_view> grpc_encoding);

  // Appends the messages `bytes` completes to `out`. Errors, reported as
  // soon as the prefix that causes them is read (before the message's
  // bytes are buffered):
  //  - RESOURCE_EXHAUSTED: "<what> message of N bytes exceeds <limit_name>=M
  //    bytes" (`what` is "request" or "response", given at Feed);
  //  - INTERNAL: compressed flag 1 without a grpc-encoding that names a
  //    compression (gRPC's compression spec), or a flag other than 0 or 1
  //    ("malformed gRPC message prefix");
  //  - UNIMPLEMENTED: compressed flag 1 with a grpc-encoding we do not
  //    support, naming those we do.
  // Messages completed before the bad prefix are still appended. After an
  // error every later call returns it again.
  absl::Status Feed(std::string_view bytes, std::string_view what,
                    std::vector<GrpcMessage>& out);
  // True when no partial message is buffered (the stream may end here).
  bool AtBoundary() const;
  // Bytes of the partial message (prefix included) held so far.
  std::size_t buffered() const;

 private:
  std::size_t max_message_size_;
  const char* limit_name_;
  char prefix_[kGrpcPrefixSize];
  std::size_t prefix_len_ = 0;
  std::optional<std::string> message_;  // once its prefix is complete
  bool compressed_ = false;             // message_'s flag
  // From set_encoding(): nullopt for no grpc-encoding header; the name when
  // it is one we do not support.
  std::optional<Compression> encoding_;
  std::string unsupported_encoding_;
  std::size_t expected_ = 0;
  absl::Status error_;
};

// grpc-timeout: at most 8 digits and a unit (H, M, S, m, u, n). Encoding
// rounds up to the finest unit that fits; a non-positive duration encodes
// as "1n".
std::string EncodeGrpcTimeout(Clock::duration remaining);
// nullopt for a malformed value. A timeout over 366 days (the TCP plane's
// kMaxTimeoutUs) is cut to 366 days, so Clock::now() + timeout cannot
// overflow whatever the peer sent.
std::optional<Clock::duration> ParseGrpcTimeout(std::string_view value);

// grpc-message is percent-encoded: bytes outside 0x20-0x7E, and '%', as
// %XX. Decoding is lenient: a bad %-sequence is kept as it is.
std::string PercentEncode(std::string_view message);
std::string PercentDecode(std::string_view message);

// A response without a valid gRPC status (a proxy's error page, say): the
// code from its HTTP status, per http-grpc-status-mapping.md (400 INTERNAL,
// 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429, 502,
// 503, 504 UNAVAILABLE, anything else UNKNOWN).
absl::StatusCode GrpcCodeFromHttpStatus(int http_status);
// The HTTP status a JSON caller gets for a code (google.rpc.Code's mapping:
// OK 200, CANCELLED 499, INVALID_ARGUMENT 400, DEADLINE_EXCEEDED 504,
// NOT_FOUND 404, ALREADY_EXISTS 409, PERMISSION_DENIED 403,
// RESOURCE_EXHAUSTED 429, FAILED_PRECONDITION 400, ABORTED 409,
// OUT_OF_RANGE 400, UNIMPLEMENTED 501, UNAVAILABLE 503, UNAUTHENTICATED 401,
// UNKNOWN, INTERNAL, DATA_LOSS 500).
int HttpStatusFromGrpcCode(absl::StatusCode code);
// The status for a stream the peer reset with an HTTP/2 error code, per
// PROTOCOL-HTTP2.md: REFUSED_STREAM UNAVAILABLE, CANCEL CANCELLED,
// ENHANCE_YOUR_CALM RESOURCE_EXHAUSTED, INADEQUATE_SECURITY
// PERMISSION_DENIED, the rest INTERNAL. The message names the error code.
absl::Status StatusFromResetCode(uint32_t error_code);

// {"code":<number>,"message":"<JSON-escaped message>"}: the body a JSON
// caller gets with an error.
std::string JsonErrorBody(const absl::Status& status);

// dynrpc's clients say which kind of call they make ("unary" or "stream"),
// so a server refuses a method called as the other kind with UNIMPLEMENTED.
// Other clients (gRPC's) do not send it; the method's own kind is used.
inline constexpr std::string_view kCallKindHeader = "dynrpc-call-kind";

// Custom metadata as headers. Keys are lowercased; a key must be a valid
// header name (a-z, 0-9, '-', '_', '.') and not reserved: pseudo-headers,
// "content-type", "te", "user-agent", "host", anything starting "grpc-", and
// the connection-specific fields HTTP/2 forbids ("connection", "keep-alive",
// "proxy-connection", "transfer-encoding", "upgrade"). Values of keys ending
// "-bin" are base64-encoded (unpadded) on the wire; other values must be
// printable ASCII (0x20-0x7E). INVALID_ARGUMENT naming the key otherwise.
absl::Status ValidateMetadata(const Metadata& metadata);
bool IsReservedHeader(std::string_view lowercase_name);
// The wire value for a (valid) entry.
std::string EncodeMetadataValue(std::string_view key, std::string_view value);
// The value a receiver sees: "-bin" values base64-decoded (padded or not);
// nullopt when they do not decode.
std::optional<std::string> DecodeMetadataValue(std::string_view key,
                                               std::string_view value);

}  // namespace dynrpc::internal::http

#endif  // DYNRPC_RUNTIME_SRC_HTTP_GRPC_WIRE_H_
