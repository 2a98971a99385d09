// One connection to a NATS server through nats.c, shared by every client and
// server of the process that uses the same server and credentials, and kept
// for the life of the process.
//
// Connecting never blocks the caller: a thread of the connection's own runs
// nats.c's blocking connect and retries it until it succeeds (from then on
// nats.c reconnects by itself); callers ask how it stands (Established())
// and wait for it without blocking a thread.
//
// nats.c delivers messages and connection events on its own threads: this
// class copies each message into a bounded hand-off per subscription, drained
// on the subscriber's executor, so no runtime state is touched on a nats.c
// thread and a slow executor makes nats.c's own pending limits apply.
#ifndef DYNRPC_RUNTIME_SRC_NATS_NATS_CONNECTION_H_
#define DYNRPC_RUNTIME_SRC_NATS_NATS_CONNECTION_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/post.hpp"
#include "core/deadline.h"
#include "dynrpc/config.h"
#include "nats/envelope.h"

struct __natsConnection;
struct __natsOptions;
struct __natsSubscription;

namespace dynrpc::internal::nats {

// A message as received (a copy; nats.c's is freed at once): its headers
// from its envelope (envelope.h), `data` the payload after it.
struct NatsMessage {
  std::string subject;
  std::string reply;
  NatsHeaders headers;
  std::string data;
  // The server's "no responders" answer to a request nobody subscribes to.
  bool no_responders = false;

  // The header `key`'s value, or nullptr.
  const std::string* Header(std::string_view key) const;
};

class NatsSubscription;

class NatsConnection : public std::enable_shared_from_this<NatsConnection> {
 public:
  // The process's connection for `config` (server and credentials). Never
  // blocks: the first Get() for a config starts connecting on the
  // connection's own thread. INVALID_ARGUMENT when nats.c refuses the
  // options.
  static absl::StatusOr<std::shared_ptr<NatsConnection>> Get(
      const NatsConfig& config);
  ~NatsConnection();

  // How connecting stands, without blocking: OK once connected (for good:
  // later losses are nats.c's to repair, see connected()); while no attempt
  // has succeeded, the last one's error (UNAVAILABLE naming the URL and
  // NATS_SERVER; UNAUTHENTICATED naming the credentials' variables), the
  // attempts going on in the background; nullopt while the first attempt is
  // under way, and then `waiter`, when given, is signalled (from the
  // connecting thread) once it ends.
  std::optional<absl::Status> Established(
      const std::shared_ptr<Signal>& waiter = nullptr);
  // When callers stop waiting for the first attempt: DYN_NATS_CONNECT_TIMEOUT
  // after it began (nats.c's own attempt may take longer: several URLs, or a
  // server that accepts and never answers).
  Clock::time_point first_attempt_deadline() const {
    return first_attempt_deadline_;
  }
  // Blocks until connected, up to DYN_NATS_CONNECT_TIMEOUT from now (or
  // first_attempt_deadline(), if later); then OK, the latest attempt's error,
  // or NotYetConnectedError(). Only for Server::Start(), never on an
  // executor thread.
  absl::Status WaitEstablished();
  // UNAVAILABLE: no answer from the server within DYN_NATS_CONNECT_TIMEOUT.
  absl::Status NotYetConnectedError() const;
  // A round trip to the server (blocking, up to `timeout`): the
  // subscriptions made before are registered there once it returns OK. Not
  // on an executor thread.
  absl::Status Flush(std::chrono::milliseconds timeout);

  // Subscribes `subject` (in `queue` group, unless empty); `handler` runs
  // on `executor` for each message, until the subscription is destroyed.
  // Does not wait for the server (see Flush()): a message this connection
  // publishes afterwards is matched against it all the same. UNAVAILABLE
  // until Established() is OK.
  absl::StatusOr<std::unique_ptr<NatsSubscription>> Subscribe(
      const std::string& subject, const std::string& queue,
      boost::asio::any_io_executor executor,
      std::function<void(NatsMessage)> handler);

  // Publishes `headers` (in the message's envelope, envelope.h) and `data`;
  // RESOURCE_EXHAUSTED (naming both sizes and how to raise the limit) when
  // the message with its headers exceeds the server's max_payload;
  // UNAVAILABLE when disconnected. `what` ("request message", "response
  // message") words the size error.
  absl::Status Publish(const std::string& subject, const std::string& reply,
                       const NatsHeaders& headers, const std::string& data,
                       std::string_view what);

