// Per-call state seen by callers (ClientContext) and handlers (ServerContext).
//
// Example:
//   dynrpc::ClientContext ctx;
//   ctx.set_timeout(std::chrono::milliseconds(200));
//   ctx.AddMetadata("x-user", "ada");
//   absl::StatusOr<HelloReply> reply = co_await stub.SayHello(ctx, request);
#ifndef DYNRPC_CONTEXT_H_
#define DYNRPC_CONTEXT_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dynrpc {

// Ordered key/value pairs; a key may repeat. Keys are compared as given
// (callers should use lower case, as HTTP/2 and gRPC require).
using Metadata = std::vector<std::pair<std::string, std::string>>;

// Returns the first value stored under `key`, or nullopt.
std::optional<std::string_view> FindMetadata(const Metadata& metadata,
                                             std::string_view key);

using Clock = std::chrono::steady_clock;

// How a call's messages are compressed, gRPC's names: "identity" (not at
// all), "deflate" (zlib's format) and "gzip". One algorithm per direction
// of a call; messages smaller than the threshold
// (DYN_COMPRESSION_MIN_BYTES) and those that would not shrink go
// uncompressed. A receiver inflates messages up to its message size limit
// and refuses larger ones (RESOURCE_EXHAUSTED), however small they were on
// the wire.
enum class Compression : uint8_t { kIdentity = 0, kDeflate = 1, kGzip = 2 };
// "identity", "deflate" or "gzip".
std::string_view CompressionName(Compression compression);
// nullopt for another name.
std::optional<Compression> ParseCompression(std::string_view name);

// Per-message options of a stream's Write().
struct WriteOptions {
  // Sends this message uncompressed whatever the call's compression.
  bool no_compression = false;
};

class ClientContext;
class ServerContext;
namespace internal {
// The runtime's access to the contexts' private state.
struct ContextAccess;
}  // namespace internal

// What a caller sets for one call. A context describes exactly one call: do
// not reuse it for a second one.
//
// Without a deadline a call gets its request plane's default timeout (for
// TCP, DYN_TCP_REQUEST_TIMEOUT, 10 s by default).
class ClientContext {
 public:
  ClientContext() = default;
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  // The call fails with DEADLINE_EXCEEDED if it has not completed by then.
  // The deadline travels to the server, which cancels its handler when it
  // passes.
  void set_deadline(Clock::time_point deadline) { deadline_ = deadline; }
  void set_timeout(Clock::duration timeout) {
    deadline_ = Clock::now() + timeout;
  }
  std::optional<Clock::time_point> deadline() const { return deadline_; }

  // Sent to the handler with the request. A request id ("x-request-id") is
  // added when the caller gives none.
  void AddMetadata(std::string key, std::string value) {
    metadata_.emplace_back(std::move(key), std::move(value));
  }
  const Metadata& metadata() const { return metadata_; }
  Metadata& mutable_metadata() { return metadata_; }

  // Compresses the request messages with `compression` (the channel's
  // default, DYN_COMPRESSION, otherwise). Set before the call starts.
  void set_compression(Compression compression) { compression_ = compression; }
  std::optional<Compression> compression() const { return compression_; }

  // On a channel bound to a service (Channel::ForService): the call goes
  // to the instance with this id (Instance::id, Server::instance_id()),
  // whatever the channel's policy, and fails UNAVAILABLE when that instance
  // is not registered or is down, without trying another. The kDirect
  // policy requires it.
  void set_instance_id(uint64_t id) { instance_id_ = id; }
  std::optional<uint64_t> instance_id() const { return instance_id_; }

  // On a channel bound to a service: the instance the call was sent to (the
  // last one, when it was retried), once the call has ended.
  std::optional<uint64_t> routed_to() const { return routed_to_; }

  // Cancels the call, from any thread: it ends with CANCELLED, its pending
  // reads and writes end, and the server's handler is cancelled. Called
  // before the call starts, the call starts cancelled. No effect once the
  // call has ended.
  void TryCancel();
  bool IsCancelled() const;

  // What the server sent before its first message, and with its status.
  // Filled in when the call ends (a unary call's reply, a stream's Finish()
  // or its last Read()).
  const Metadata& server_initial_metadata() const { return initial_metadata_; }
  const Metadata& server_trailing_metadata() const {
    return trailing_metadata_;
  }

 private:
  friend struct internal::ContextAccess;

  std::optional<Clock::time_point> deadline_;
  Metadata metadata_;
  std::optional<uint64_t> instance_id_;
  std::optional<Compression> compression_;
  std::optional<uint64_t> routed_to_;
  Metadata initial_metadata_;
  Metadata trailing_metadata_;
  mutable std::mutex mu_;
  bool cancelled_ = false;                // guarded by mu_
  std::function<void()> cancel_running_;  // guarded by mu_
};

// What a handler sees of its call. Owned by the runtime; valid until the
// handler's coroutine completes.
class ServerContext {
 public:
  ServerContext(std::string method, Metadata metadata,
                std::optional<Clock::time_point> deadline, std::string peer)
      : method_(std::move(method)),
        metadata_(std::move(metadata)),
        deadline_(deadline),
        peer_(std::move(peer)) {}
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // The full method path, e.g. "/helloworld.Greeter/SayHello".
  const std::string& method() const { return method_; }
  // Metadata the caller sent.
  const Metadata& client_metadata() const { return metadata_; }
  // The caller's deadline, if it set one. Pass it on to calls this handler
  // makes (ClientContext::set_deadline) to propagate it down a chain.
  std::optional<Clock::time_point> deadline() const { return deadline_; }
  // The caller's transport address, for logging only.
  const std::string& peer() const { return peer_; }

  // Whether the call is over for the caller: it cancelled, its deadline
  // passed, or its connection was lost. The handler's pending reads and
  // writes end then too, and its coroutine receives Asio's terminal
  // cancellation, so waits it makes end early.
  bool IsCancelled() const {
    return cancelled_ != nullptr && cancelled_->load();
  }

  // Sent to the caller before the first response message (or with a unary
  // reply). Add them before the first Write().
  void AddInitialMetadata(std::string key, std::string value) {
    initial_metadata_.emplace_back(std::move(key), std::move(value));
  }
  // Sent to the caller with the call's status.
  void AddTrailingMetadata(std::string key, std::string value) {
    trailing_metadata_.emplace_back(std::move(key), std::move(value));
  }

  // Compresses the response messages with `compression` (the server's
  // default, DYN_COMPRESSION, otherwise), if the caller accepts it (else
  // they go uncompressed). Takes effect from the next response: a stream's
  // compression is fixed by its first Write(), after which only
  // WriteOptions::no_compression changes it, message by message.
  void set_compression(Compression compression) { compression_ = compression; }
  std::optional<Compression> compression() const { return compression_; }

 private:
  friend struct internal::ContextAccess;

  std::string method_;
  Metadata metadata_;
  std::optional<Clock::time_point> deadline_;
  std::string peer_;
  Metadata initial_metadata_;
  Metadata trailing_metadata_;
  std::optional<Compression> compression_;
  // Set by the plane; shared with it, so it outlives either side.
  std::shared_ptr<std::atomic<bool>> cancelled_;
};

}  // namespace dynrpc

#endif  // DYNRPC_CONTEXT_H_
