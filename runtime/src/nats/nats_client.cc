// The NATS plane's client side (see protocol.h).
#include <atomic>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/client_call.h"
#include "core/deadline.h"
#include "core/stream_state.h"
#include "core/task_group.h"
#include "dynrpc/status_macros.h"
#include "nats/nats_connection.h"
#include "nats/nats_plane.h"
#include "nats/protocol.h"

namespace dynrpc::internal::nats {

namespace asio = boost::asio;

namespace {

// Returns once `wake` is signalled (for WithDeadline, which bounds it).
asio::awaitable<absl::Status> Signalled(std::shared_ptr<Signal> wake) {
  auto [ec] = co_await wake->async_receive(asio::as_tuple(asio::use_awaitable));
  if (ec) co_return absl::CancelledError("wait cancelled");
  co_return absl::OkStatus();
}

// One call in progress, as the inbox sees it.
struct ClientCall {
  uint64_t n = 0;
  bool streaming = false;
  std::string reply;  // our inbox subject for it
  std::string method_subject;
  std::shared_ptr<StreamState> state;
  CallLiveness liveness{HeartbeatPolicy()};
  std::mutex mu;
  std::string server_subject;  // from "accept" or a heartbeat (under mu)
  std::vector<std::shared_ptr<Signal>> accept_waiters;  // under mu
  uint64_t pending_credit = 0;  // granted before the subject was known
  int64_t next_seq = 0;         // of the server's messages (the inbox's strand)
};

}  // namespace

class ClientState : public std::enable_shared_from_this<ClientState> {
 public:
  ClientState(NatsConfig config, asio::any_io_executor executor)
      : config_(std::move(config)),
        executor_(std::move(executor)),
        client_id_(NewId()),
        tasks_(std::make_shared<TaskGroup>(executor_)) {
    // Starts connecting now, on the connection's own thread (never blocks).
    absl::StatusOr<std::shared_ptr<NatsConnection>> connection =
        NatsConnection::Get(config_);
    if (connection.ok()) {
      connection_ = *std::move(connection);
    } else {
      setup_error_ = connection.status();
    }
  }

  ~ClientState() {
    if (connection_) connection_->RemoveListener(listener_);
    inbox_.reset();
    tasks_->CancelAll();
  }

  const NatsConfig& config() const { return config_; }
  const asio::any_io_executor& executor() const { return executor_; }

  // Whether the connection is up and our inbox subscribed (then for good:
  // nats.c reconnects, and Publish() fails fast meanwhile).
  bool ready() const { return ready_.load(std::memory_order_acquire); }

  // Waits, without blocking a thread, until ready(). While the first attempt
  // to connect is under way it waits for it, up to DYN_NATS_CONNECT_TIMEOUT
  // after it began (UNAVAILABLE), `deadline` (DEADLINE_EXCEEDED) or `cancel`
  // (CANCELLED: the caller says why). Once an attempt has failed it fails at
  // once with that attempt's error (UNAVAILABLE naming NATS_SERVER, or
  // UNAUTHENTICATED) while the connection is retried in the background, so
  // that calls succeed again once the NATS server is back.
  asio::awaitable<absl::Status> WaitReady(
      std::optional<Clock::time_point> deadline,
      std::shared_ptr<Signal> cancel) {
    if (!setup_error_.ok()) co_return setup_error_;
    if (ready()) co_return absl::OkStatus();
    auto wake = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
    std::optional<absl::Status> outcome = connection_->Established(wake);
    if (!outcome) {
      Clock::time_point until = connection_->first_attempt_deadline();
      if (deadline && *deadline < until) until = *deadline;
      // Signalled, or `until` passed (then Established() below says which).
      absl::Status waited =
          co_await WithDeadline(Signalled(wake), until, "no connection yet",
                                nullptr, std::move(cancel));
      if (absl::IsCancelled(waited)) {
        co_return absl::CancelledError(
            "cancelled while waiting for the connection to the NATS server");
      }
      outcome = connection_->Established();
    }
    if (!outcome) {
      if (deadline && Clock::now() >= *deadline) {
        co_return absl::DeadlineExceededError(absl::StrCat(
            "the call's deadline passed while it waited for the connection "
            "to the NATS server at ",
            connection_->url()));
      }
      co_return connection_->NotYetConnectedError();
    }
    if (!outcome->ok()) co_return *outcome;
    co_return SetUp();
  }

