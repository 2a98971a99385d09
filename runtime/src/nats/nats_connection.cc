#include "nats/nats_connection.h"

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/post.hpp"
#include "core/log.h"
#include "core/metrics.h"
#include "dynrpc/message_buffers.h"

namespace dynrpc::internal::nats {

namespace asio = boost::asio;

namespace {

// Reconnection: forever, quickly (a restarted server is back within a
// second or so). nats.c's PINGs find a dead server within about 4 s.
constexpr int64_t kReconnectWaitMs = 250;
constexpr int64_t kPingIntervalMs = 2000;
constexpr int kMaxPingsOut = 2;
// Between attempts to connect the first time (the connecting thread's
// retries, before nats.c's reconnection takes over): an unreachable server
// as often as nats.c retries a lost one; refused credentials less often
// (they change by hand).
constexpr std::chrono::milliseconds kConnectRetry{kReconnectWaitMs};
constexpr std::chrono::milliseconds kAuthRetry{2000};

// Deliveries. nats.c queues a subscription's messages until its delivery
// thread hands them to OnMessage(); past these limits it drops them and
// reports a slow consumer (OnAsyncError). Bytes: at least 64 MiB (nats.c's
// default) and four of the server's largest messages.
constexpr int kPendingMessages = 65536;
constexpr int64_t kMinPendingBytes = int64_t{64} << 20;
// Between OnMessage() and the executor: this many messages (bytes; a larger
// message alone) wait in a subscription's hand-off, drained by one posted
// task at a time, kDrainBatch messages per turn. When it is full nats.c's
// delivery thread waits, so the backlog stays in nats.c, under its limits.
constexpr std::size_t kHandoffMessages = 256;
constexpr std::size_t kHandoffBytes = std::size_t{16} << 20;
constexpr int kDrainBatch = 64;

std::string LastError(natsStatus s) {
  const char* text = nats_GetLastError(nullptr);
  return text != nullptr && *text != '\0' ? std::string(text)
                                          : std::string(natsStatus_GetText(s));
}

}  // namespace

// A subscription's messages between nats.c's delivery thread and the
// subscriber's executor (see kHandoffMessages). Shared by the Sink and the
// posted drain, which may run after the subscription is gone.
struct SubscriptionHandoff {
  asio::any_io_executor executor;
  std::function<void(NatsMessage)> handler;
  std::mutex mu;
  std::condition_variable space;  // a message left `queue`, or `closed`
  std::deque<NatsMessage> queue;  // under mu
  std::size_t bytes = 0;          // under mu
  bool draining = false;          // a Drain() is posted or running (under mu)
  bool closed = false;            // the subscription is going (under mu)
};

// What a subscription's nats.c callback needs. Owned by the NatsSubscription,
// which waits, when destroyed, for nats.c's on-complete callback (after the
// last message callback).
struct NatsSubscription::Sink {
  std::shared_ptr<SubscriptionHandoff> handoff;
  std::mutex mu;
  std::condition_variable cv;
  bool complete = false;
};

namespace {

using Sink = NatsSubscription::Sink;

// What a message takes in a hand-off.
std::size_t Footprint(const NatsMessage& m) {
  return m.data.size() + NatsConnection::HeaderBytes(m.headers);
}

// Runs on the subscriber's executor (a strand): hands queued messages to the
// handler, kDrainBatch at a time, then posts itself again while any are left.
void Drain(const std::shared_ptr<SubscriptionHandoff>& handoff) {
  for (int i = 0; i < kDrainBatch; ++i) {
    NatsMessage m;
    {
      std::lock_guard lock(handoff->mu);
      if (handoff->closed) {
        handoff->queue.clear();
        handoff->bytes = 0;
      }
      if (handoff->queue.empty()) {
        handoff->draining = false;
        return;
      }
      m = std::move(handoff->queue.front());
      handoff->queue.pop_front();
      handoff->bytes -= Footprint(m);
    }
    handoff->space.notify_all();
    handoff->handler(std::move(m));
  }
  asio::post(handoff->executor, [handoff] { Drain(handoff); });
}

void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg,
               void* closure) {
  std::shared_ptr<SubscriptionHandoff> handoff =
      static_cast<Sink*>(closure)->handoff;
  NatsMessage m;
  m.subject = natsMsg_GetSubject(msg);
  if (const char* reply = natsMsg_GetReply(msg)) m.reply = reply;
  // (Has NATS headers and no data: not a dynrpc message, so no envelope.)
  m.no_responders = natsMsg_IsNoResponders(msg);
  const std::string_view data(
      natsMsg_GetData(msg),
      static_cast<std::size_t>(std::max(natsMsg_GetDataLength(msg), 0)));
  // Without a well-formed envelope the message has no headers, and its
  // receiver refuses it (a call open without a method, say).
  const std::size_t payload = ReadEnvelope(data, m.headers).value_or(0);
  // Into warm memory when it is large (a recycled buffer: no page faults).
  m.data = TakeMessageBuffer(data.size() - payload);
  m.data.append(data.substr(payload));
  natsMsg_Destroy(msg);
  const std::size_t size = Footprint(m);
  bool post = false;
  {
    // Full: this nats.c thread waits (the backlog then builds in nats.c,
    // up to the pending limits). A message larger than the hand-off goes
    // alone.
    std::unique_lock lock(handoff->mu);
    handoff->space.wait(lock, [&] {
      return handoff->closed || handoff->queue.empty() ||
             (handoff->queue.size() < kHandoffMessages &&
              handoff->bytes + size <= kHandoffBytes);
    });
    if (handoff->closed) return;
    handoff->queue.push_back(std::move(m));
    handoff->bytes += size;
    post = !std::exchange(handoff->draining, true);
  }
  if (post) asio::post(handoff->executor, [handoff] { Drain(handoff); });
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

NatsConnection::NatsConnection(std::string url,
                               std::chrono::milliseconds connect_timeout)
    : url_(std::move(url)),
      connect_timeout_(connect_timeout),
      first_attempt_deadline_(Clock::now() + connect_timeout),
      listeners_(std::make_shared<Listeners>()) {}

NatsConnection::~NatsConnection() {
  {
    std::lock_guard lock(state_mu_);
    stopping_ = true;
  }
  state_cv_.notify_all();
  // An attempt under way ends within its timeout.
  if (connector_.joinable()) connector_.join();
  {
    std::lock_guard lock(listeners_->mu);
    listeners_->by_id.clear();
  }
  if (natsConnection* nc = nc_.load()) {
    natsConnection_Close(nc);  // joins nats.c's reader: handles are quiet
    std::lock_guard lock(listeners_->mu);
    for (natsSubscription* s : listeners_->unquiesced) {
      natsSubscription_Destroy(s);
    }
    listeners_->unquiesced.clear();
    natsConnection_Destroy(nc);
  }
  if (options_ != nullptr) natsOptions_Destroy(options_);
}

absl::StatusOr<std::shared_ptr<NatsConnection>> NatsConnection::Get(
    const NatsConfig& config) {
  std::string key =
      absl::StrCat(config.server, "\n", config.user, "\n", config.password,
                   "\n", config.token, "\n", config.credentials_file);
  Registry& registry = GetRegistry();
  std::lock_guard lock(registry.mu);
  if (auto it = registry.by_key.find(key); it != registry.by_key.end()) {
    return it->second;
  }

  std::shared_ptr<NatsConnection> connection(
      new NatsConnection(config.server, config.connect_timeout));
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
  // Publishes write on the caller's (a runtime) thread: a NATS server that
  // stops reading must not block it for ever. Past the deadline the write
  // fails, the publish with it, and nats.c treats the connection as lost.
  if (s == NATS_OK) {
    s = natsOptions_SetWriteDeadline(options, config.connect_timeout.count());
  }
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(options, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(options, kReconnectWaitMs);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(options, kPingIntervalMs);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(options, kMaxPingsOut);
  // A delivery thread per subscription (whatever
  // NATS_DEFAULT_TO_LIB_MSG_DELIVERY says): one waiting for room in its
  // hand-off holds back no other subscription.
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(options, false);
  if (s == NATS_OK) {
    s = natsOptions_SetDisconnectedCB(options, &OnDisconnected,
                                      connection->listeners_.get());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectedCB(options, &OnReconnected,
                                     connection->listeners_.get());
  }
  if (s == NATS_OK) {
    // natsStatus is an unnamed enum the header cannot declare: a trampoline.
    s = natsOptions_SetErrorHandler(
        options,
        [](natsConnection* nc, natsSubscription* sub, natsStatus err,
           void* closure) {
          OnAsyncError(nc, sub, static_cast<int>(err), closure);
        },
        connection->listeners_.get());
  }
  if (s != NATS_OK) {
    natsOptions_Destroy(options);
    return absl::InvalidArgumentError(
        absl::StrCat("NATS options for ", config.server, ": ", LastError(s)));
  }
  connection->options_ = options;  // the destructor frees it
  try {
    NatsConnection* raw = connection.get();  // joined by the destructor
    connection->connector_ = std::thread([raw] { raw->ConnectLoop(); });
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start a thread to connect to the NATS server at ",
                     config.server, ": ", e.what()));
  }
  registry.by_key[key] = connection;
  return connection;
}

void NatsConnection::ConnectLoop() {
  for (;;) {
    natsConnection* nc = nullptr;
    // Blocks up to connect_timeout per server URL.
    natsStatus s = natsConnection_Connect(&nc, options_);
    absl::Status outcome = absl::OkStatus();
    std::chrono::milliseconds retry = kConnectRetry;
    if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED) {
      outcome = absl::UnauthenticatedError(absl::StrCat(
          "the NATS server at ", url_,
          " refused the credentials (NATS_AUTH_USERNAME/NATS_AUTH_PASSWORD, "
          "NATS_AUTH_TOKEN or NATS_AUTH_CREDENTIALS_FILE): ",
          LastError(s)));
      retry = kAuthRetry;
    } else if (s != NATS_OK) {
      outcome = absl::UnavailableError(absl::StrCat(
          "cannot connect to the NATS server at ", url_,
          " (NATS_SERVER): ", LastError(s), "; retrying in the background"));
    }
    std::vector<std::weak_ptr<Signal>> waiters;
    bool stop = false;
    {
      std::lock_guard lock(state_mu_);
      if (s == NATS_OK) {
        nc_.store(nc, std::memory_order_release);
        Metrics::Global().nats_connected().fetch_add(1,
                                                     std::memory_order_relaxed);
      }
      outcome_ = outcome;
      waiters.swap(waiters_);
      stop = stopping_;
    }
    state_cv_.notify_all();
    for (const std::weak_ptr<Signal>& w : waiters) {
      if (std::shared_ptr<Signal> signal = w.lock()) {
        signal->try_send(boost::system::error_code{});
      }
    }
    if (s == NATS_OK || stop) return;  // nats.c reconnects from now on
    std::unique_lock lock(state_mu_);
    if (state_cv_.wait_for(lock, retry, [this] { return stopping_; })) return;
  }
}

