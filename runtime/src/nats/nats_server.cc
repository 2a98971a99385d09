// The NATS plane's server side (see protocol.h).
#include <atomic>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/cancellation_signal.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/server_call.h"
#include "core/stream_state.h"
#include "core/task_group.h"
#include "nats/nats_connection.h"
#include "nats/nats_plane.h"

#include <condition_variable>
#include "dynrpc/status_macros.h"
#include "nats/protocol.h"

namespace dynrpc::internal::nats {

namespace asio = boost::asio;

absl::Status CheckConfig(const NatsConfig& config) {
  if (config.server.empty() || config.name_space.empty()) {
    return absl::InvalidArgumentError(
        "NatsConfig: server and name_space must be set (NATS_SERVER, "
        "DYN_NAMESPACE)");
  }
  if (config.request_timeout.count() <= 0 ||
      config.connect_timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        "NatsConfig: request_timeout and connect_timeout must be positive "
        "(DYN_NATS_REQUEST_TIMEOUT, DYN_NATS_CONNECT_TIMEOUT)");
  }
  return absl::OkStatus();
}

class ServerState;

namespace {

// One call being served, and the frames it sends: messages numbered in
// order, to the caller's inbox.
struct ServedCall final : FramedServerCall {
  // `server` outlives its calls' coroutines (Shutdown() waits for them).
  ServedCall(asio::any_io_executor strand, ServerState& server)
      : FramedServerCall(std::move(strand)), server_(server) {}

  absl::Status CheckMessage(std::size_t bytes) const override;
  std::size_t max_message_size() const override;
  absl::Status SendMessage(std::string message,
                           const Metadata* initial_metadata,
                           Compression encoding, bool compressed) override;
  void SendWindow(uint32_t bytes) override;
  void SendEnd(CallResult result, bool initial_sent) override;

  uint64_t n = 0;
  std::string reply;    // the caller's inbox for this call
  std::string subject;  // <ns>.call.<instance>.<n>: the caller sends here
  CallLiveness liveness{HeartbeatPolicy()};
  int64_t next_seq = 0;  // of the caller's messages (the call subject's strand)

 private:
  ServerState& server_;
  int64_t seq_ = 0;  // of our messages (the call's coroutine)
};

}  // namespace

// Everything the server's subscriptions and tasks share; they hold it
// weakly, so a message that arrives after Shutdown() finds nothing.
class ServerState : public std::enable_shared_from_this<ServerState> {
 public:
  ServerState(NatsConfig config, asio::any_io_executor executor)
      : config_(std::move(config)),
        executor_(std::move(executor)),
        tasks_(executor_) {}

  absl::StatusOr<std::string> Start(CallHandler& handler) {
    handler_ = &handler;
    absl::StatusOr<std::shared_ptr<NatsConnection>> connection =
        NatsConnection::Get(config_);
    if (!connection.ok()) return connection.status();
    // Start() runs on the caller's thread, never an executor's: it may wait
    // for the first attempt to connect (up to DYN_NATS_CONNECT_TIMEOUT).
    DYNRPC_RETURN_IF_ERROR((*connection)->WaitEstablished());
    connection_ = *std::move(connection);
    instance_ = NewId();
    const std::string& ns = config_.name_space;
    std::weak_ptr<ServerState> weak = shared_from_this();
    auto open = [weak](NatsMessage m) {
      if (auto self = weak.lock()) self->OnOpen(std::move(m));
    };
    // The call and cancel subjects first: once a method subject is live,
    // a caller may send to them.
    DYNRPC_RETURN_IF_ERROR(Subscribe(
        absl::StrCat(ns, ".call.", instance_, ".*"), "",
        [weak](NatsMessage m) {
          if (auto self = weak.lock()) self->OnCallMessage(std::move(m));
        }));
    DYNRPC_RETURN_IF_ERROR(Subscribe(
        absl::StrCat(ns, ".cancel"), "", [weak](NatsMessage m) {
          if (auto self = weak.lock()) self->OnBroadcastCancel(std::move(m));
        }));
    DYNRPC_RETURN_IF_ERROR(
        Subscribe(absl::StrCat(ns, ".inst.", instance_, ".>"), "", open));
    for (const std::string& path : handler.MethodPaths()) {
      std::optional<std::string> suffix = MethodSubjectSuffix(path);
      if (!suffix) continue;
      DYNRPC_RETURN_IF_ERROR(Subscribe(absl::StrCat(ns, ".rpc.", *suffix),
                                       absl::StrCat(ns, ".rpc.", ServiceOf(path)),
                                       open));
    }
    // One round trip for them all: a call made once Start() has returned
    // finds every subscription registered (a failure here is repaired by
    // nats.c's reconnection, which subscribes them again).
    (void)connection_->Flush(config_.connect_timeout);
    listener_ = connection_->AddLostListener(weak, executor_,
                                             &ServerState::OnConnectionLost);
    tasks_.Spawn(tasks_.NewStrand(),
                 EveryHeartbeat([weak] { return Heartbeat(weak); }),
                 "nats server heartbeats");
    return instance_;
  }