  // The subject a call to `method` at `target` goes to.
  absl::StatusOr<std::string> SubjectFor(std::string_view target,
                                         std::string_view method) const {
    std::optional<std::string> suffix = MethodSubjectSuffix(method);
    if (!suffix) {
      return absl::InvalidArgumentError(absl::StrCat(
          "method path '", std::string(method), "' cannot be a NATS subject"));
    }
    if (target == "*" || target.empty()) {
      return absl::StrCat(config_.name_space, ".rpc.", *suffix);
    }
    if (std::string(target).find_first_of(". *>:/") != std::string::npos) {
      // Not an instance id (an address of another plane, say): no server
      // on NATS answers to it.
      return absl::UnavailableError(absl::StrCat(
          "no NATS server instance '", std::string(target),
          "': a NATS target is '*' (any instance of the service) or an "
          "instance id (a server's address())"));
    }
    return absl::StrCat(config_.name_space, ".inst.", std::string(target), ".",
                        *suffix);
  }

  // Registers a call whose frames go to `state`.
  std::shared_ptr<ClientCall> NewCall(std::string method_subject,
                                      bool streaming,
                                      std::shared_ptr<StreamState> state) {
    auto call = std::make_shared<ClientCall>();
    call->streaming = streaming;
    call->method_subject = std::move(method_subject);
    state->set_max_message(ReceiveLimit(config_, connection_->max_payload()));
    call->state = std::move(state);
    std::lock_guard lock(mu_);
    call->n = next_call_++;
    call->reply =
        absl::StrCat(config_.name_space, ".inbox.", client_id_, ".", call->n);
    calls_[call->n] = call;
    return call;
  }

  void Forget(const ClientCall& call) {
    std::lock_guard lock(mu_);
    calls_.erase(call.n);
  }

  // Opens a call: its head (method, deadline, metadata, kind) and maybe a
  // first message.
  absl::Status Open(const ClientCall& call, const CallRequest& head,
                    bool streaming, const std::string* message, bool done) {
    NatsHeaders headers = {
        {kType, "open"},
        {kKind, streaming ? "stream" : "unary"},
        {kMethod, head.method},
        {nats::kAcceptEncoding, std::string(internal::kAcceptEncoding)}};
    if (head.deadline) {
      int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                       *head.deadline - Clock::now())
                       .count();
      headers.emplace_back(kTimeoutUs,
                           std::to_string(std::max<int64_t>(us, 1)));
    }
    if (!head.metadata.empty()) {
      headers.emplace_back(kMetadata, EncodeMetadata(head.metadata));
    }
    if (message != nullptr) {
      DYNRPC_RETURN_IF_ERROR(
          CheckMessageSize(config_, message->size(), "request message"));
      headers.emplace_back(kHasMessage, "1");
      if (head.payload_compressed) AddCompression(headers, head.encoding);
    }
    if (done) headers.emplace_back(kDone, "1");
    return connection_->Publish(call.method_subject, call.reply, headers,
                                message ? *message : std::string(),
                                "request message");
  }

  // Sends to the server's side of the call (known once it answered).
  absl::Status SendToServer(ClientCall& call, NatsHeaders headers,
                            const std::string& data, std::string_view what) {
    std::string subject;
    {
      std::lock_guard lock(call.mu);
      subject = call.server_subject;
    }
    return connection_->Publish(subject, "", headers, data, what);
  }