std::optional<absl::Status> NatsConnection::Established(
    const std::shared_ptr<Signal>& waiter) {
  std::lock_guard lock(state_mu_);
  if (!outcome_ && waiter != nullptr) {
    if (waiters_.size() >= prune_waiters_at_) {
      // Drop those who gave up; amortized over the additions.
      std::erase_if(waiters_,
                    [](const std::weak_ptr<Signal>& w) { return w.expired(); });
      prune_waiters_at_ = std::max<std::size_t>(64, 2 * waiters_.size());
    }
    waiters_.push_back(waiter);
  }
  return outcome_;
}

absl::Status NatsConnection::WaitEstablished() {
  // Up to DYN_NATS_CONNECT_TIMEOUT from now, or from the first attempt if
  // that is later: the background retries may connect meanwhile (a NATS
  // server that has just come back).
  Clock::time_point until =
      std::max(first_attempt_deadline_, Clock::now() + connect_timeout_);
  std::unique_lock lock(state_mu_);
  state_cv_.wait_until(lock, until, [this] {
    return nc_.load(std::memory_order_acquire) != nullptr || stopping_;
  });
  if (nc_.load(std::memory_order_acquire) != nullptr) return absl::OkStatus();
  if (outcome_) return *outcome_;
  return NotYetConnectedError();
}