  // The server's max_payload (from its INFO), in bytes.
  int64_t max_payload() const;
  // The bytes `headers` take on the wire (they count toward max_payload).
  static std::size_t HeaderBytes(const NatsHeaders& headers) {
    return EnvelopeSize(headers);
  }
  bool connected() const;
  const std::string& url() const { return url_; }

  // `listener(connected)` runs on a nats.c thread when the connection is
  // lost (false) and when it is back (true); it must only post. Returns an
  // id for RemoveListener().
  int AddListener(std::function<void(bool connected)> listener);
  void RemoveListener(int id);
  // Runs `(owner->*on_lost)()` on `executor` each time the connection is
  // lost, while `owner` lives. The listener only posts, and never owns
  // `owner` on nats.c's thread, even briefly (its destructor takes the
  // listeners' lock to remove it). Returns an id for RemoveListener().
  template <typename T>
  int AddLostListener(std::weak_ptr<T> owner,
                      boost::asio::any_io_executor executor,
                      void (T::*on_lost)()) {
    return AddListener([owner = std::move(owner),
                        executor = std::move(executor),
                        on_lost](bool connected) {
      if (connected) return;
      boost::asio::post(executor, [owner, on_lost] {
        if (std::shared_ptr<T> self = owner.lock()) ((*self).*on_lost)();
      });
    });
  }

 private:
  friend class NatsSubscription;  // forgets its subject in listeners_

  // What nats.c's callbacks reach.
  struct Listeners {
    std::mutex mu;
    absl::flat_hash_map<int, std::function<void(bool)>> by_id;
    int next = 1;
    // The subject of each live subscription by nats.c handle, for the
    // slow-consumer report; erased before the handle is destroyed, so a
    // handle found here may be used under `mu`.
    absl::flat_hash_map<const __natsSubscription*, std::string> subjects;
    // Unsubscribed handles not yet known safe to free (no PONG came after
    // their Unsubscribe()): freed after the next flush that succeeds, or
    // once the connection is closed.
    std::vector<__natsSubscription*> unquiesced;
    void Notify(bool connected);
  };

  NatsConnection(std::string url, std::chrono::milliseconds connect_timeout);
  // The connecting thread: connects, retrying until it succeeds or the
  // connection is destroyed.
  void ConnectLoop();
  static void OnDisconnected(__natsConnection* nc, void* closure);
  static void OnReconnected(__natsConnection* nc, void* closure);
  static void OnAsyncError(__natsConnection* nc, __natsSubscription* sub,
                           int status, void* closure);

  const std::string url_;
  const std::chrono::milliseconds connect_timeout_;
  const Clock::time_point first_attempt_deadline_;
  // Set once, by the connecting thread, when connected.
  std::atomic<__natsConnection*> nc_{nullptr};
  std::shared_ptr<Listeners> listeners_;
  // Used by the connecting thread only (and freed once it has ended).
  __natsOptions* options_ = nullptr;
  std::thread connector_;

  std::mutex state_mu_;
  std::condition_variable state_cv_;  // outcome_ or stopping_ changed
  std::optional<absl::Status> outcome_;  // under state_mu_
  bool stopping_ = false;                // under state_mu_
  // Waiting for the first attempt (a waiter that gave up has expired).
  std::vector<std::weak_ptr<Signal>> waiters_;  // under state_mu_
  std::size_t prune_waiters_at_ = 64;            // under state_mu_
};

// Owns a nats.c subscription; unsubscribes when destroyed and waits until
// nats.c has made its last callback (none posts to the runtime afterwards,
// and what was handed off but not yet run is dropped; a drain already
// running may finish its message, so handlers hold their owner weakly).
class NatsSubscription {
 public:
  ~NatsSubscription();
  NatsSubscription(const NatsSubscription&) = delete;
  NatsSubscription& operator=(const NatsSubscription&) = delete;

  struct Sink;  // what nats.c's callbacks use (nats_connection.cc)

 private:
  friend class NatsConnection;
  NatsSubscription();
  __natsSubscription* sub_ = nullptr;
  __natsConnection* nc_ = nullptr;  // its connection (lives for the process)
  std::unique_ptr<Sink> sink_;
  std::shared_ptr<NatsConnection::Listeners> listeners_;
};

}  // namespace dynrpc::internal::nats

#endif  // DYNRPC_RUNTIME_SRC_NATS_NATS_CONNECTION_H_