  // Waits until the server has accepted the call (its subject is known) or
  // the call ended.
  asio::awaitable<absl::Status> WaitAccepted(ClientCall& call) {
    for (;;) {
      std::shared_ptr<Signal> wait;
      {
        std::lock_guard lock(call.mu);
        if (!call.server_subject.empty()) co_return absl::OkStatus();
        if (call.state->ended()) co_return call.state->end_status();
        wait = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
        call.accept_waiters.push_back(wait);
      }
      auto [ec] =
          co_await wait->async_receive(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return absl::CancelledError("cancelled while opening");
    }
  }

  void Grant(ClientCall& call, uint32_t bytes) {
    if (bytes == 0) return;
    {
      std::lock_guard lock(call.mu);
      if (call.server_subject.empty()) {
        call.pending_credit += bytes;
        return;
      }
    }
    (void)SendToServer(call,
                       {{kType, "credit"}, {kCredit, std::to_string(bytes)}},
                       "", "credit");
  }

  // Ends the call locally with `why` and tells the server.
  void Cancel(ClientCall& call, const absl::Status& why) {
    if (!call.state->End(CallResult(why), /*discard_unread=*/true)) return;
    TellCancel(call);
  }

  // The call ended on our side: tells its server (or, not answered yet,
  // every server) and forgets it.
  void TellCancel(ClientCall& call) {
    WakeAcceptWaiters(call);
    std::string subject;
    {
      std::lock_guard lock(call.mu);
      subject = call.server_subject;
    }
    if (!subject.empty()) {
      (void)connection_->Publish(subject, "", {{kType, "cancel"}}, "",
                                 "cancel");
    } else if (connection_) {
      // Not answered yet: every server hears it; the one with the call
      // cancels it.
      (void)connection_->Publish(
          absl::StrCat(config_.name_space, ".cancel"), "",
          {{kType, "cancel"}, {kReplyTo, call.reply}}, "", "cancel");
    }
    Forget(call);
  }

  std::shared_ptr<NatsConnection> connection() const { return connection_; }

 private:
  // Once connected: our inbox, the listener for lost connections and the
  // heartbeats. Never blocks (the inbox's subscription is not flushed: the
  // NATS server handles a connection's messages in order, so it knows the
  // inbox before any call we publish afterwards is answered).
  absl::Status SetUp() {
    std::lock_guard lock(connect_mu_);
    if (ready()) return absl::OkStatus();
    std::weak_ptr<ClientState> weak = shared_from_this();
    absl::StatusOr<std::unique_ptr<NatsSubscription>> inbox =
        connection_->Subscribe(
            absl::StrCat(config_.name_space, ".inbox.", client_id_, ".*"), "",
            MakeStrand(executor_), [weak](NatsMessage m) {
              if (auto self = weak.lock()) self->OnInbox(std::move(m));
            });
    if (!inbox.ok()) return inbox.status();
    listener_ = connection_->AddLostListener(weak, executor_,
                                             &ClientState::OnConnectionLost);
    inbox_ = *std::move(inbox);
    tasks_->Spawn(tasks_->NewStrand(),
                  EveryHeartbeat([weak] { return Heartbeat(weak); }),
                  "nats client heartbeats");
    ready_.store(true, std::memory_order_release);
    return absl::OkStatus();
  }

  void OnConnectionLost() {
    FailAll(absl::UnavailableError(
        absl::StrCat("lost the connection to the NATS server at ",
                     connection_->url(), " (NATS_SERVER)")));
  }

  void WakeAcceptWaiters(ClientCall& call) {
    std::lock_guard lock(call.mu);
    for (auto& w : call.accept_waiters)
      w->try_send(boost::system::error_code{});
    call.accept_waiters.clear();
  }

  void SetServerSubject(ClientCall& call, const std::string& subject) {
    uint64_t credit = 0;
    {
      std::lock_guard lock(call.mu);
      if (!call.server_subject.empty()) return;
      call.server_subject = subject;
      credit = std::exchange(call.pending_credit, 0);
      for (auto& w : call.accept_waiters) {
        w->try_send(boost::system::error_code{});
      }
      call.accept_waiters.clear();
    }
    if (credit > 0) Grant(call, static_cast<uint32_t>(credit));
  }

  void OnInbox(NatsMessage m) {
    std::optional<uint64_t> number = CallNumber(m.subject);
    if (!number) return;
    uint64_t n = *number;
    std::shared_ptr<ClientCall> call;
    {
      std::lock_guard lock(mu_);
      auto it = calls_.find(n);
      if (it == calls_.end()) return;
      call = it->second;
    }
    call->liveness.Heard();
    if (m.no_responders) {
      // Nobody took the call: not processed.
      call->state->EndLost(absl::UnavailableError(absl::StrCat(
          "no server subscribes to ", call->method_subject, " on ",
          connection_->url(),
          ": is an instance of the service running (DYN_NAMESPACE=",
          config_.name_space, ")?")));
      WakeAcceptWaiters(*call);
      Forget(*call);
      return;
    }
    const std::string* type = m.Header(kType);
    if (type == nullptr) return;
    if (*type == "accept" || *type == "hb") {
      if (const std::string* subject = m.Header(kCall)) {
        SetServerSubject(*call, *subject);
      }
    } else if (*type == "msg") {
      if (const std::string* md = m.Header(kInitialMetadata)) {
        if (std::optional<Metadata> metadata = DecodeMetadata(*md)) {
          call->state->SetInitialMetadata(*std::move(metadata));
        }
      }
      absl::Status delivered =
          DeliverInOrder(m, &call->next_seq, *call->state, "the server");
      if (!delivered.ok()) Cancel(*call, delivered);
    } else if (*type == "credit") {
      AddCredit(m, *call->state);
    } else if (*type == "end") {
      CallResult result(StatusFrom(m));
      if (const std::string* md = m.Header(kInitialMetadata)) {
        result.initial_metadata = DecodeMetadata(*md).value_or(Metadata());
      }
      if (const std::string* md = m.Header(kTrailingMetadata)) {
        result.trailing_metadata = DecodeMetadata(*md).value_or(Metadata());
      }
      absl::StatusOr<Compression> compression = CompressionFrom(m);
      if (!compression.ok()) {
        result = CallResult(compression.status());
      } else if (result.status.ok() && m.Header(kHasMessage)) {
        if (call->streaming) {
          // A client-streaming call's response is read as its one message.
          (void)call->state->Deliver(std::move(m.data), *compression);
        } else {
          result.has_message = true;
          result.payload = std::move(m.data);
          result.encoding = *compression;
          result.payload_compressed = *compression != Compression::kIdentity;
        }
      }
      WakeAcceptWaiters(*call);
      Forget(*call);
      // Last: a unary caller goes on at once, in this thread when it runs
      // on this executor (this is the hand-off's drain, holding no lock).
      call->state->End(std::move(result), /*discard_unread=*/false,
                       StreamState::Resume::kInline);
    }
  }

  void FailAll(const absl::Status& why) {
    std::vector<std::shared_ptr<ClientCall>> calls;
    {
      std::lock_guard lock(mu_);
      for (auto& [n, call] : calls_) calls.push_back(call);
      calls_.clear();
    }
    for (auto& call : calls) {
      call->state->EndLost(why);
      WakeAcceptWaiters(*call);
    }
  }

  // Each heartbeat: one to each call's server that is due one; a call whose
  // server has been silent too long ends with UNAVAILABLE. False once the
  // client is gone.
  static bool Heartbeat(const std::weak_ptr<ClientState>& weak) {
    auto self = weak.lock();
    if (self == nullptr) return false;
    std::vector<std::shared_ptr<ClientCall>> calls;
    {
      std::lock_guard lock(self->mu_);
      for (auto& [n, call] : self->calls_) calls.push_back(call);
    }
    for (auto& call : calls) {
      Liveness::Action action = call->liveness.Tick();
      if (action == Liveness::Action::kLost) {
        call->state->End(CallResult(call->liveness.LostError(absl::StrCat(
                             "the server of ", call->method_subject))),
                         /*discard_unread=*/true);
        self->WakeAcceptWaiters(*call);
        self->Forget(*call);
        continue;
      }
      if (action != Liveness::Action::kProbe) continue;
      bool known = false;
      {
        std::lock_guard lock(call->mu);
        known = !call->server_subject.empty();
      }
      if (known) (void)self->SendToServer(*call, {{kType, "hb"}}, "", "hb");
    }
    return true;
  }

  const NatsConfig config_;
  const asio::any_io_executor executor_;
  const std::string client_id_;
  const std::shared_ptr<TaskGroup> tasks_;
  // Set by the constructor: the connection, or why there is none.
  std::shared_ptr<NatsConnection> connection_;
  absl::Status setup_error_;
  std::mutex connect_mu_;                    // SetUp()
  std::atomic<bool> ready_{false};           // set by SetUp(), once
  std::unique_ptr<NatsSubscription> inbox_;  // set by SetUp()
  int listener_ = 0;                         // set by SetUp()
  std::mutex mu_;
  uint64_t next_call_ = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<ClientCall>> calls_;
};

namespace {

// The frames of one call: messages numbered in order (the core sends them
// one at a time), to the server's subject once it accepted the call.
class NatsLink final : public ClientLink {
 public:
  NatsLink(std::shared_ptr<ClientState> client,
           std::shared_ptr<ClientCall> call, Compression encoding)
      : client_(std::move(client)),
        call_(std::move(call)),
        encoding_(encoding) {}

