// Message compression, for every plane: zlib's deflate and gzip formats.
//
// The core compresses what callers and handlers send (their context's or
// the process's choice, above the size threshold) and inflates what
// arrives; a plane only carries, per message, which algorithm compressed it
// (TCP: frame flags; NATS: a header; HTTP/2: gRPC's flag and grpc-encoding).
#ifndef DYNRPC_RUNTIME_SRC_CORE_COMPRESSION_H_
#define DYNRPC_RUNTIME_SRC_CORE_COMPRESSION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynrpc/context.h"

namespace dynrpc::internal {

// The algorithms a peer accepts, as a bit set (bit i: Compression(i)).
using CompressionSet = uint8_t;
inline constexpr CompressionSet Bit(Compression c) {
  return static_cast<CompressionSet>(1u << static_cast<unsigned>(c));
}
inline constexpr CompressionSet kAllCompressions =
    Bit(Compression::kIdentity) | Bit(Compression::kDeflate) |
    Bit(Compression::kGzip);
// What we accept, as grpc-accept-encoding says it: "identity,deflate,gzip".
inline constexpr std::string_view kAcceptEncoding = "identity,deflate,gzip";
// A grpc-accept-encoding value ("gzip, deflate"); names we do not know are
// ignored, and identity is always in.
CompressionSet ParseAcceptEncoding(std::string_view value);

// UNIMPLEMENTED: a peer compressed with `name`, which we do not support;
// names those we do (as gRPC's compression spec asks).
absl::Status UnsupportedCompression(std::string_view name);

// How the process compresses by default (Config: DYN_COMPRESSION,
// DYN_COMPRESSION_MIN_BYTES).
struct CompressionPolicy {
  Compression algorithm = Compression::kIdentity;
  std::size_t min_bytes = 1024;
};

// `message` compressed with `algorithm`, when worth it: nullopt for
// identity, a message under `min_bytes`, or one that would not shrink (the
// caller sends it as it is).
std::optional<std::string> MaybeCompress(Compression algorithm,
                                         std::string_view message,
                                         std::size_t min_bytes);

// MaybeCompress in place: `message` becomes its compressed form (its old
// buffer recycled) when worth it. Whether it did.
bool CompressInPlace(Compression algorithm, std::size_t min_bytes,
                     std::string& message);

// `message`, compressed with `algorithm`, inflated. Never holds more than
// `limit` + a chunk: a message that inflates past `limit` is
// RESOURCE_EXHAUSTED naming the limit ("... inflates past the message size
// limit of N bytes"); one that is not valid `algorithm` data, INTERNAL.
// `what`: "request" or "response", for the message.
absl::StatusOr<std::string> Decompress(Compression algorithm,
                                       std::string_view message,
                                       std::size_t limit,
                                       std::string_view what);

// A message that arrived compressed with `algorithm` (kIdentity: not
// compressed), inflated in place.
absl::Status InflateInPlace(Compression algorithm, std::string& message,
                            std::size_t limit, std::string_view what);

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_COMPRESSION_H_
