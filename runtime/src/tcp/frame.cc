#include "tcp/frame.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace dynrpc::internal::tcp {
namespace {

absl::Status Malformed(absl::string_view what) {
  return absl::InternalError(absl::StrCat("malformed frame: ", what));
}

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { Big(v, 2); }
  void U32(uint32_t v) { Big(v, 4); }
  void U64(uint64_t v) { Big(v, 8); }
  void Bytes(std::string_view s) { out_.append(s); }

 private:
  void Big(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) {
      out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
  }
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t& v) { return Big(v, 1); }
  bool U16(uint16_t& v) { return Big(v, 2); }
  bool U32(uint32_t& v) { return Big(v, 4); }
  bool U64(uint64_t& v) { return Big(v, 8); }
  bool Bytes(std::size_t n, std::string& out) {
    if (in_.size() < n) return false;
    out.assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  template <typename T>
  bool Big(T& v, int n) {
    if (in_.size() < static_cast<std::size_t>(n)) return false;
    uint64_t r = 0;
    for (int i = 0; i < n; ++i) {
      r = (r << 8) | static_cast<uint8_t>(in_[i]);
    }
    in_.remove_prefix(n);
    v = static_cast<T>(r);
    return true;
  }
  std::string_view in_;
};

std::size_t MetadataSize(const Metadata& metadata) {
  std::size_t n = 2;
  for (const auto& [k, v] : metadata) n += 2 + k.size() + 4 + v.size();
  return n;
}

absl::Status CheckHead(std::size_t head_len, const Metadata& metadata) {
  for (const auto& [k, v] : metadata) {
    if (k.size() > 0xffff) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "metadata key of ", k.size(), " bytes exceeds the 65535-byte limit"));
    }
  }
  if (metadata.size() > 0xffff || head_len > kMaxHeadSize) {
    return absl::ResourceExhaustedError(
        absl::StrCat("call head (method, status message and metadata) of ",
                     head_len, " bytes exceeds the limit of ", kMaxHeadSize,
                     " bytes"));
  }
  return absl::OkStatus();
}

void WriteHeader(Writer& w, FrameType type, uint64_t call_id,
                 std::size_t head_len, std::size_t payload_len,
                 uint16_t flags = 0) {
  w.U8(kFrameMagic);
  w.U8(static_cast<uint8_t>(type));
  w.U16(flags);
  w.U64(call_id);
  w.U32(static_cast<uint32_t>(head_len));
  w.U32(static_cast<uint32_t>(payload_len));
}

void WriteMetadata(Writer& w, const Metadata& metadata) {
  w.U16(static_cast<uint16_t>(metadata.size()));
  for (const auto& [k, v] : metadata) {
    w.U16(static_cast<uint16_t>(k.size()));
    w.Bytes(k);
    w.U32(static_cast<uint32_t>(v.size()));
    w.Bytes(v);
  }
}

bool ReadMetadata(Reader& r, Metadata& metadata) {
  uint16_t n = 0;
  if (!r.U16(n)) return false;
  metadata.reserve(n);
  for (uint16_t i = 0; i < n; ++i) {
    uint16_t klen = 0;
    uint32_t vlen = 0;
    std::string key, value;
    if (!r.U16(klen) || !r.Bytes(klen, key) || !r.U32(vlen) ||
        !r.Bytes(vlen, value)) {
      return false;
    }
    metadata.emplace_back(std::move(key), std::move(value));
  }
  return true;
}

}  // namespace

absl::StatusOr<FrameHeader> DecodeFrameHeader(std::string_view bytes) {
  if (bytes.size() != kFrameHeaderSize) {
    return Malformed(absl::StrCat("header of ", bytes.size(),
                                  " bytes, expected ", kFrameHeaderSize));
  }
  Reader r(bytes);
  uint8_t magic = 0, type = 0;
  uint16_t flags = 0;
  FrameHeader h;
  r.U8(magic);
  r.U8(type);
  r.U16(flags);
  r.U64(h.call_id);
  r.U32(h.head_len);
  r.U32(h.payload_len);
  if (magic != kFrameMagic) {
    return Malformed(absl::StrCat("bad magic byte 0x", absl::Hex(magic),
                                  " (is the peer a dynrpc TCP endpoint?)"));
  }
  if (type < static_cast<uint8_t>(FrameType::kRequest) ||
      type > static_cast<uint8_t>(FrameType::kPong)) {
    return Malformed(absl::StrCat("unknown frame type ", type));
  }
  if ((flags & ~kKnownFlags) != 0) {
    return Malformed(absl::StrCat("unknown flags ", flags));
  }
  if ((flags & kFlagDeflate) && (flags & kFlagGzip)) {
    return Malformed("a payload flagged both deflate and gzip");
  }
  h.type = static_cast<FrameType>(type);
  h.flags = flags;
  return h;
}

absl::StatusOr<std::string> EncodeRequestPrefix(uint64_t call_id,
                                                const RequestHead& head,
                                                std::size_t payload_len,
                                                uint16_t flags) {
  std::size_t head_len = 8 + 2 + head.method.size() + MetadataSize(head.metadata);
  if (head.method.size() > 0xffff) {
    return absl::InvalidArgumentError(absl::StrCat(
        "method name of ", head.method.size(), " bytes is too long"));
  }
  if (absl::Status s = CheckHead(head_len, head.metadata); !s.ok()) return s;
  std::string out;
  out.reserve(kFrameHeaderSize + head_len);
  Writer w(out);
  WriteHeader(w, FrameType::kRequest, call_id, head_len, payload_len, flags);
  w.U64(head.timeout_us);
  w.U16(static_cast<uint16_t>(head.method.size()));
  w.Bytes(head.method);
  WriteMetadata(w, head.metadata);
  return out;
}