  asio::awaitable<absl::Status> Ready() override {
    return client_->WaitAccepted(*call_);
  }
  absl::Status CheckMessage(std::size_t bytes) const override {
    return CheckMessageSize(client_->config(), bytes, "request message");
  }
  absl::Status SendMessage(std::string message, bool compressed) override {
    NatsHeaders headers = {{kType, "msg"}, {kSeq, std::to_string(seq_)}};
    if (compressed) AddCompression(headers, encoding_);
    absl::Status sent = client_->SendToServer(*call_, std::move(headers),
                                              message, "request message");
    if (sent.ok()) ++seq_;
    return sent;
  }
  void SendHalfClose() override {
    (void)client_->SendToServer(*call_, {{kType, "done"}}, "", "half-close");
  }
  void SendWindow(uint32_t bytes) override { client_->Grant(*call_, bytes); }
  void SendCancel() override { client_->TellCancel(*call_); }

 private:
  const std::shared_ptr<ClientState> client_;
  const std::shared_ptr<ClientCall> call_;
  const Compression encoding_;  // the call's
  int64_t seq_ = 0;             // the next message's number
};

}  // namespace

NatsClient::NatsClient(NatsConfig config, asio::any_io_executor executor)
    : state_(std::make_shared<ClientState>(std::move(config),
                                           std::move(executor))) {}

NatsClient::~NatsClient() = default;

Clock::duration NatsClient::default_timeout() const {
  return state_->config().request_timeout;
}

std::size_t NatsClient::max_message_size() const {
  // Refined per call once connected (the NATS server's max_payload).
  return state_->config().max_message_size;
}

const asio::any_io_executor& NatsClient::executor() const {
  return state_->executor();
}

asio::awaitable<absl::StatusOr<std::shared_ptr<ClientLink>>> NatsClient::Open(
    std::string_view target, CallRequest& head, std::string* first_message,
    bool streaming, std::shared_ptr<StreamState> state, OpenCancel& cancel) {
  std::shared_ptr<ClientState> client = state_;
  // Before any suspension: `target` is borrowed.
  absl::StatusOr<std::string> subject = client->SubjectFor(target, head.method);
  if (!subject.ok()) co_return subject.status();
  if (!client->ready()) {
    absl::Status ready = co_await client->WaitReady(
        head.deadline, cancel.Arm(client->executor()));
    if (!ready.ok()) co_return ready;
  }
  std::shared_ptr<ClientCall> call =
      client->NewCall(*std::move(subject), streaming, std::move(state));
  absl::Status opened = client->Open(*call, head, streaming, first_message,
                                     /*done=*/first_message != nullptr);
  if (!opened.ok()) {
    client->Forget(*call);
    co_return opened;
  }
  co_return std::make_shared<NatsLink>(std::move(client), std::move(call),
                                       head.encoding);
}

}  // namespace dynrpc::internal::nats
