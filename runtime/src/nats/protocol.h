// The NATS plane's protocol: subjects and the headers that carry a call.
//
// Subjects (ns = DYN_NAMESPACE):
//   <ns>.rpc.<package.Service>.<Method>       any instance: servers subscribe
//                                             in queue group
//                                             <ns>.rpc.<package.Service>
//   <ns>.inst.<instance>.<package.Service>.<Method>   one chosen instance
//   <ns>.call.<instance>.<n>                  a call's messages to its server
//   <ns>.inbox.<client>.<n>                   a call's messages to its client
//   <ns>.cancel                               cancels of calls not yet accepted
//
// Headers travel in each message's envelope, ahead of its payload
// (envelope.h), not as NATS headers. Every message carries Dyn-Type. A call
// opens with an "open" message to a method subject, its reply subject the
// client's inbox; the server answers on that inbox ("accept" with its call
// subject for streams; "msg" with a sequence number; "hb" heartbeats; "end"
// with the status, metadata and, for unary and client-streaming calls, the
// response). The client sends "msg", "done" (half-close), "credit", "hb" and
// "cancel" to the call subject. A message whose data is compressed says how in
// Dyn-Enc (gzip, deflate); an "open" says in Dyn-Accept-Enc which compressions
// the caller inflates (without it, responses go uncompressed). Credits are
// bytes (each message costs its size plus 20), granted by the reader as it
// reads, so a writer never floods a reader. Liveness is the core's policy in
// heartbeat form (CallLiveness): both sides send a heartbeat every second while
// a call is open; a call whose peer is silent for 4 s ends (UNAVAILABLE at the
// client, cancelled at the server).
#ifndef DYNRPC_RUNTIME_SRC_NATS_PROTOCOL_H_
#define DYNRPC_RUNTIME_SRC_NATS_PROTOCOL_H_

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "boost/asio/awaitable.hpp"
#include "core/liveness.h"
#include "core/stream_state.h"
#include "dynrpc/context.h"
#include "nats/nats_connection.h"

namespace dynrpc::internal::nats {

inline constexpr std::chrono::milliseconds kHeartbeatInterval{1000};

// Header names.
inline constexpr char kType[] = "Dyn-Type";
inline constexpr char kKind[] = "Dyn-Kind";
inline constexpr char kMethod[] = "Dyn-Method";
inline constexpr char kTimeoutUs[] = "Dyn-Timeout-Us";
inline constexpr char kMetadata[] = "Dyn-Md";
inline constexpr char kInitialMetadata[] = "Dyn-Imd";
inline constexpr char kTrailingMetadata[] = "Dyn-Tmd";
inline constexpr char kHasMessage[] = "Dyn-Has-Msg";
inline constexpr char kDone[] = "Dyn-Done";
inline constexpr char kCall[] = "Dyn-Call";
inline constexpr char kReplyTo[] = "Dyn-Reply";
inline constexpr char kSeq[] = "Dyn-Seq";
inline constexpr char kCredit[] = "Dyn-Credit";
inline constexpr char kCode[] = "Dyn-Code";
inline constexpr char kMessage[] = "Dyn-Message";
// On a message whose data is compressed: "gzip" or "deflate".
inline constexpr char kEncoding[] = "Dyn-Enc";
// On an "open": the compressions the caller accepts for responses, as
// grpc-accept-encoding says them; without it, responses go uncompressed.
inline constexpr char kAcceptEncoding[] = "Dyn-Accept-Enc";

// Says in `headers` that the data is compressed with `compression` (nothing
// for identity).
void AddCompression(NatsHeaders& headers, Compression compression);
// How a message's data is compressed: UNIMPLEMENTED for an algorithm we do
// not know, naming those we do.
absl::StatusOr<Compression> CompressionFrom(const NatsMessage& message);

// "/pkg.Service/Method" -> "pkg.Service.Method"; nullopt if malformed.
std::optional<std::string> MethodSubjectSuffix(std::string_view method_path);
// The service part of a method path: "/pkg.Service/Method" -> "pkg.Service".
std::string ServiceOf(std::string_view method_path);

// Metadata and free text as header values (base64 of a length-prefixed
// encoding: binary-safe, no CR/LF).
std::string EncodeMetadata(const Metadata& metadata);
std::optional<Metadata> DecodeMetadata(std::string_view value);
std::string EncodeText(std::string_view text);
std::string DecodeText(std::string_view value);

// A status as headers (code and message), and back.
void AddStatus(NatsHeaders& headers, const absl::Status& status);
absl::Status StatusFrom(const NatsMessage& message);

// RESOURCE_EXHAUSTED when `size` exceeds the plane's own limit
// (DYN_NATS_MAX_MESSAGE_SIZE; 0: none). The NATS server's max_payload is
// checked at publishing.
absl::Status CheckMessageSize(const NatsConfig& config, std::size_t size,
                              std::string_view what);

// The largest message a side accepts (a compressed one inflated): the
// plane's own limit if set, never above the NATS server's `max_payload`.
std::size_t ReceiveLimit(const NatsConfig& config, int64_t max_payload);

// Runs `tick` every kHeartbeatInterval until it returns false or the task is
// cancelled: the heartbeat loop of a client or a server.
boost::asio::awaitable<void> EveryHeartbeat(std::function<bool()> tick);

// Now, as a Clock count (for atomics).
Clock::rep NowCount();
// The call number a per-call subject ends with ("<...>.<n>"), or nullopt.
std::optional<uint64_t> CallNumber(std::string_view subject);

// The core's liveness policy in heartbeat form (a NATS peer does not
// answer probes: each side beats on its own), shared by every call.
const std::shared_ptr<const Liveness::Policy>& HeartbeatPolicy();

// Whether something stamped at `since` (a Clock count) is older than the
// silence that loses a peer.
bool PeerLost(Clock::rep since);

// DATA_LOSS unless `message`'s sequence number is `*expected` (then
// advances it): NATS core may drop a message (a slow consumer, a
// reconnection), and a stream must not silently skip one.
absl::Status CheckSequence(const NatsMessage& message, int64_t* expected);

// A stream's "msg" into `state`: OK, or why the call must be cancelled (a
// message lost in transit, or one beyond the credit `peer` was given).
absl::Status DeliverInOrder(NatsMessage& message, int64_t* expected,
                            StreamState& state, std::string_view peer);
// A "credit" message: the bytes `state`'s writer may send more.
void AddCredit(const NatsMessage& message, StreamState& state);

// A random id for an instance or a client: 16 hex digits.
std::string NewId();

}  // namespace dynrpc::internal::nats

#endif  // DYNRPC_RUNTIME_SRC_NATS_PROTOCOL_H_
