#include "core/compression.h"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dynrpc/message_buffers.h"

namespace dynrpc::internal {

namespace {

// zlib's window bits: 15 is the zlib format (HTTP's and gRPC's "deflate"),
// +16 the gzip format.
int WindowBits(Compression algorithm) {
  return algorithm == Compression::kGzip ? 15 + 16 : 15;
}

// A z_stream per thread and algorithm, reset between messages: setting one
// up costs more than compressing a small message.
class Deflater {
 public:
  explicit Deflater(Compression algorithm) {
    ok_ = deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                       WindowBits(algorithm), 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~Deflater() {
    if (ok_) deflateEnd(&z_);
  }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  std::optional<std::string> Compress(std::string_view in) {
    if (!ok_ || deflateReset(&z_) != Z_OK) return std::nullopt;
    // Only a result that shrinks is kept: no room beyond the input.
    std::string out(in.size(), '\0');
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    z_.next_out = reinterpret_cast<Bytef*>(out.data());
    z_.avail_out = static_cast<uInt>(out.size());
    if (deflate(&z_, Z_FINISH) != Z_STREAM_END) return std::nullopt;
    out.resize(out.size() - z_.avail_out);
    return out;
  }

 private:
  z_stream z_{};
  bool ok_ = false;
};

class Inflater {
 public:
  explicit Inflater(Compression algorithm) {
    ok_ = inflateInit2(&z_, WindowBits(algorithm)) == Z_OK;
  }
  ~Inflater() {
    if (ok_) inflateEnd(&z_);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  z_stream* Reset() {
    if (!ok_ || inflateReset(&z_) != Z_OK) return nullptr;
    return &z_;
  }

 private:
  z_stream z_{};
  bool ok_ = false;
};

Deflater& DeflaterFor(Compression algorithm) {
  thread_local Deflater deflate(Compression::kDeflate);
  thread_local Deflater gzip(Compression::kGzip);
  return algorithm == Compression::kGzip ? gzip : deflate;
}

Inflater& InflaterFor(Compression algorithm) {
  thread_local Inflater deflate(Compression::kDeflate);
  thread_local Inflater gzip(Compression::kGzip);
  return algorithm == Compression::kGzip ? gzip : deflate;
}

// Grown as the output needs, not to a size the input announces.
constexpr std::size_t kFirstChunk = 16 * 1024;

}  // namespace

CompressionSet ParseAcceptEncoding(std::string_view value) {
  CompressionSet set = Bit(Compression::kIdentity);
  for (absl::string_view name :
       absl::StrSplit(absl::string_view(value.data(), value.size()), ',')) {
    std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
    if (std::optional<Compression> c = ParseCompression(lower)) set |= Bit(*c);
  }
  return set;
}

absl::Status UnsupportedCompression(std::string_view name) {
  return absl::UnimplementedError(absl::StrCat(
      "compression '",
      absl::CHexEscape(absl::string_view(name.data(), name.size())),
      "' is not supported (supported: ", std::string(kAcceptEncoding), ")"));
}

std::optional<std::string> MaybeCompress(Compression algorithm,
                                         std::string_view message,
                                         std::size_t min_bytes) {
  if (algorithm == Compression::kIdentity || message.size() < min_bytes ||
      message.empty()) {
    return std::nullopt;
  }
  return DeflaterFor(algorithm).Compress(message);
}

bool CompressInPlace(Compression algorithm, std::size_t min_bytes,
                     std::string& message) {
  std::optional<std::string> compressed =
      MaybeCompress(algorithm, message, min_bytes);
  if (!compressed) return false;
  RecycleMessageBuffer(std::exchange(message, *std::move(compressed)));
  return true;
}

absl::StatusOr<std::string> Decompress(Compression algorithm,
                                       std::string_view message,
                                       std::size_t limit,
                                       std::string_view what) {
  // zlib counts in 32 bits: no message or limit beyond them (the planes'
  // limits stop at 2 GiB anyway).
  constexpr std::size_t kMaxBytes = std::numeric_limits<uInt>::max() - 1;
  limit = std::min(limit, kMaxBytes);
  if (message.size() > kMaxBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a compressed ", std::string(what), " message of ", message.size(),
        " bytes is too large to inflate"));
  }
  z_stream* z = InflaterFor(algorithm).Reset();
  if (z == nullptr) {
    return absl::InternalError("zlib could not be set up to inflate");
  }
  std::string out;
  out.reserve(std::min(limit + 1, std::max(kFirstChunk, message.size() * 4)));
  out.resize(out.capacity());
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  z->avail_in = static_cast<uInt>(message.size());
  std::size_t produced = 0;
  const std::string subject =
      absl::StrCat("a ", std::string(CompressionName(algorithm)),
                   "-compressed ", std::string(what), " message");
  for (;;) {
    z->next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    z->avail_out = static_cast<uInt>(out.size() - produced);
    int rc = inflate(z, Z_NO_FLUSH);
    produced = out.size() - z->avail_out;
    if (produced > limit) {
      return absl::ResourceExhaustedError(absl::StrCat(
          subject, " of ", message.size(),
          " bytes inflates past the message size limit of ", limit, " bytes"));
    }
    if (rc == Z_STREAM_END) {
      if (z->avail_in != 0) {
        return absl::InternalError(absl::StrCat(
            subject, " has ", z->avail_in, " bytes after its end"));
      }
      out.resize(produced);
      return out;
    }
    if (rc == Z_BUF_ERROR && z->avail_out != 0) {
      // No progress with room to write: the input ran out mid-stream.
      return absl::InternalError(absl::StrCat(subject, " is truncated"));
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return absl::InternalError(absl::StrCat(
          subject, " does not inflate: ", z->msg ? z->msg : "corrupt data"));
    }
    if (z->avail_out == 0) {
      // Full: grow (x4), never past the limit + 1 (which proves it over),
      // into a buffer of exactly that size (a string's own growth could
      // double past it).
      std::string bigger;
      bigger.reserve(
          std::min(limit + 1, std::max(out.size() * 4, out.size() + 1)));
      bigger.append(out.data(), produced);
      bigger.resize(bigger.capacity());
      out = std::move(bigger);
    }
  }
}

absl::Status InflateInPlace(Compression algorithm, std::string& message,
                            std::size_t limit, std::string_view what) {
  if (algorithm == Compression::kIdentity) return absl::OkStatus();
  absl::StatusOr<std::string> inflated =
      Decompress(algorithm, message, limit, what);
  if (!inflated.ok()) return inflated.status();
  message = *std::move(inflated);
  return absl::OkStatus();
}

}  // namespace dynrpc::internal
