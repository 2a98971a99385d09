// How a dynrpc message carries its headers over NATS: in the message's data,
// ahead of its payload, not as NATS headers.
//
// NATS headers cost on every message: nats.c keeps them in a hash map of
// copied strings (a natsMsg built for each publish, which nats.c frees
// through its garbage-collector thread: a wake-up of that thread per
// message), and the NATS server parses HPUB/HMSG. The envelope is a few
// length-prefixed strings that both sides read and write in place, and the
// message goes out with a plain publish (perf, issue 14: the server's context
// switches per call, the broker's CPU per call).
//
// Layout: kEnvelopeMagic, a varint count of headers, each header a varint key
// length (1 to 255), the key, a varint value length and the value (any
// bytes), then the payload.
#ifndef DYNRPC_RUNTIME_SRC_NATS_ENVELOPE_H_
#define DYNRPC_RUNTIME_SRC_NATS_ENVELOPE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dynrpc::internal::nats {

using NatsHeaders = std::vector<std::pair<std::string, std::string>>;

inline constexpr char kEnvelopeMagic = '\xD7';
// More headers than this is not a dynrpc message.
inline constexpr std::size_t kMaxEnvelopeHeaders = 64;

// The bytes `headers` take ahead of the payload.
std::size_t EnvelopeSize(const NatsHeaders& headers);

// The plane's one length encoding (a varint), in envelopes and in encoded
// metadata: PutLength() appends `n`; GetLength() takes a length off the
// front of `in`, false when `in` ends first or fewer than `n` bytes follow.
void PutLength(std::string& out, std::size_t n);
bool GetLength(std::string_view& in, std::size_t& n);

// Appends the envelope of `headers` to `out`. Keys are 1 to 255 bytes (the
// plane's own names); values any bytes.
void AppendEnvelope(const NatsHeaders& headers, std::string& out);

// Reads the envelope at the start of `data` into `headers` and returns where
// the payload begins; nullopt, with `headers` empty, when `data` does not
// start with a well-formed envelope (not a dynrpc message).
std::optional<std::size_t> ReadEnvelope(std::string_view data,
                                        NatsHeaders& headers);

}  // namespace dynrpc::internal::nats

#endif  // DYNRPC_RUNTIME_SRC_NATS_ENVELOPE_H_
