#include "routing/service_router.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/context_access.h"
#include "core/dispatcher.h"
#include "core/log.h"
#include "core/open_once.h"
#include "grpc/health/v1/health.pb.h"

namespace dynrpc::internal {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

// A unary request up to this size is kept for one retry elsewhere (as
// gRPC's retry buffer); a larger one is sent once.
constexpr std::size_t kRetryBufferBytes = 256 * 1024;

std::string Hex(uint64_t id) { return absl::StrFormat("%016x", id); }

bool NotProcessed(const CallResult& result) {
  return absl::IsUnavailable(result.status) &&
         (result.not_processed ||
          FindMetadata(result.trailing_metadata, Dispatcher::kNotProcessedKey)
              .has_value());
}

}  // namespace

ServiceRouter::ServiceRouter(Options options,
                             std::shared_ptr<RequestPlaneClient> client,
                             asio::any_io_executor executor)
    : options_(std::move(options)),
      plane_name_(RequestPlaneName(options_.plane)),
      executor_(executor),
      client_(std::move(client)),
      probes_(std::move(executor)) {}

std::shared_ptr<ServiceRouter> ServiceRouter::Start(
    Options options, std::shared_ptr<RequestPlaneClient> client,
    asio::any_io_executor executor) {
  std::shared_ptr<ServiceRouter> router(new ServiceRouter(
      std::move(options), std::move(client), std::move(executor)));
  std::weak_ptr<ServiceRouter> weak = router;
  router->watch_ = router->options_.discovery->Watch(
      router->options_.service,
      [weak](absl::StatusOr<std::vector<Instance>> listed) {
        if (auto self = weak.lock()) self->Update(std::move(listed));
      });
  return router;
}

ServiceRouter::~ServiceRouter() {
  watch_.reset();
  probes_.Stop();
}

void ServiceRouter::Update(absl::StatusOr<std::vector<Instance>> listed) {
  std::vector<std::shared_ptr<Signal>> wake;
  {
    std::lock_guard lock(mu_);
    if (!listed.ok()) {
      // Keep routing over what was listed last; report it if nothing was.
      DYNRPC_LOG(kWarn, "dynrpc::routing", "cannot list ", options_.service,
                 " (routing over the last listing): ",
                 listed.status().message());
      discovery_error_ = listed.status();
    } else {
      DYNRPC_LOG(kDebug, "dynrpc::routing", options_.service, ": ",
                 listed->size(), " instance(s) listed");
      discovery_error_ = absl::OkStatus();
      std::vector<std::shared_ptr<RoutedInstance>> next;
      for (Instance& i : *listed) {
        auto same = std::find_if(
            all_.begin(), all_.end(), [&](const auto& r) {
              return r->instance.id == i.id &&
                     r->instance.address == i.address &&
                     r->instance.plane == i.plane &&
                     r->instance.start_time_unix_ms == i.start_time_unix_ms;
            });
        // The same registration keeps its state (down, calls in flight); a
        // new one (a restart) starts up.
        next.push_back(same != all_.end()
                           ? *same
                           : std::make_shared<RoutedInstance>(std::move(i)));
      }
      all_ = std::move(next);
    }
    listed_ = true;
    wake.swap(list_waiters_);
  }
  for (auto& w : wake) w->try_send(boost::system::error_code{});
}

bool ServiceRouter::Listed() const {
  std::lock_guard lock(mu_);
  return listed_;
}

std::vector<Instance> ServiceRouter::instances() const {
  std::lock_guard lock(mu_);
  std::vector<Instance> out;
  for (const auto& r : all_) out.push_back(r->instance);
  return out;
}

