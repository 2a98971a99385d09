#include "nats/nats_connection.h"

#include <nats/nats.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/post.hpp"

namespace dynrpc::internal::nats {

namespace asio = boost::asio;

namespace {

// Reconnection: forever, quickly (a restarted server is back within a
// second or so). nats.c's PINGs find a dead server within about 4 s.
constexpr int64_t kReconnectWaitMs = 250;
constexpr int64_t kPingIntervalMs = 2000;
constexpr int kMaxPingsOut = 2;

std::string LastError(natsStatus s) {
  const char* text = nats_GetLastError(nullptr);
  return text != nullptr && *text != '\0' ? std::string(text)
                                          : std::string(natsStatus_GetText(s));
}

}  // namespace

// What a subscription's nats.c callback needs. Owned by the NatsSubscription,
// which waits, when destroyed, for nats.c's on-complete callback (after the
// last message callback): the executor must not outlive the runtime.
struct NatsSubscription::Sink {
  asio::any_io_executor executor;
  // Shared with each posted delivery: no copy of the function per message.
  std::shared_ptr<const std::function<void(NatsMessage)>> handler;
  std::mutex mu;
  std::condition_variable cv;
  bool complete = false;
};

namespace {

using Sink = NatsSubscription::Sink;

void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg,
               void* closure) {
  auto* sink = static_cast<Sink*>(closure);
  NatsMessage m;
  m.subject = natsMsg_GetSubject(msg);
  if (const char* reply = natsMsg_GetReply(msg)) m.reply = reply;
  m.data.assign(natsMsg_GetData(msg) ? natsMsg_GetData(msg) : "",
                natsMsg_GetDataLength(msg));
  m.no_responders = natsMsg_IsNoResponders(msg);
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK) {
    for (int i = 0; i < count; ++i) {
      const char* value = nullptr;
      if (natsMsgHeader_Get(msg, keys[i], &value) == NATS_OK) {
        m.headers.emplace_back(keys[i], value ? value : "");
      }
    }
    free(keys);
  }
  natsMsg_Destroy(msg);
  asio::post(sink->executor,
             [handler = sink->handler, m = std::move(m)]() mutable {
               (*handler)(std::move(m));
             });
}

void OnComplete(void* closure) {
  auto* sink = static_cast<Sink*>(closure);
  std::lock_guard lock(sink->mu);
  sink->complete = true;
  sink->cv.notify_all();
}

// Connections live for the process: tearing one down while another to the
// same server is set up raced inside nats.c (a new connection's socket
// failed with ENOTSOCK), and a process talks to few NATS servers.
struct Registry {
  std::mutex mu;
  absl::flat_hash_map<std::string, std::shared_ptr<NatsConnection>> by_key;
};

Registry& GetRegistry() {
  static auto* registry = new Registry;
  return *registry;
}

}  // namespace

const std::string* NatsMessage::Header(std::string_view key) const {
  for (const auto& [k, v] : headers) {
    if (k == key) return &v;
  }
  return nullptr;
}

NatsConnection::NatsConnection(std::string url)
    : url_(std::move(url)), listeners_(std::make_shared<Listeners>()) {}

NatsConnection::~NatsConnection() {
  {
    std::lock_guard lock(listeners_->mu);
    listeners_->by_id.clear();
  }
  if (nc_ != nullptr) {
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
}

absl::StatusOr<std::shared_ptr<NatsConnection>> NatsConnection::Get(
    const NatsConfig& config) {
  std::string key = absl::StrCat(config.server, "\n", config.user, "\n",
                                 config.password, "\n", config.token, "\n",
                                 config.credentials_file);
  Registry& registry = GetRegistry();
  std::lock_guard lock(registry.mu);
  if (auto it = registry.by_key.find(key); it != registry.by_key.end()) {
    return it->second;
  }

  std::shared_ptr<NatsConnection> connection(
      new NatsConnection(config.server));
  natsOptions* options = nullptr;
  natsStatus s = natsOptions_Create(&options);
  std::vector<std::string> urls = absl::StrSplit(config.server, ',');
  std::vector<const char*> url_ptrs;
  for (const std::string& u : urls) url_ptrs.push_back(u.c_str());
  if (s == NATS_OK) {
    s = natsOptions_SetServers(options, url_ptrs.data(),
                               static_cast<int>(url_ptrs.size()));
  }
  if (s == NATS_OK && !config.user.empty()) {
    s = natsOptions_SetUserInfo(options, config.user.c_str(),
                                config.password.c_str());
  }
  if (s == NATS_OK && !config.token.empty()) {
    s = natsOptions_SetToken(options, config.token.c_str());
  }
  if (s == NATS_OK && !config.credentials_file.empty()) {
    s = natsOptions_SetUserCredentialsFromFiles(
        options, config.credentials_file.c_str(), nullptr);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetTimeout(options, config.connect_timeout.count());
  }
  // Each publish goes out at once (no batching delay): calls are latency
  // bound.
  if (s == NATS_OK) s = natsOptions_SetSendAsap(options, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(options, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(options, kReconnectWaitMs);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(options, kPingIntervalMs);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(options, kMaxPingsOut);
  if (s == NATS_OK) {
    s = natsOptions_SetDisconnectedCB(options, &OnDisconnected,
                                      connection->listeners_.get());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectedCB(options, &OnReconnected,
                                     connection->listeners_.get());
  }
  if (s != NATS_OK) {
    natsOptions_Destroy(options);
    return absl::InvalidArgumentError(
        absl::StrCat("NATS options for ", config.server, ": ", LastError(s)));
  }
  s = natsConnection_Connect(&connection->nc_, options);
  natsOptions_Destroy(options);
  if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the NATS server at ", config.server,
        " refused the credentials (NATS_AUTH_USERNAME/NATS_AUTH_PASSWORD, "
        "NATS_AUTH_TOKEN or NATS_AUTH_CREDENTIALS_FILE): ",
        LastError(s)));
  }
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat(
        "cannot connect to the NATS server at ", config.server,
        " (NATS_SERVER): ", LastError(s)));
  }
  registry.by_key[key] = connection;
  return connection;
}

