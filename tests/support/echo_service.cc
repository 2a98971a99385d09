#include "support/echo_service.h"

#include <algorithm>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace dynrpc::testing {

namespace asio = boost::asio;

asio::awaitable<absl::StatusOr<EchoReply>> EchoServiceImpl::Echo(
    ServerContext& context, const EchoRequest& request) {
  {
    std::lock_guard lock(mu_);
    ++calls_;
  }
  EchoReply reply;
  constexpr std::string_view kMetadataPrefix = "metadata:";
  if (request.text().starts_with(kMetadataPrefix)) {
    std::string key = request.text().substr(kMetadataPrefix.size());
    reply.set_text(std::string(
        FindMetadata(context.client_metadata(), key).value_or("<absent>")));
  } else {
    reply.set_text(request.text());
  }
  reply.set_payload(request.payload());
  co_return reply;
}

asio::awaitable<absl::StatusOr<EchoReply>> EchoServiceImpl::Fail(
    ServerContext& context, const FailRequest& request) {
  {
    std::lock_guard lock(mu_);
    ++calls_;
  }
  co_return absl::Status(static_cast<absl::StatusCode>(request.code()),
                         request.message());
}

asio::awaitable<absl::StatusOr<EchoReply>> EchoServiceImpl::Block(
    ServerContext& context, const EchoRequest& request) {
  auto gate = std::make_shared<Gate>(co_await asio::this_coro::executor, 1);
  {
    std::lock_guard lock(mu_);
    ++calls_;
    gates_.push_back(gate);
    max_blocked_ = std::max<int>(max_blocked_, gates_.size());
  }
  changed_.notify_all();
  absl::Cleanup ended = [this, gate] {
    {
      std::lock_guard lock(mu_);
      std::erase(gates_, gate);
      ++blocks_ended_;
    }
    changed_.notify_all();
  };
  if (on_block_) on_block_();
  auto [ec] = co_await gate->async_receive(asio::as_tuple(asio::use_awaitable));
  if (ec) co_return absl::CancelledError("Block was cancelled");
  EchoReply reply;
  reply.set_text(request.text());
  co_return reply;
}

asio::awaitable<absl::StatusOr<EchoReply>> EchoServiceImpl::Sized(
    ServerContext& context, const SizeRequest& request) {
  {
    std::lock_guard lock(mu_);
    ++calls_;
  }
  EchoReply reply;
  reply.set_payload(std::string(request.reply_payload_bytes(), 'r'));
  co_return reply;
}

void EchoServiceImpl::WaitForBlocked(int n) {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return static_cast<int>(gates_.size()) >= n; });
}

void EchoServiceImpl::WaitForBlocksEnded(int n) {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return blocks_ended_ >= n; });
}

bool EchoServiceImpl::ReleaseOne() {
  std::lock_guard lock(mu_);
  if (gates_.empty()) return false;
  gates_.front()->try_send(boost::system::error_code{});
  gates_.erase(gates_.begin());
  return true;
}

void EchoServiceImpl::ReleaseAll() {
  std::lock_guard lock(mu_);
  for (auto& gate : gates_) gate->try_send(boost::system::error_code{});
  gates_.clear();
}

int EchoServiceImpl::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

int EchoServiceImpl::blocks_ended() const {
  std::lock_guard lock(mu_);
  return blocks_ended_;
}

int EchoServiceImpl::max_blocked() const {
  std::lock_guard lock(mu_);
  return max_blocked_;
}

}  // namespace dynrpc::testing