absl::StatusOr<RoutedCall> ServiceRouter::ChooseLocked(
    const ClientContext& context, uint64_t exclude) {
  // For the errors only: not built on the way to a pick.
  auto where = [this] {
    return absl::StrCat(" (namespace '", options_.name_space, "', ",
                        options_.discovery->Describe(), ")");
  };
  if (std::optional<uint64_t> wanted = context.instance_id()) {
    for (const auto& r : all_) {
      if (r->instance.id != *wanted) continue;
      if (r->instance.plane != plane_name_) {
        return absl::FailedPreconditionError(absl::StrCat(
            "instance ", Hex(*wanted), " of ", options_.service,
            " serves on the ", r->instance.plane,
            " request plane; this client uses ", plane_name_,
            " (DYN_REQUEST_PLANE): every process must use the same plane"));
      }
      if (r->down.load()) {
        std::lock_guard down_lock(r->mu);
        return absl::UnavailableError(absl::StrCat(
            "instance ", Hex(*wanted), " of ", options_.service,
            " is down: ", r->down_reason.message()));
      }
      return RoutedCall(r);
    }
    return absl::UnavailableError(
        absl::StrCat("instance ", Hex(*wanted), " of ", options_.service,
                     " is not registered", where()));
  }
  if (options_.router == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the channel to ", options_.service,
        " routes by the direct policy: each call must name its instance "
        "(ClientContext::set_instance_id)"));
  }
  std::vector<std::shared_ptr<RoutedInstance>*> picked;
  std::vector<Candidate> candidates;
  std::size_t on_plane = 0;
  std::string other_plane;
  absl::Status last_down;
  for (auto& r : all_) {
    if (r->instance.plane != plane_name_) {
      other_plane = r->instance.plane;
      continue;
    }
    ++on_plane;
    if (r->instance.id == exclude) continue;
    if (r->down.load()) {
      std::lock_guard down_lock(r->mu);
      last_down = r->down_reason;
      continue;
    }
    candidates.push_back(
        Candidate{&r->instance, r->in_flight.load(std::memory_order_relaxed)});
    picked.push_back(&r);
  }
  if (candidates.empty()) {
    if (on_plane == 0 && !other_plane.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          options_.service, " is registered only on the ", other_plane,
          " request plane; this client uses ", plane_name_,
          " (DYN_REQUEST_PLANE): every process of a deployment must use the "
          "same request plane", where()));
    }
    if (on_plane == 0) {
      if (!discovery_error_.ok()) {
        return absl::UnavailableError(
            absl::StrCat("cannot list the instances of ", options_.service,
                         ": ", discovery_error_.message()));
      }
      return absl::UnavailableError(absl::StrCat(
          "no instance of ", options_.service, " is registered", where()));
    }
    return absl::UnavailableError(absl::StrCat(
        "every instance of ", options_.service, " (", on_plane,
        ") is down or was tried; last error: ", last_down.message()));
  }
  std::size_t index = options_.router->Pick(candidates, context);
  if (index >= candidates.size()) index = 0;  // a broken custom router
  return RoutedCall(*picked[index]);
}

