#include "http/grpc_wire.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dynrpc/message_buffers.h"

namespace dynrpc::internal::http {

namespace {

// A message's buffer reserves at most this much before its bytes arrive.
constexpr std::size_t kFirstChunk = 256 * 1024;

// Debian's Abseil has its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0): every std::string_view going into an absl function passes here.
absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

constexpr char kUpperHex[] = "0123456789ABCDEF";

// Longest timeout ParseGrpcTimeout yields: the TCP plane's cap
// (kMaxTimeoutUs), so that a server's Clock::now() + timeout cannot overflow
// whatever the peer sent (99999999H is some 11,000 years).
constexpr std::chrono::nanoseconds kMaxGrpcTimeout =
    std::chrono::hours(366 * 24);

struct TimeoutUnit {
  char symbol;
  int64_t nanos;
};
// Finest first: EncodeGrpcTimeout takes the first one the value fits.
constexpr std::array<TimeoutUnit, 6> kTimeoutUnits = {{
    {'n', 1},
    {'u', 1'000},
    {'m', 1'000'000},
    {'S', 1'000'000'000},
    {'M', 60 * int64_t{1'000'000'000}},
    {'H', 3600 * int64_t{1'000'000'000}},
}};
constexpr int64_t kMaxTimeoutDigitsValue = 99'999'999;

// Length of the well-formed UTF-8 sequence at the start of `s` (1 to 4), or
// 0 when it starts with an invalid one (a stray continuation byte, a
// truncated or overlong sequence, a surrogate, or past U+10FFFF).
std::size_t Utf8SequenceLength(std::string_view s) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char b0 = byte(0);
  if (b0 < 0x80) return 1;
  std::size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return n;
}

void AppendJsonString(std::string_view s, std::string& out) {
  out.push_back('"');
  while (!s.empty()) {
    unsigned char c = static_cast<unsigned char>(s[0]);
    if (c >= 0x80) {
      std::size_t n = Utf8SequenceLength(s);
      if (n == 0) {
        // JSON text must be UTF-8: a byte that is not part of a valid
        // sequence becomes U+FFFD, as a decoder would show it.
        out.append("\\ufffd");
        n = 1;
      } else {
        out.append(s.substr(0, n));
      }
      s.remove_prefix(n);
      continue;
    }
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      default:
        if (c < 0x20) {
          out.append("\\u00");
          out.push_back(kUpperHex[c >> 4]);
          out.push_back(kUpperHex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    s.remove_prefix(1);
  }
  out.push_back('"');
}

bool IsHeaderNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

bool IsBinaryKey(std::string_view key) {
  return absl::EndsWithIgnoreCase(AsAbsl(key), "-bin");
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// Standard base64, padded or not, and nothing else: absl::Base64Unescape
// also skips whitespace, which a header value must not carry.
bool IsStrictBase64(std::string_view value) {
  std::size_t data_len = value.size();
  while (data_len > 0 && value[data_len - 1] == '=') --data_len;
  std::size_t padding = value.size() - data_len;
  if (padding > 2) return false;
  if (padding > 0 && value.size() % 4 != 0) return false;
  if (data_len % 4 == 1) return false;
  return std::all_of(value.begin(), value.begin() + data_len, IsBase64Char);
}

}  // namespace

absl::Status CheckMessageSize(std::string_view what, std::size_t bytes,
                              std::size_t max) {
  if (bytes <= max) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat(std::string(what), " message of ", bytes,
                   " bytes exceeds DYN_HTTP_MAX_MESSAGE_SIZE=", max, " bytes"));
}

std::string EncodeGrpcPrefix(uint32_t length, bool compressed) {
  std::string prefix(kGrpcPrefixSize, '\0');
  prefix[0] = compressed ? 1 : 0;
  prefix[1] = static_cast<char>((length >> 24) & 0xff);
  prefix[2] = static_cast<char>((length >> 16) & 0xff);
  prefix[3] = static_cast<char>((length >> 8) & 0xff);
  prefix[4] = static_cast<char>(length & 0xff);
  return prefix;
}

GrpcMessageDecoder::GrpcMessageDecoder(std::size_t max_message_size,
                                       const char* limit_name)
    : max_message_size_(max_message_size), limit_name_(limit_name) {}

void GrpcMessageDecoder::set_encoding(
    std::optional<std::string_view> grpc_encoding) {
  encoding_.reset();
  unsupported_encoding_.clear();
  if (!grpc_encoding) return;
  encoding_ = ParseCompression(*grpc_encoding);
  if (!encoding_) unsupported_encoding_ = std::string(*grpc_encoding);
}

absl::Status GrpcMessageDecoder::Feed(std::string_view bytes,
                                      std::string_view what,
                                      std::vector<GrpcMessage>& out) {
  if (!error_.ok()) return error_;
  while (!bytes.empty()) {
    if (!message_.has_value()) {
      std::size_t n = std::min(kGrpcPrefixSize - prefix_len_, bytes.size());
      std::memcpy(prefix_ + prefix_len_, bytes.data(), n);
      prefix_len_ += n;
      bytes.remove_prefix(n);
      if (prefix_len_ < kGrpcPrefixSize) break;

      uint8_t flag = static_cast<uint8_t>(prefix_[0]);
      uint32_t length = 0;
      for (std::size_t i = 1; i < kGrpcPrefixSize; ++i) {
        length = (length << 8) | static_cast<uint8_t>(prefix_[i]);
      }
      if (flag == 1 && !unsupported_encoding_.empty()) {
        error_ = UnsupportedCompression(unsupported_encoding_);
        return error_;
      }
      if (flag == 1 && encoding_.value_or(Compression::kIdentity) ==
                           Compression::kIdentity) {
        error_ = absl::InternalError(absl::StrCat(
            AsAbsl(what),
            " message is compressed (flag 1), but grpc-encoding names no "
            "compression (",
            encoding_ ? "identity" : "no grpc-encoding header", ")"));
        return error_;
      }
      if (flag > 1) {
        error_ = absl::InternalError(absl::StrFormat(
            "malformed gRPC message prefix: compressed flag 0x%02x", flag));
        return error_;
      }
      if (length > max_message_size_) {
        error_ = absl::ResourceExhaustedError(absl::StrCat(
            AsAbsl(what), " message of ", length, " bytes exceeds ",
            limit_name_, "=", max_message_size_, " bytes"));
        return error_;
      }
      // Memory for the message as its bytes arrive, not as announced: a
      // recycled buffer that fits it whole (already resident), else a
      // small one that grows (x4) with the data.
      message_ = TakeRecycledBuffer(length);
      if (message_->capacity() < std::min<std::size_t>(length, kFirstChunk)) {
        message_->reserve(std::min<std::size_t>(length, kFirstChunk));
      }
      expected_ = length;
      compressed_ = flag == 1;
    } else {
      std::size_t n = std::min(expected_ - message_->size(), bytes.size());
      if (message_->capacity() < message_->size() + n) {
        message_->reserve(
            std::min(expected_,
                     std::max(message_->size() + n, message_->capacity() * 4)));
      }
      message_->append(bytes.data(), n);
      bytes.remove_prefix(n);
    }
    if (message_->size() == expected_) {
      out.push_back(
          GrpcMessage{std::move(*message_),
                      compressed_ ? *encoding_ : Compression::kIdentity});
      message_.reset();
      prefix_len_ = 0;
      expected_ = 0;
    }
  }
  return absl::OkStatus();
}

bool GrpcMessageDecoder::AtBoundary() const {
  return prefix_len_ == 0 && !message_.has_value();
}

std::size_t GrpcMessageDecoder::buffered() const {
  if (message_.has_value()) return kGrpcPrefixSize + message_->size();
  return prefix_len_;
}

std::string EncodeGrpcTimeout(Clock::duration remaining) {
  // Rounded up, so that the peer never sees a shorter timeout than ours.
  int64_t nanos =
      std::chrono::ceil<std::chrono::nanoseconds>(remaining).count();
  if (nanos <= 0) return "1n";
  for (const TimeoutUnit& unit : kTimeoutUnits) {
    int64_t value = nanos / unit.nanos + (nanos % unit.nanos != 0 ? 1 : 0);
    if (value <= kMaxTimeoutDigitsValue) {
      return absl::StrCat(value, absl::string_view(&unit.symbol, 1));
    }
  }
  // Unreachable: INT64_MAX nanoseconds are some 2.6 million hours.
  return absl::StrCat(kMaxTimeoutDigitsValue, "H");
}

std::optional<Clock::duration> ParseGrpcTimeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  std::string_view digits = value.substr(0, value.size() - 1);
  char symbol = value.back();
  int64_t number = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    number = number * 10 + (c - '0');
  }
  for (const TimeoutUnit& unit : kTimeoutUnits) {
    if (unit.symbol != symbol) continue;
    std::chrono::nanoseconds timeout =
        number > kMaxGrpcTimeout.count() / unit.nanos
            ? kMaxGrpcTimeout
            : std::min(std::chrono::nanoseconds(number * unit.nanos),
                       kMaxGrpcTimeout);
    return std::chrono::ceil<Clock::duration>(timeout);
  }
  return std::nullopt;
}

std::string PercentEncode(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (char ch : message) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7E || c == '%') {
      out.push_back('%');
      out.push_back(kUpperHex[c >> 4]);
      out.push_back(kUpperHex[c & 0xF]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

std::string PercentDecode(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (std::size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '%' && i + 2 < message.size() &&
        IsHexDigit(message[i + 1]) && IsHexDigit(message[i + 2])) {
      out.push_back(static_cast<char>(HexValue(message[i + 1]) * 16 +
                                      HexValue(message[i + 2])));
      i += 2;
    } else {
      out.push_back(message[i]);
    }
  }
  return out;
}

absl::StatusCode GrpcCodeFromHttpStatus(int http_status) {
  switch (http_status) {
    case 400:
      return absl::StatusCode::kInternal;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

int HttpStatusFromGrpcCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    default:  // UNKNOWN, INTERNAL, DATA_LOSS and codes absl does not name
      return 500;
  }
}

absl::Status StatusFromResetCode(uint32_t error_code) {
  // RFC 9113 section 7, indexed by code.
  static constexpr const char* kNames[] = {
      "NO_ERROR",
      "PROTOCOL_ERROR",
      "INTERNAL_ERROR",
      "FLOW_CONTROL_ERROR",
      "SETTINGS_TIMEOUT",
      "STREAM_CLOSED",
      "FRAME_SIZE_ERROR",
      "REFUSED_STREAM",
      "CANCEL",
      "COMPRESSION_ERROR",
      "CONNECT_ERROR",
      "ENHANCE_YOUR_CALM",
      "INADEQUATE_SECURITY",
      "HTTP_1_1_REQUIRED",
  };
  std::string name =
      error_code < std::size(kNames)
          ? absl::StrFormat("%s (0x%x)", kNames[error_code], error_code)
          : absl::StrFormat("0x%x", error_code);
  std::string message =
      absl::StrCat("stream reset by the peer with HTTP/2 error ", name);
  absl::StatusCode code;
  switch (error_code) {
    case 0x7:  // REFUSED_STREAM: the server did not process it; retry
      code = absl::StatusCode::kUnavailable;
      break;
    case 0x8:  // CANCEL
      code = absl::StatusCode::kCancelled;
      break;
    case 0xb:  // ENHANCE_YOUR_CALM
      code = absl::StatusCode::kResourceExhausted;
      break;
    case 0xc:  // INADEQUATE_SECURITY
      code = absl::StatusCode::kPermissionDenied;
      break;
    default:
      code = absl::StatusCode::kInternal;
  }
  return absl::Status(code, message);
}

std::string JsonErrorBody(const absl::Status& status) {
  std::string body = absl::StrCat("{\"code\":", static_cast<int>(status.code()),
                                  ",\"message\":");
  std::string_view message(status.message().data(), status.message().size());
  AppendJsonString(message, body);
  body.push_back('}');
  return body;
}

bool IsReservedHeader(std::string_view lowercase_name) {
  if (lowercase_name.empty()) return false;
  if (lowercase_name[0] == ':') return true;
  if (lowercase_name.substr(0, 5) == "grpc-") return true;
  static constexpr std::string_view kReserved[] = {
      "content-type",
      "te",
      "user-agent",
      "host",
      "connection",
      // Connection-specific fields: RFC 9113 section 8.2.2 makes a message
      // carrying them malformed, so the peer would reset the stream.
      "keep-alive",
      "proxy-connection",
      "transfer-encoding",
      "upgrade",
  };
  return std::find(std::begin(kReserved), std::end(kReserved),
                   lowercase_name) != std::end(kReserved);
}

absl::Status ValidateMetadata(const Metadata& metadata) {
  for (const auto& [key, value] : metadata) {
    std::string lower = absl::AsciiStrToLower(key);
    if (IsReservedHeader(lower)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metadata key '", absl::CHexEscape(key), "' is reserved"));
    }
    if (lower.empty() ||
        !std::all_of(lower.begin(), lower.end(), IsHeaderNameChar)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metadata key '", absl::CHexEscape(key),
          "' is not a valid HTTP/2 header name (allowed: a-z 0-9 - _ .)"));
    }
    if (IsBinaryKey(lower)) continue;
    for (unsigned char c : value) {
      if (c < 0x20 || c > 0x7E) {
        return absl::InvalidArgumentError(
            absl::StrCat("metadata value of '", absl::CHexEscape(key),
                         "' has a byte outside printable ASCII; use a key "
                         "ending in -bin for binary values"));
      }
    }
  }
  return absl::OkStatus();
}

std::string EncodeMetadataValue(std::string_view key, std::string_view value) {
  if (!IsBinaryKey(key)) return std::string(value);
  std::string encoded = absl::Base64Escape(AsAbsl(value));
  while (!encoded.empty() && encoded.back() == '=') encoded.pop_back();
  return encoded;
}

std::optional<std::string> DecodeMetadataValue(std::string_view key,
                                               std::string_view value) {
  if (!IsBinaryKey(key)) return std::string(value);
  if (!IsStrictBase64(value)) return std::nullopt;
  std::string decoded;
  if (!absl::Base64Unescape(AsAbsl(value), &decoded)) return std::nullopt;
  return decoded;
}

}  // namespace dynrpc::internal::http