absl::Status NatsConnection::NotYetConnectedError() const {
  return absl::UnavailableError(absl::StrCat(
      "no connection to the NATS server at ", url_,
      " (NATS_SERVER) within DYN_NATS_CONNECT_TIMEOUT=",
      connect_timeout_.count(), " ms; still trying in the background"));
}

absl::Status NatsConnection::Flush(std::chrono::milliseconds timeout) {
  natsConnection* nc = nc_.load(std::memory_order_acquire);
  if (nc == nullptr) return NotYetConnectedError();
  natsStatus s = natsConnection_FlushTimeout(nc, timeout.count());
  if (s != NATS_OK) {
    return absl::UnavailableError(
        absl::StrCat("no answer from the NATS server at ", url_,
                     " (NATS_SERVER): ", LastError(s)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<NatsSubscription>> NatsConnection::Subscribe(
    const std::string& subject, const std::string& queue,
    asio::any_io_executor executor, std::function<void(NatsMessage)> handler) {
  natsConnection* nc = nc_.load(std::memory_order_acquire);
  if (nc == nullptr) return NotYetConnectedError();
  std::unique_ptr<NatsSubscription> sub(new NatsSubscription);
  sub->sink_ = std::make_unique<Sink>();
  Sink* sink = sub->sink_.get();
  sink->handoff = std::make_shared<SubscriptionHandoff>();
  sink->handoff->executor = std::move(executor);
  sink->handoff->handler = std::move(handler);
  natsStatus s =
      queue.empty()
          ? natsConnection_Subscribe(&sub->sub_, nc, subject.c_str(),
                                     &OnMessage, sink)
          : natsConnection_QueueSubscribe(&sub->sub_, nc, subject.c_str(),
                                          queue.c_str(), &OnMessage, sink);
  if (s != NATS_OK) {
    sub->sub_ = nullptr;
    return absl::UnavailableError(absl::StrCat(
        "cannot subscribe to ", subject, " on ", url_, ": ", LastError(s)));
  }
  natsSubscription_SetOnCompleteCB(sub->sub_, &OnComplete, sink);
  // Credits keep each stream's messages bounded, but not opens, ends and
  // cancels: past these limits nats.c drops (a slow consumer, reported by
  // OnAsyncError; a stream that lost a message ends with DATA_LOSS).
  const int64_t pending_bytes = std::clamp<int64_t>(
      4 * max_payload(), kMinPendingBytes, int64_t{INT_MAX});
  natsSubscription_SetPendingLimits(sub->sub_, kPendingMessages,
                                    static_cast<int>(pending_bytes));
  sub->listeners_ = listeners_;
  sub->nc_ = nc;
  {
    std::lock_guard lock(listeners_->mu);
    listeners_->subjects[sub->sub_] = subject;
  }
  return sub;
}

NatsSubscription::NatsSubscription() = default;

NatsSubscription::~NatsSubscription() {
  if (sub_ == nullptr) return;
  {
    // A nats.c thread waiting for room in the hand-off returns (dropping
    // its message), and nothing handed off runs any more.
    std::lock_guard lock(sink_->handoff->mu);
    sink_->handoff->closed = true;
  }
  sink_->handoff->space.notify_all();
  {
    std::lock_guard lock(listeners_->mu);
    listeners_->subjects.erase(sub_);
  }
  natsSubscription_Unsubscribe(sub_);
  // nats.c 3.4's reader thread finds a message's subscription under its
  // table lock, lets go of the lock, and only then locks the subscription,
  // holding no reference (nats.c issue 637, fixed in 3.6.1; Debian 12 has
  // 3.4.1): freeing the subscription meanwhile crashes that thread. The
  // PONG of a PING sent now is read after any message the reader was
  // handling when Unsubscribe() took the subscription out of the table, for
  // this handle and for those unsubscribed before it.
  std::vector<__natsSubscription*> freeable = {sub_};
  {
    std::lock_guard lock(listeners_->mu);
    freeable.insert(freeable.end(), listeners_->unquiesced.begin(),
                    listeners_->unquiesced.end());
    listeners_->unquiesced.clear();
  }
  const bool quiesced =
      nc_ != nullptr && natsConnection_FlushTimeout(nc_, 5000) == NATS_OK;
  // nats.c's last callback for it may still be running on its thread; it
  // uses the sink, and posts to the runtime: wait for it (bounded, should
  // nats.c never call back; then the sink is leaked rather than freed under
  // it).
  std::unique_lock lock(sink_->mu);
  bool complete = sink_->cv.wait_for(lock, std::chrono::seconds(10),
                                     [&] { return sink_->complete; });
  lock.unlock();
  if (quiesced) {
    for (__natsSubscription* s : freeable) natsSubscription_Destroy(s);
  } else {
    // Not known to be quiet (no PONG: disconnected or slow): kept for a
    // later flush, or the connection's close, to free.
    std::lock_guard guard(listeners_->mu);
    listeners_->unquiesced.insert(listeners_->unquiesced.end(),
                                  freeable.begin(), freeable.end());
  }
  if (!complete) (void)sink_.release();
}

absl::Status NatsConnection::Publish(const std::string& subject,
                                     const std::string& reply,
                                     const NatsHeaders& headers,
                                     const std::string& data,
                                     std::string_view what) {
  natsConnection* nc = nc_.load(std::memory_order_acquire);
  if (nc == nullptr) return NotYetConnectedError();
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
  if (!connected()) {
    return absl::UnavailableError(
        absl::StrCat("not connected to the NATS server at ", url_,
                     " (NATS_SERVER; reconnecting)"));
  }
  // The envelope and the payload in one buffer (a recycled one when large):
  // nats.c publishes from one. The copy is the one natsMsg_Create made.
  std::string message = TakeMessageBuffer(size);
  AppendEnvelope(headers, message);
  message.append(data);
  natsStatus s =
      reply.empty()
          ? natsConnection_Publish(nc, subject.c_str(), message.data(),
                                   static_cast<int>(message.size()))
          : natsConnection_PublishRequest(nc, subject.c_str(), reply.c_str(),
                                          message.data(),
                                          static_cast<int>(message.size()));
  RecycleMessageBuffer(std::move(message));
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat(
        "cannot publish to ", subject, " on ", url_, ": ", LastError(s)));
  }
  return absl::OkStatus();
}

int64_t NatsConnection::max_payload() const {
  return natsConnection_GetMaxPayload(nc_.load(std::memory_order_acquire));
}

bool NatsConnection::connected() const {
  natsConnection* nc = nc_.load(std::memory_order_acquire);
  return nc != nullptr &&
         natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED;
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
  Metrics::Global().nats_connected().fetch_sub(1, std::memory_order_relaxed);
  static_cast<Listeners*>(closure)->Notify(false);
}

void NatsConnection::OnReconnected(natsConnection*, void* closure) {
  Metrics::Global().nats_connected().fetch_add(1, std::memory_order_relaxed);
  Metrics::Global().nats_reconnects().fetch_add(1, std::memory_order_relaxed);
  static_cast<Listeners*>(closure)->Notify(true);
}

void NatsConnection::OnAsyncError(natsConnection*, natsSubscription* sub,
                                  int status, void* closure) {
  auto* listeners = static_cast<Listeners*>(closure);
  if (status != NATS_SLOW_CONSUMER || sub == nullptr) {
    DYNRPC_LOG(kWarn, "dynrpc::nats",
               natsStatus_GetText(static_cast<natsStatus>(status)));
    return;
  }
  // nats.c reports once per episode (until the subscription keeps up).
  std::string subject = "a subscription already closed";
  int64_t dropped = 0;
  {
    std::lock_guard lock(listeners->mu);
    if (auto it = listeners->subjects.find(sub);
        it != listeners->subjects.end()) {
      subject = it->second;
      natsSubscription_GetDropped(sub, &dropped);
    }
  }
  DYNRPC_LOG(kWarn, "dynrpc::nats", "slow consumer on ", subject,
             ": the runtime fell behind and nats.c dropped messages past the "
             "subscription's pending limits (",
             dropped, " so far)");
}

}  // namespace dynrpc::internal::nats