asio::awaitable<absl::StatusOr<RoutedCall>> ServiceRouter::Choose(
    const ClientContext& context, uint64_t exclude,
    Clock::time_point deadline, std::shared_ptr<Signal> wake) {
  {
    std::lock_guard lock(mu_);
    if (listed_) co_return ChooseLocked(context, exclude);
    if (wake == nullptr) {
      wake = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
    }
    list_waiters_.push_back(wake);
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  co_await (wake->async_receive(asio::as_tuple(asio::use_awaitable)) ||
            timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  std::lock_guard lock(mu_);
  if (!listed_) {
    if (Clock::now() < deadline) {
      co_return absl::CancelledError("call cancelled by the caller");
    }
    co_return absl::DeadlineExceededError(absl::StrCat(
        std::string(kNotListedPrefix), options_.discovery->Describe(),
        " listed the instances of ", options_.service));
  }
  co_return ChooseLocked(context, exclude);
}

void ServiceRouter::MarkDown(uint64_t id, const absl::Status& why) {
  std::shared_ptr<RoutedInstance> target;
  {
    std::lock_guard lock(mu_);
    for (const auto& r : all_) {
      if (r->instance.id == id) target = r;
    }
  }
  if (target == nullptr) return;
  {
    std::lock_guard lock(target->mu);
    target->down_reason = why;
    target->down.store(true);
    if (target->probing) return;
    target->probing = true;
  }
  DYNRPC_LOG(kWarn, "dynrpc::routing", "instance ", Hex(id), " of ",
             options_.service, " at ", target->instance.address,
             " marked down: ", why.message());
  probes_.Spawn(probes_.NewStrand(), Probe(target), "instance health probe");
}

// Every probe_interval, while the instance is listed: a health check of the
// service; SERVING brings it back.
asio::awaitable<void> ServiceRouter::Probe(
    std::shared_ptr<RoutedInstance> target) {
  std::weak_ptr<ServiceRouter> weak = weak_from_this();
  std::shared_ptr<RequestPlaneClient> client = client_;
  const std::chrono::milliseconds interval = options_.probe_interval;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(target->instance.service);
  const std::string payload = request.SerializeAsString();
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(interval);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    {
      std::shared_ptr<ServiceRouter> self = weak.lock();
      if (self == nullptr) co_return;
      std::lock_guard lock(self->mu_);
      if (std::find(self->all_.begin(), self->all_.end(), target) ==
          self->all_.end()) {
        std::lock_guard down_lock(target->mu);
        target->probing = false;  // no longer listed: nothing to probe
        co_return;
      }
    }
    CallRequest check;
    check.method = "/grpc.health.v1.Health/Check";
    check.deadline = Clock::now() + interval;
    check.payload = payload;
    // The plane enforces no deadline of its own: the core's timer does.
    auto hook = std::make_shared<CancelHook>();
    asio::steady_timer expiry(co_await asio::this_coro::executor,
                              *check.deadline);
    expiry.async_wait([hook](const boost::system::error_code& ec) {
      if (!ec) hook->Cancel(absl::DeadlineExceededError("health probe"));
    });
    CallResult result = co_await client->Unary(target->instance.address,
                                               std::move(check), hook);
    expiry.cancel();
    grpc::health::v1::HealthCheckResponse response;
    if (result.status.ok() && response.ParseFromString(result.payload) &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      break;  // back
    }
  }
  MarkUp(*target);
}

void ServiceRouter::MarkUp(RoutedInstance& target) {
  {
    std::lock_guard lock(target.mu);
    target.probing = false;
    target.down.store(false);
  }
  DYNRPC_LOG(kInfo, "dynrpc::routing", "instance ", Hex(target.instance.id),
             " of ", target.instance.service,
             " is back (its health check answers SERVING)");
}

// GCC 12 warns that this coroutine's frame is freed by the sized operator
// delete of Asio's awaitable_frame_base, "not matching" its operator new,
// which is the same class's: a false positive of its inlining of coroutine
// frames (as in channel.cc), silenced for this function only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<CallResult> ServiceRouter::Unary(
    ClientContext& context, CallRequest call,
    std::shared_ptr<CancelHook> cancel) {
  const Clock::time_point deadline = *call.deadline;
  // What a retry sends, kept before the plane may move from the call.
  std::optional<CallRequest> again;
  if (call.payload.size() <= kRetryBufferBytes && !context.instance_id()) {
    again = call;
  }
  uint64_t exclude = 0;
  std::optional<CallResult> first;
  for (;;) {
    // Before discovery's first listing, TryCancel() and the deadline end
    // the wait for it (the plane's own wait takes the hook over after).
    // Once listed (every call but the first few), nothing to set up.
    std::shared_ptr<Signal> wake;
    if (!Listed()) {
      wake = std::make_shared<Signal>(executor_, 1);
      cancel->Set([wake](absl::Status) {
        wake->try_send(boost::system::error_code{});
      });
    }
    absl::StatusOr<RoutedCall> routed =
        co_await Choose(context, exclude, deadline, wake);
    if (std::optional<absl::Status> why = cancel->cancelled()) {
      co_return CallResult(*why);
    }
    if (!routed.ok()) {
      if (first) co_return *std::move(first);  // no other instance to try
      co_return CallResult(routed.status());
    }
    const Instance& instance = routed->instance();
    ContextAccess::SetRoutedTo(context, instance.id);
    CallResult result =
        co_await client_->Unary(instance.address, std::move(call), cancel);
    if (!NotProcessed(result)) co_return result;
    MarkDown(instance.id, result.status);
    if (first || !again || cancel->cancelled() || Clock::now() >= deadline) {
      co_return result;
    }
    exclude = instance.id;
    call = *std::move(again);
    first = std::move(result);
  }
}
#pragma GCC diagnostic pop