  void OnConnectionLost() {
    CancelAll(absl::UnavailableError(absl::StrCat(
        "lost the connection to the NATS server at ", connection_->url())));
  }

  void Shutdown() {
    {
      std::unique_lock lock(mu_);
      if (shut_down_) return;
      shut_down_ = true;
      // An OnOpen() past its check registers and spawns its call first, so
      // that CancelAll() and tasks_.Wait() below see it.
      opens_done_.wait(lock, [&] { return opens_in_flight_ == 0; });
    }
    if (connection_) connection_->RemoveListener(listener_);
    subscriptions_.clear();
    CancelAll(absl::UnavailableError("the server is shutting down"));
    tasks_.CancelAll();
    tasks_.Wait();
  }

 private:
  absl::Status Subscribe(const std::string& subject, const std::string& queue,
                         std::function<void(NatsMessage)> handler) {
    // One strand per subscription: nats.c delivers in order, and so do we.
    absl::StatusOr<std::unique_ptr<NatsSubscription>> sub =
        connection_->Subscribe(subject, queue, MakeStrand(executor_),
                               std::move(handler));
    if (!sub.ok()) return sub.status();
    subscriptions_.push_back(*std::move(sub));
    return absl::OkStatus();
  }

  void Send(const ServedCall& call, NatsHeaders headers,
            const std::string& data = {}) {
    (void)connection_->Publish(call.reply, "", headers, data, "message");
  }

  void OnOpen(NatsMessage m) {
    if (m.reply.empty()) return;  // nowhere to answer
    {
      std::lock_guard lock(mu_);
      if (shut_down_) return;
      ++opens_in_flight_;
    }
    absl::Cleanup opened = [this] {
      std::lock_guard lock(mu_);
      if (--opens_in_flight_ == 0) opens_done_.notify_all();
    };
    const std::string* method = m.Header(kMethod);
    auto call = std::make_shared<ServedCall>(tasks_.NewStrand(), *this);
    call->reply = m.reply;
    {
      std::lock_guard lock(mu_);
      call->n = next_call_++;
    }
    call->subject =
        absl::StrCat(config_.name_space, ".call.", instance_, ".", call->n);
    CallRequest request;
    request.method = method ? *method : "";
    if (const std::string* t = m.Header(kTimeoutUs)) {
      int64_t us = 0;
      if (absl::SimpleAtoi(*t, &us) && us > 0) {
        request.deadline = Clock::now() + std::chrono::microseconds(us);
      }
    }
    if (const std::string* md = m.Header(kMetadata)) {
      std::optional<Metadata> metadata = DecodeMetadata(*md);
      if (!metadata) {
        NatsHeaders end = {{kType, "end"}};
        AddStatus(end, absl::InternalError("malformed metadata header"));
        Send(*call, end);
        return;
      }
      request.metadata = *std::move(metadata);
    }
    absl::StatusOr<Compression> compression = CompressionFrom(m);
    if (!compression.ok()) {
      NatsHeaders end = {{kType, "end"}};
      AddStatus(end, compression.status());
      Send(*call, end);
      return;
    }
    const std::string* accepts = m.Header(nats::kAcceptEncoding);
    request.accepts = accepts ? ParseAcceptEncoding(*accepts)
                              : Bit(Compression::kIdentity);
    bool streaming = m.Header(kKind) && *m.Header(kKind) == "stream";
    bool has_message = m.Header(kHasMessage) != nullptr;
    bool done = m.Header(kDone) != nullptr;
    if (streaming) {
      // Before the call is published: a cancel may end it at once.
      call->stream = std::make_shared<StreamState>(
          ReceiveLimit(config_, connection_->max_payload()));
      if (has_message) call->stream->Deliver(std::move(m.data), *compression);
      if (done) call->stream->PeerDone();
    }
    {
      std::lock_guard lock(mu_);
      if (cancelled_early_.erase(call->reply) > 0) return;  // cancelled first
      by_n_[call->n] = call;
      by_reply_[call->reply] = call;
    }
    if (!streaming) {
      if (!has_message) {
        Finish(*call, CallResult(absl::InternalError(
                          "malformed call: a unary open without its message")),
               false);
        return;
      }
      request.payload = std::move(m.data);
      request.encoding = *compression;
      request.payload_compressed = *compression != Compression::kIdentity;
    } else {
      Send(*call, {{kType, "accept"}, {kCall, call->subject}});
    }
    call->Spawn(tasks_,
                FramedServerCall::Serve(call, *handler_, std::move(request),
                                        absl::StrCat("nats:", call->reply)),
                streaming ? "nats server stream" : "nats server call");
  }

