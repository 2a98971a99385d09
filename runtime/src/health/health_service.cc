#include "health/health_service.h"

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace dynrpc::internal {

namespace asio = boost::asio;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

void HealthService::Set(const std::string& service, ServingStatus status) {
  std::vector<std::shared_ptr<Signal>> wake;
  {
    std::lock_guard lock(mu_);
    status_[service] = status;
    wake = LiveWatchersLocked();
  }
  for (const auto& signal : wake) signal->try_send(boost::system::error_code{});
}

void HealthService::SetAll(ServingStatus status) {
  std::vector<std::shared_ptr<Signal>> wake;
  {
    // In one step: a watcher woken between two services never reads a mix.
    std::lock_guard lock(mu_);
    status_[""] = status;
    for (auto& [name, s] : status_) s = status;
    wake = LiveWatchersLocked();
  }
  for (const auto& signal : wake) signal->try_send(boost::system::error_code{});
}

std::vector<std::shared_ptr<Signal>> HealthService::LiveWatchersLocked() {
  std::vector<std::shared_ptr<Signal>> live;
  for (const std::weak_ptr<Signal>& w : watchers_) {
    if (std::shared_ptr<Signal> signal = w.lock()) live.push_back(signal);
  }
  return live;
}

HealthService::ServingStatus HealthService::Get(
    const std::string& service) const {
  std::lock_guard lock(mu_);
  auto it = status_.find(service);
  return it == status_.end() ? HealthCheckResponse::SERVICE_UNKNOWN
                             : it->second;
}

Reply<HealthCheckResponse> HealthService::Check(
    ServerContext& context, const HealthCheckRequest& request) {
  ServingStatus status = Get(request.service());
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    // As gRPC's health service answers.
    co_return absl::NotFoundError(
        absl::StrCat("unknown service '", request.service(),
                     "': this server does not host it"));
  }
  HealthCheckResponse response;
  response.set_status(status);
  co_return response;
}

StreamReply HealthService::Watch(ServerContext& context,
                                 const HealthCheckRequest& request,
                                 ServerWriter<HealthCheckResponse>& writer) {
  auto changed =
      std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
  {
    std::lock_guard lock(mu_);
    watchers_.push_back(changed);
  }
  // However the watch ends: the list holds only running watches.
  absl::Cleanup forget = [this, &changed] {
    std::lock_guard lock(mu_);
    std::erase_if(watchers_, [&](const std::weak_ptr<Signal>& w) {
      return w.lock() == changed;
    });
  };
  std::optional<ServingStatus> sent;
  for (;;) {
    ServingStatus now = Get(request.service());
    if (now != sent) {
      HealthCheckResponse response;
      response.set_status(now);
      if (absl::Status s = co_await writer.Write(response); !s.ok()) {
        co_return s;
      }
      sent = now;
    }
    // Until a status changes, or the call ends (its cancellation ends the
    // wait).
    auto [ec] =
        co_await changed->async_receive(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return absl::CancelledError("health watch ended");
  }
}

}  // namespace dynrpc::internal