absl::StatusOr<std::unique_ptr<NatsSubscription>> NatsConnection::Subscribe(
    const std::string& subject, const std::string& queue,
    asio::any_io_executor executor, std::function<void(NatsMessage)> handler) {
  std::unique_ptr<NatsSubscription> sub(new NatsSubscription);
  sub->sink_ = std::make_unique<Sink>();
  Sink* sink = sub->sink_.get();
  sink->executor = std::move(executor);
  sink->handler = std::make_shared<const std::function<void(NatsMessage)>>(
      std::move(handler));
  natsStatus s =
      queue.empty()
          ? natsConnection_Subscribe(&sub->sub_, nc_, subject.c_str(),
                                     &OnMessage, sink)
          : natsConnection_QueueSubscribe(&sub->sub_, nc_, subject.c_str(),
                                          queue.c_str(), &OnMessage, sink);
  if (s != NATS_OK) {
    sub->sub_ = nullptr;
    return absl::UnavailableError(absl::StrCat(
        "cannot subscribe to ", subject, " on ", url_, ": ", LastError(s)));
  }
  natsSubscription_SetOnCompleteCB(sub->sub_, &OnComplete, sink);
  // Credits keep each call's messages bounded; these limits only guard
  // against a misbehaving peer (nats.c drops beyond them: slow consumer).
  natsSubscription_SetPendingLimits(sub->sub_, 1 << 20, 1 << 30);
  // The subscription is registered with the server before any call can
  // be made to it.
  natsConnection_Flush(nc_);
  return sub;
}

NatsSubscription::NatsSubscription() = default;

NatsSubscription::~NatsSubscription() {
  if (sub_ == nullptr) return;
  natsSubscription_Unsubscribe(sub_);
  // nats.c's last callback for it may still be running on its thread; it
  // uses the sink, and posts to the runtime: wait for it (bounded, should
  // nats.c never call back; then the sink is leaked rather than freed under
  // it).
  std::unique_lock lock(sink_->mu);
  bool complete = sink_->cv.wait_for(lock, std::chrono::seconds(10),
                                     [&] { return sink_->complete; });
  lock.unlock();
  natsSubscription_Destroy(sub_);
  if (!complete) (void)sink_.release();
}

std::size_t NatsConnection::HeaderBytes(const NatsHeaders& headers) {
  if (headers.empty()) return 0;
  std::size_t n = 12;  // "NATS/1.0\r\n" and the final "\r\n"
  for (const auto& [k, v] : headers) n += k.size() + v.size() + 4;
  return n;
}

absl::Status NatsConnection::Publish(const std::string& subject,
                                     const std::string& reply,
                                     const NatsHeaders& headers,
                                     const std::string& data,
                                     std::string_view what) {
  int64_t limit = max_payload();
  std::size_t size = data.size() + HeaderBytes(headers);
  if (limit > 0 && size > static_cast<std::size_t>(limit)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        std::string(what), " of ", data.size(), " bytes (", size,
        " with its headers) exceeds the NATS server's max_payload of ", limit,
        " bytes at ", url_,
        "; raise max_payload in nats-server's configuration (NATS allows "
        "up to 64 MB; the guide advises at most 16 MB) or use the tcp "
        "request plane"));
  }
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(),
                                reply.empty() ? nullptr : reply.c_str(),
                                data.data(), static_cast<int>(data.size()));
  for (const auto& [k, v] : headers) {
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, k.c_str(), v.c_str());
  }
  if (s == NATS_OK) {
    if (!connected()) {
      natsMsg_Destroy(msg);
      return absl::UnavailableError(
          absl::StrCat("not connected to the NATS server at ", url_,
                       " (reconnecting)"));
    }
    s = natsConnection_PublishMsg(nc_, msg);
  }
  natsMsg_Destroy(msg);
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat(
        "cannot publish to ", subject, " on ", url_, ": ", LastError(s)));
  }
  return absl::OkStatus();
}

int64_t NatsConnection::max_payload() const {
  return natsConnection_GetMaxPayload(nc_);
}

bool NatsConnection::connected() const {
  return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
}

int NatsConnection::AddListener(std::function<void(bool)> listener) {
  std::lock_guard lock(listeners_->mu);
  int id = listeners_->next++;
  listeners_->by_id[id] = std::move(listener);
  return id;
}

void NatsConnection::RemoveListener(int id) {
  std::lock_guard lock(listeners_->mu);
  listeners_->by_id.erase(id);
}

void NatsConnection::Listeners::Notify(bool connected) {
  std::lock_guard lock(mu);
  for (auto& [id, listener] : by_id) listener(connected);
}

void NatsConnection::OnDisconnected(natsConnection*, void* closure) {
  static_cast<Listeners*>(closure)->Notify(false);
}

void NatsConnection::OnReconnected(natsConnection*, void* closure) {
  static_cast<Listeners*>(closure)->Notify(true);
}

}  // namespace dynrpc::internal::nats
