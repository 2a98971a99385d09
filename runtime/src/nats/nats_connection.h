// One connection to a NATS server through nats.c, shared by every client and
// server of the process that uses the same server and credentials, and kept
// for the life of the process.
//
// nats.c delivers messages and connection events on its own threads: this
// class copies each message and posts it to the subscriber's executor, so no
// runtime state is touched on a nats.c thread.
#ifndef DYNRPC_RUNTIME_SRC_NATS_NATS_CONNECTION_H_
#define DYNRPC_RUNTIME_SRC_NATS_NATS_CONNECTION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "dynrpc/config.h"

struct __natsConnection;
struct __natsSubscription;

namespace dynrpc::internal::nats {

using NatsHeaders = std::vector<std::pair<std::string, std::string>>;

// A message as received (a copy; nats.c's is freed at once).
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
  // The process's connection for `config` (server and credentials),
  // connecting (blocking, up to config.connect_timeout) if there is none.
  // UNAVAILABLE naming the URL when the server cannot be reached;
  // UNAUTHENTICATED when it refuses the credentials.
  static absl::StatusOr<std::shared_ptr<NatsConnection>> Get(
      const NatsConfig& config);
  ~NatsConnection();

  // Subscribes `subject` (in `queue` group, unless empty); `handler` runs
  // on `executor` for each message, until the subscription is destroyed.
  absl::StatusOr<std::unique_ptr<NatsSubscription>> Subscribe(
      const std::string& subject, const std::string& queue,
      boost::asio::any_io_executor executor,
      std::function<void(NatsMessage)> handler);

  // Publishes; RESOURCE_EXHAUSTED (naming both sizes and how to raise the
  // limit) when the message with its headers exceeds the server's
  // max_payload; UNAVAILABLE when disconnected. `what` ("request message",
  // "response message") words the size error.
  absl::Status Publish(const std::string& subject, const std::string& reply,
                       const NatsHeaders& headers, const std::string& data,
                       std::string_view what);

  // The server's max_payload (from its INFO), in bytes.
  int64_t max_payload() const;
  // The bytes `headers` take on the wire (they count toward max_payload).
  static std::size_t HeaderBytes(const NatsHeaders& headers);
  bool connected() const;
  const std::string& url() const { return url_; }

  // `listener(connected)` runs on a nats.c thread when the connection is
  // lost (false) and when it is back (true); it must only post. Returns an
  // id for RemoveListener().
  int AddListener(std::function<void(bool connected)> listener);
  void RemoveListener(int id);

 private:
  // The listeners nats.c's callbacks reach.
  struct Listeners {
    std::mutex mu;
    absl::flat_hash_map<int, std::function<void(bool)>> by_id;
    int next = 1;
    void Notify(bool connected);
  };

  explicit NatsConnection(std::string url);
  static void OnDisconnected(__natsConnection* nc, void* closure);
  static void OnReconnected(__natsConnection* nc, void* closure);

  const std::string url_;
  __natsConnection* nc_ = nullptr;
  std::shared_ptr<Listeners> listeners_;
};

// Owns a nats.c subscription; unsubscribes when destroyed and waits until
// nats.c has made its last callback (none posts to the runtime afterwards;
// one already posted may still run, so handlers hold their owner weakly).
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
  std::unique_ptr<Sink> sink_;
};

}  // namespace dynrpc::internal::nats

#endif  // DYNRPC_RUNTIME_SRC_NATS_NATS_CONNECTION_H_