  void OnCallMessage(NatsMessage m) {
    std::optional<uint64_t> number = CallNumber(m.subject);
    if (!number) return;
    uint64_t n = *number;
    std::shared_ptr<ServedCall> call;
    {
      std::lock_guard lock(mu_);
      auto it = by_n_.find(n);
      if (it == by_n_.end()) return;  // ended meanwhile
      call = it->second;
    }
    call->liveness.Heard();
    const std::string* type = m.Header(kType);
    if (type == nullptr) return;
    if (*type == "cancel") {
      call->Cancel(absl::CancelledError("the caller cancelled"));
    } else if (call->stream == nullptr) {
      return;  // a unary call hears only cancels and heartbeats
    } else if (*type == "msg") {
      absl::Status delivered =
          DeliverInOrder(m, &call->next_seq, *call->stream, "the caller");
      if (!delivered.ok()) call->Cancel(delivered);
    } else if (*type == "done") {
      call->stream->PeerDone();
    } else if (*type == "credit") {
      AddCredit(m, *call->stream);
    }
  }

  void OnBroadcastCancel(NatsMessage m) {
    const std::string* reply = m.Header(kReplyTo);
    if (reply == nullptr) return;
    std::shared_ptr<ServedCall> call;
    {
      std::lock_guard lock(mu_);
      auto it = by_reply_.find(*reply);
      if (it == by_reply_.end()) {
        // Its open may still be on its way (another subscription): refuse
        // it when it comes.
        cancelled_early_[*reply] = NowCount();
        return;
      }
      call = it->second;
    }
    call->Cancel(absl::CancelledError("the caller cancelled"));
  }

  void Forget(const ServedCall& call) {
    std::lock_guard lock(mu_);
    by_n_.erase(call.n);
    by_reply_.erase(call.reply);
  }

  void CancelAll(const absl::Status& why) {
    std::vector<std::shared_ptr<ServedCall>> calls;
    {
      std::lock_guard lock(mu_);
      for (auto& [n, call] : by_n_) calls.push_back(call);
    }
    for (auto& call : calls) call->Cancel(why);
  }

  // Forgets the call and sends its end: status, metadata and the response,
  // if any (the core has checked its size).
  void Finish(const ServedCall& call, CallResult result, bool initial_sent) {
    Forget(call);
    NatsHeaders headers = {{kType, "end"}};
    if (!initial_sent && !result.initial_metadata.empty()) {
      headers.emplace_back(kInitialMetadata,
                           EncodeMetadata(result.initial_metadata));
    }
    if (!result.trailing_metadata.empty()) {
      headers.emplace_back(kTrailingMetadata,
                           EncodeMetadata(result.trailing_metadata));
    }
    NatsHeaders with_status = headers;
    AddStatus(with_status, result.status);
    bool with_message = result.status.ok() && result.has_message;
    if (with_message) {
      with_status.emplace_back(kHasMessage, "1");
      if (result.payload_compressed) AddCompression(with_status, result.encoding);
    }
    absl::Status sent = connection_->Publish(
        call.reply, "", with_status, with_message ? result.payload : "",
        "response message");
    if (absl::IsResourceExhausted(sent)) {
      // Too large for the NATS server: the caller gets why.
      AddStatus(headers, sent);
      (void)connection_->Publish(call.reply, "", headers, "", "status");
    }
  }

