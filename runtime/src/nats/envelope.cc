#include "nats/envelope.h"

#include <cstdint>

namespace dynrpc::internal::nats {
namespace {

std::size_t LengthSize(std::size_t n) {
  std::size_t size = 1;
  while (n >= 0x80) {
    n >>= 7;
    ++size;
  }
  return size;
}

}  // namespace

void PutLength(std::string& out, std::size_t n) {
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7F) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
}

bool GetLength(std::string_view& in, std::size_t& n) {
  n = 0;
  // At most five bytes (35 bits): no length here comes near.
  for (int shift = 0; shift < 35; shift += 7) {
    if (in.empty()) return false;
    const uint8_t byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    n |= std::size_t{byte & 0x7Fu} << shift;
    if ((byte & 0x80) == 0) return n <= in.size();
  }
  return false;
}

std::size_t EnvelopeSize(const NatsHeaders& headers) {
  std::size_t size = 1 + LengthSize(headers.size());
  for (const auto& [key, value] : headers) {
    size += LengthSize(key.size()) + key.size() + LengthSize(value.size()) +
            value.size();
  }
  return size;
}

void AppendEnvelope(const NatsHeaders& headers, std::string& out) {
  out.push_back(kEnvelopeMagic);
  PutLength(out, headers.size());
  for (const auto& [key, value] : headers) {
    PutLength(out, key.size());
    out.append(key);
    PutLength(out, value.size());
    out.append(value);
  }
}

std::optional<std::size_t> ReadEnvelope(std::string_view data,
                                        NatsHeaders& headers) {
  headers.clear();
  auto malformed = [&]() -> std::optional<std::size_t> {
    headers.clear();
    return std::nullopt;
  };
  std::string_view in = data;
  if (in.empty() || in.front() != kEnvelopeMagic) return malformed();
  in.remove_prefix(1);
  std::size_t count = 0;
  if (!GetLength(in, count) || count > kMaxEnvelopeHeaders) return malformed();
  headers.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t n = 0;
    if (!GetLength(in, n) || n == 0 || n > 255) return malformed();
    std::string key(in.substr(0, n));
    in.remove_prefix(n);
    if (!GetLength(in, n)) return malformed();
    headers.emplace_back(std::move(key), std::string(in.substr(0, n)));
    in.remove_prefix(n);
  }
  return data.size() - in.size();
}

}  // namespace dynrpc::internal::nats