namespace {

// A stream of a service's channel: its first operation picks the instance
// and starts the plane's stream there; every operation after goes to it.
class RoutedClientStream final : public ClientStream {
 public:
  RoutedClientStream(std::shared_ptr<ServiceRouter> router,
                     std::shared_ptr<RequestPlaneClient> client,
                     const asio::any_io_executor& executor,
                     ClientContext& context, CallRequest head,
                     std::optional<std::string> first_message)
      : router_(std::move(router)),
        client_(std::move(client)),
        context_(context),
        head_(std::move(head)),
        first_message_(std::move(first_message)),
        wake_(std::make_shared<Signal>(executor, 1)) {}

  asio::awaitable<absl::Status> Write(std::string message,
                                      bool compressed) override {
    if (absl::Status s = co_await Open(); !s.ok()) co_return s;
    co_return co_await inner_->Write(std::move(message), compressed);
  }
  asio::awaitable<absl::Status> WritesDone() override {
    if (absl::Status s = co_await Open(); !s.ok()) co_return s;
    co_return co_await inner_->WritesDone();
  }
  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read(
      std::size_t* wire_bytes) override {
    if (absl::Status s = co_await Open(); !s.ok()) co_return s;
    co_return co_await inner_->Read(wire_bytes);
  }
  asio::awaitable<CallResult> Finish() override {
    if (absl::Status s = co_await Open(); !s.ok()) {
      std::optional<CallResult> ended = EndedResult();
      co_return ended ? *std::move(ended) : CallResult(s);
    }
    CallResult result = co_await inner_->Finish();
    if (NotProcessed(result)) {
      router_->MarkDown(routed_->instance().id, result.status);
    }
    co_return result;
  }
  void Cancel(absl::Status why) override {
    std::unique_lock lock(mu_);
    if (inner_ != nullptr) {
      ClientStream* inner = inner_.get();
      lock.unlock();
      inner->Cancel(std::move(why));
      return;
    }
    if (!ended_) ended_ = CallResult(std::move(why));
    wake_->try_send(boost::system::error_code{});  // if it waits to route
  }
  std::optional<CallResult> EndedResult() const override {
    std::lock_guard lock(mu_);
    if (inner_ != nullptr) return inner_->EndedResult();
    return ended_;
  }

 private:
  asio::awaitable<absl::Status> Open() {
    return open_.Run(this, &RoutedClientStream::Route);
  }
  asio::awaitable<absl::Status> Route() {
    {
      std::lock_guard lock(mu_);
      if (ended_) co_return ended_->status;
    }
    absl::StatusOr<RoutedCall> routed =
        co_await router_->Choose(context_, 0, *head_.deadline, wake_);
    std::lock_guard lock(mu_);
    if (ended_) co_return ended_->status;  // cancelled meanwhile
    if (!routed.ok()) {
      ended_ = CallResult(routed.status());
      co_return routed.status();
    }
    ContextAccess::SetRoutedTo(context_, routed->instance().id);
    inner_ = client_->StartStream(routed->instance().address, std::move(head_),
                                  std::move(first_message_));
    routed_.emplace(*std::move(routed));
    co_return absl::OkStatus();
  }

  const std::shared_ptr<ServiceRouter> router_;
  const std::shared_ptr<RequestPlaneClient> client_;
  ClientContext& context_;
  CallRequest head_;
  std::optional<std::string> first_message_;
  OpenOnce open_;
  mutable std::mutex mu_;
  // Set once, under mu_, by the opening; read without it by the operations
  // after Open() returned OK.
  std::unique_ptr<ClientStream> inner_;
  std::optional<RoutedCall> routed_;   // holds the call on its instance
  std::optional<CallResult> ended_;    // ended before it opened; under mu_
  const std::shared_ptr<Signal> wake_;  // Cancel() ends the wait to route
};

}  // namespace

std::unique_ptr<ClientStream> ServiceRouter::StartStream(
    ClientContext& context, CallRequest head,
    std::optional<std::string> first_message) {
  return std::make_unique<RoutedClientStream>(shared_from_this(), client_,
                                              executor_, context,
                                              std::move(head),
                                              std::move(first_message));
}

}  // namespace dynrpc::internal