  // Each heartbeat: one to each caller that is due one; a caller silent too
  // long is gone and its call is cancelled. False once the server is gone.
  static bool Heartbeat(const std::weak_ptr<ServerState>& weak) {
    auto self = weak.lock();
    if (self == nullptr) return false;
    std::vector<std::shared_ptr<ServedCall>> calls;
    {
      std::lock_guard lock(self->mu_);
      for (auto& [n, call] : self->by_n_) calls.push_back(call);
      absl::erase_if(self->cancelled_early_,
                     [](const auto& entry) { return PeerLost(entry.second); });
    }
    for (auto& call : calls) {
      switch (call->liveness.Tick()) {
        case Liveness::Action::kLost:
          call->Cancel(call->liveness.LostError("the caller"));
          break;
        case Liveness::Action::kProbe:
          self->Send(*call, {{kType, "hb"}, {kCall, call->subject}});
          break;
        default:
          break;
      }
    }
    return true;
  }

  friend ServedCall;

  const NatsConfig config_;
  asio::any_io_executor executor_;
  TaskGroup tasks_;
  CallHandler* handler_ = nullptr;
  std::shared_ptr<NatsConnection> connection_;
  std::vector<std::unique_ptr<NatsSubscription>> subscriptions_;
  int listener_ = 0;
  std::string instance_;
  std::atomic<bool> shut_down_{false};  // set under mu_
  std::mutex mu_;
  int opens_in_flight_ = 0;             // OnOpen()s past their check; mu_
  std::condition_variable opens_done_;  // opens_in_flight_ reached 0
  uint64_t next_call_ = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<ServedCall>> by_n_;
  absl::flat_hash_map<std::string, std::shared_ptr<ServedCall>> by_reply_;
  // Cancels that came before their call's open, by reply subject, with when
  // they came (dropped once PeerLost()).
  absl::flat_hash_map<std::string, Clock::rep> cancelled_early_;
};

absl::Status ServedCall::CheckMessage(std::size_t bytes) const {
  return CheckMessageSize(server_.config_, bytes, "response message");
}

std::size_t ServedCall::max_message_size() const {
  return ReceiveLimit(server_.config_, server_.connection_->max_payload());
}

absl::Status ServedCall::SendMessage(std::string message,
                                     const Metadata* initial_metadata,
                                     Compression encoding, bool compressed) {
  NatsHeaders headers = {{kType, "msg"}, {kSeq, std::to_string(seq_)}};
  if (compressed) AddCompression(headers, encoding);
  if (initial_metadata != nullptr && !initial_metadata->empty()) {
    headers.emplace_back(kInitialMetadata, EncodeMetadata(*initial_metadata));
  }
  absl::Status sent = server_.connection_->Publish(reply, "", headers, message,
                                                   "response message");
  if (sent.ok()) ++seq_;  // a message not sent does not use its number
  return sent;
}

void ServedCall::SendWindow(uint32_t bytes) {
  server_.Send(*this, {{kType, "credit"}, {kCredit, std::to_string(bytes)}});
}

void ServedCall::SendEnd(CallResult result, bool initial_sent) {
  server_.Finish(*this, std::move(result), initial_sent);
}

NatsServer::NatsServer(NatsConfig config, asio::any_io_executor executor)
    : state_(std::make_shared<ServerState>(std::move(config),
                                           std::move(executor))) {}

NatsServer::~NatsServer() { Shutdown(); }

absl::StatusOr<std::string> NatsServer::Start(CallHandler& handler) {
  return state_->Start(handler);
}

void NatsServer::Shutdown() { state_->Shutdown(); }

}  // namespace dynrpc::internal::nats
