#include "dynrpc/channel.h"

#include <chrono>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "core/deadline.h"
#include "core/request_plane.h"
#include "network_manager.h"

namespace dynrpc {
namespace {

std::string NewRequestId() {
  thread_local absl::BitGen gen;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

}  // namespace

absl::StatusOr<std::shared_ptr<Channel>> Channel::Create(
    boost::asio::any_io_executor executor, std::string target) {
  const absl::StatusOr<Config>& config = Config::Global();
  if (!config.ok()) return config.status();
  return Create(std::move(executor), std::move(target), *config);
}

absl::StatusOr<std::shared_ptr<Channel>> Channel::Create(
    boost::asio::any_io_executor executor, std::string target,
    const Config& config) {
  absl::StatusOr<std::shared_ptr<internal::RequestPlaneClient>> client =
      internal::CreateRequestPlaneClient(config, executor);
  if (!client.ok()) return client.status();
  return std::make_shared<Channel>(std::move(executor), std::move(target),
                                   std::move(*client));
}

Channel::Channel(boost::asio::any_io_executor executor, std::string target,
                 std::shared_ptr<internal::RequestPlaneClient> client)
    : executor_(std::move(executor)),
      target_(std::move(target)),
      client_(std::move(client)) {}

Channel::~Channel() = default;

boost::asio::awaitable<absl::StatusOr<std::string>> Channel::CallUnary(
    ClientContext& context, std::string_view method_path,
    std::string request) {
  internal::CallRequest call;
  call.method = std::string(method_path);
  call.metadata = context.metadata();
  if (!FindMetadata(call.metadata, "x-request-id")) {
    call.metadata.emplace_back("x-request-id", NewRequestId());
  }
  Clock::time_point deadline = context.deadline().value_or(
      Clock::now() + client_->default_timeout());
  call.deadline = deadline;
  call.payload = std::move(request);
  std::string expired =
      context.deadline()
          ? absl::StrFormat("call to %s exceeded its deadline", method_path)
          : absl::StrFormat(
                "call to %s exceeded the default timeout of %d ms "
                "(DYN_TCP_REQUEST_TIMEOUT)",
                method_path,
                std::chrono::duration_cast<std::chrono::milliseconds>(
                    client_->default_timeout())
                    .count());
  absl::StatusOr<std::string> result = co_await internal::WithDeadline(
      client_->Unary(target_, std::move(call)), deadline, expired);
  // The server enforces the same deadline and may report it first; past the
  // deadline, say which limit it was, whichever side noticed.
  if (absl::IsDeadlineExceeded(result.status()) && Clock::now() >= deadline) {
    co_return absl::DeadlineExceededError(std::move(expired));
  }
  co_return result;
}

}  // namespace dynrpc