absl::StatusOr<std::string> EncodeResponsePrefix(uint64_t call_id,
                                                 const ResponseHead& head,
                                                 std::size_t payload_len,
                                                 uint16_t flags) {
  std::size_t head_len = 4 + 4 + head.message.size() +
                         MetadataSize(head.initial_metadata) +
                         MetadataSize(head.metadata);
  if (absl::Status s = CheckHead(head_len, head.metadata); !s.ok()) return s;
  if (absl::Status s = CheckHead(head_len, head.initial_metadata); !s.ok()) {
    return s;
  }
  std::string out;
  out.reserve(kFrameHeaderSize + head_len);
  Writer w(out);
  WriteHeader(w, FrameType::kResponse, call_id, head_len, payload_len, flags);
  w.U32(static_cast<uint32_t>(head.code));
  w.U32(static_cast<uint32_t>(head.message.size()));
  w.Bytes(head.message);
  WriteMetadata(w, head.initial_metadata);
  WriteMetadata(w, head.metadata);
  return out;
}

absl::StatusOr<std::string> EncodeHeaders(uint64_t call_id,
                                          const Metadata& metadata) {
  std::size_t head_len = MetadataSize(metadata);
  if (absl::Status s = CheckHead(head_len, metadata); !s.ok()) return s;
  std::string out;
  Writer w(out);
  WriteHeader(w, FrameType::kHeaders, call_id, head_len, 0);
  WriteMetadata(w, metadata);
  return out;
}

namespace {
std::string BareFrame(FrameType type, uint64_t call_id,
                      std::size_t payload_len = 0, uint16_t flags = 0) {
  std::string out;
  out.reserve(kFrameHeaderSize);
  Writer w(out);
  WriteHeader(w, type, call_id, 0, payload_len, flags);
  return out;
}
}  // namespace

uint16_t CompressionFlag(Compression compression) {
  switch (compression) {
    case Compression::kDeflate:
      return kFlagDeflate;
    case Compression::kGzip:
      return kFlagGzip;
    case Compression::kIdentity:
      break;
  }
  return 0;
}

Compression CompressionOf(uint16_t flags) {
  if (flags & kFlagGzip) return Compression::kGzip;
  if (flags & kFlagDeflate) return Compression::kDeflate;
  return Compression::kIdentity;
}

std::string EncodeCancel(uint64_t call_id) {
  return BareFrame(FrameType::kCancel, call_id);
}

std::string EncodeMessagePrefix(uint64_t call_id, std::size_t payload_len,
                                uint16_t flags) {
  return BareFrame(FrameType::kMessage, call_id, payload_len, flags);
}

std::string EncodeHalfClose(uint64_t call_id) {
  return BareFrame(FrameType::kHalfClose, call_id);
}

std::string EncodeWindow(uint64_t call_id, uint32_t bytes) {
  std::string out;
  Writer w(out);
  WriteHeader(w, FrameType::kWindow, call_id, 4, 0);
  w.U32(bytes);
  return out;
}

std::string EncodePing() { return BareFrame(FrameType::kPing, 0); }

std::string EncodePong() { return BareFrame(FrameType::kPong, 0); }

namespace {
void PutU64(std::string& out, std::size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out[at + i] = static_cast<char>((v >> (8 * (7 - i))) & 0xff);
  }
}
}  // namespace

void SetCallId(std::string& prefix, uint64_t call_id) {
  PutU64(prefix, 4, call_id);
}

void SetTimeout(std::string& request_prefix, uint64_t timeout_us) {
  PutU64(request_prefix, kFrameHeaderSize, timeout_us);
}

absl::StatusOr<RequestHead> DecodeRequestHead(std::string_view head) {
  Reader r(head);
  RequestHead h;
  uint16_t method_len = 0;
  if (!r.U64(h.timeout_us) || !r.U16(method_len) ||
      !r.Bytes(method_len, h.method) || !ReadMetadata(r, h.metadata)) {
    return Malformed("truncated request head");
  }
  if (!r.done()) return Malformed("trailing bytes after request head");
  h.timeout_us = std::min(h.timeout_us, kMaxTimeoutUs);
  return h;
}

absl::StatusOr<ResponseHead> DecodeResponseHead(std::string_view head) {
  Reader r(head);
  ResponseHead h;
  uint32_t code = 0, message_len = 0;
  if (!r.U32(code) || !r.U32(message_len) ||
      !r.Bytes(message_len, h.message) ||
      !ReadMetadata(r, h.initial_metadata) || !ReadMetadata(r, h.metadata)) {
    return Malformed("truncated response head");
  }
  if (!r.done()) return Malformed("trailing bytes after response head");
  if (code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
    return Malformed(absl::StrCat("unknown status code ", code));
  }
  h.code = static_cast<absl::StatusCode>(code);
  return h;
}

absl::StatusOr<Metadata> DecodeHeaders(std::string_view head) {
  Reader r(head);
  Metadata metadata;
  if (!ReadMetadata(r, metadata)) return Malformed("truncated headers");
  if (!r.done()) return Malformed("trailing bytes after headers");
  return metadata;
}

absl::StatusOr<uint32_t> DecodeWindow(std::string_view head) {
  Reader r(head);
  uint32_t bytes = 0;
  if (!r.U32(bytes) || !r.done()) return Malformed("window head is not 4 bytes");
  return bytes;
}

}  // namespace dynrpc::internal::tcp
