#include "nats/envelope.h"

#include <cstdint>

namespace dynrpc::internal::nats {
namespace {

std::size_t VarintSize(std::size_t n) {
  std::size_t size = 1;
  while (n >= 0x80) {
    n >>= 7;
    ++size;
  }
  return size;
}

void AppendVarint(std::size_t n, std::string& out) {
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7F) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
}

// Reads a varint at `*at` (advancing it); nullopt past the end or past five
// bytes (35 bits: no length in an envelope comes near).
std::optional<std::size_t> ReadVarint(std::string_view data, std::size_t* at) {
  std::size_t value = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (*at >= data.size()) return std::nullopt;
    uint8_t byte = static_cast<uint8_t>(data[(*at)++]);
    value |= std::size_t{byte & 0x7Fu} << shift;
    if ((byte & 0x80) == 0) return value;
  }
  return std::nullopt;
}

// A string of `length` bytes at `*at` (advancing it), or nullopt past the end.
std::optional<std::string_view> ReadBytes(std::string_view data,
                                          std::size_t* at, std::size_t length) {
  if (length > data.size() - *at) return std::nullopt;
  std::string_view bytes = data.substr(*at, length);
  *at += length;
  return bytes;
}

}  // namespace

std::size_t EnvelopeSize(const NatsHeaders& headers) {
  std::size_t size = 1 + VarintSize(headers.size());
  for (const auto& [key, value] : headers) {
    size += VarintSize(key.size()) + key.size() + VarintSize(value.size()) +
            value.size();
  }
  return size;
}

void AppendEnvelope(const NatsHeaders& headers, std::string& out) {
  out.push_back(kEnvelopeMagic);
  AppendVarint(headers.size(), out);
  for (const auto& [key, value] : headers) {
    AppendVarint(key.size(), out);
    out.append(key);
    AppendVarint(value.size(), out);
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
  if (data.empty() || data[0] != kEnvelopeMagic) return malformed();
  std::size_t at = 1;
  std::optional<std::size_t> count = ReadVarint(data, &at);
  if (!count || *count > kMaxEnvelopeHeaders) return malformed();
  headers.reserve(*count);
  for (std::size_t i = 0; i < *count; ++i) {
    std::optional<std::size_t> key_length = ReadVarint(data, &at);
    if (!key_length || *key_length == 0 || *key_length > 255) {
      return malformed();
    }
    std::optional<std::string_view> key = ReadBytes(data, &at, *key_length);
    if (!key) return malformed();
    std::optional<std::size_t> value_length = ReadVarint(data, &at);
    if (!value_length) return malformed();
    std::optional<std::string_view> value = ReadBytes(data, &at, *value_length);
    if (!value) return malformed();
    headers.emplace_back(std::string(*key), std::string(*value));
  }
  return at;
}

}  // namespace dynrpc::internal::nats
