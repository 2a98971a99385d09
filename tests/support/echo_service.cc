#include "support/echo_service.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <tuple>

#include "absl/cleanup/cleanup.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace dynrpc::testing {

namespace asio = boost::asio;

namespace {
// A caller's "x-compress: <algorithm>" asks the handler to compress its
// responses with it (ServerContext::set_compression).
void CompressAsAsked(ServerContext& context) {
  if (auto name = FindMetadata(context.client_metadata(), "x-compress")) {
    if (std::optional<Compression> c = ParseCompression(*name)) {
      context.set_compression(*c);
    }
  }
}
}  // namespace

asio::awaitable<absl::StatusOr<EchoReply>> EchoServiceImpl::Echo(
    ServerContext& context, const EchoRequest& request) {
  {
    std::lock_guard lock(mu_);
    ++calls_;
  }
  CompressAsAsked(context);
  if (request.delay_ms() > 0) {
    asio::steady_timer timer(co_await asio::this_coro::executor,
                             std::chrono::milliseconds(request.delay_ms()));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return absl::CancelledError("Echo's delay was cancelled");
  }
  EchoReply reply;
  if (auto echo = FindMetadata(context.client_metadata(), "x-echo")) {
    context.AddInitialMetadata("x-echo-initial", std::string(*echo));
    context.AddTrailingMetadata("x-echo-trailing", std::string(*echo));
  }
  if (request.text() == "deadline-ms") {
    // The time the handler has left, as a chain would pass it on.
    reply.set_text(context.deadline()
                       ? std::to_string(std::chrono::duration_cast<
                                            std::chrono::milliseconds>(
                                            *context.deadline() - Clock::now())
                                            .count())
                       : "none");
    co_return reply;
  }
  constexpr std::string_view kMetadataPrefix = "metadata:";
  if (request.text().starts_with(kMetadataPrefix)) {
    std::string key = request.text().substr(kMetadataPrefix.size());
    reply.set_text(std::string(
        FindMetadata(context.client_metadata(), key).value_or("<absent>")));
  } else {
    reply.set_text(request.text());
  }
  if (!request.no_payload_back()) reply.set_payload(request.payload());
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
    last_block_time_left_ =
        context.deadline()
            ? std::optional<Clock::duration>(*context.deadline() - Clock::now())
            : std::nullopt;
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
  // "ignore-cancel": a handler that does not honour cancellation (blocking
  // work, say) and ends only when released.
  while (ec && request.text() == "ignore-cancel") {
    co_await asio::this_coro::reset_cancellation_state();
    std::tie(ec) =
        co_await gate->async_receive(asio::as_tuple(asio::use_awaitable));
  }
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
  if (auto echo = FindMetadata(context.client_metadata(), "x-echo")) {
    context.AddInitialMetadata("x-echo-initial", std::string(*echo));
  }
  CompressAsAsked(context);
  EchoReply reply;
  reply.set_payload(std::string(request.reply_payload_bytes(), 'r'));
  co_return reply;
}

asio::awaitable<absl::Status> EchoServiceImpl::Generate(
    ServerContext& context, const StreamRequest& request,
    ServerWriter<StreamMessage>& writer) {
  if (auto echo = FindMetadata(context.client_metadata(), "x-echo")) {
    context.AddInitialMetadata("x-echo-initial", std::string(*echo));
    context.AddTrailingMetadata("x-echo-trailing", std::string(*echo));
  }
  CompressAsAsked(context);
  const std::string payload(request.payload_bytes(), 'g');
  for (int64_t i = 0; request.forever() || i < request.count(); ++i) {
    if (request.fail_after() > 0 && i == request.fail_after()) {
      co_return absl::FailedPreconditionError("failed after " +
                                              std::to_string(i) + " messages");
    }
    StreamMessage message;
    message.set_sequence(i);
    message.set_payload(payload);
    absl::Status written = co_await writer.Write(message);
    if (!written.ok()) {
      NoteCancelledStream();
      co_return written;
    }
    {
      std::lock_guard lock(mu_);
      ++generated_;
    }
    changed_.notify_all();
  }
  if (request.then_wait_ms() > 0) {
    // The first wait ends early if the call is cancelled meanwhile (without
    // an exception); the second, a later co_await, must then not run on.
    asio::steady_timer timer(co_await asio::this_coro::executor,
                             std::chrono::milliseconds(request.then_wait_ms()));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    absl::Cleanup note = [this] {
      {
        std::lock_guard lock(mu_);
        ++later_waits_ended_;
      }
      changed_.notify_all();
    };
    timer.expires_after(std::chrono::milliseconds(request.then_wait_ms()));
    co_await timer.async_wait(asio::use_awaitable);  // throws once cancelled
  }
  co_return absl::OkStatus();
}

asio::awaitable<absl::StatusOr<StreamSummary>> EchoServiceImpl::Collect(
    ServerContext& context, ServerReader<StreamMessage>& reader) {
  StreamSummary summary;
  summary.set_in_order(true);
  for (;;) {
    absl::StatusOr<std::optional<StreamMessage>> message = co_await reader.Read();
    if (!message.ok()) {
      NoteCancelledStream();
      co_return message.status();
    }
    if (!message->has_value()) break;
    if ((*message)->sequence() != summary.count()) summary.set_in_order(false);
    summary.set_count(summary.count() + 1);
    summary.set_bytes(summary.bytes() + (*message)->payload().size());
    summary.mutable_texts()->append((*message)->text());
  }
  co_return summary;
}

asio::awaitable<absl::Status> EchoServiceImpl::Chat(
    ServerContext& context,
    ServerReaderWriter<StreamMessage, StreamMessage>& stream) {
  for (;;) {
    absl::StatusOr<std::optional<StreamMessage>> message = co_await stream.Read();
    if (!message.ok()) {
      NoteCancelledStream();
      co_return message.status();
    }
    if (!message->has_value()) co_return absl::OkStatus();
    CompressAsAsked(context);
    // "uncompressed" in a message's text: this one goes as it is.
    WriteOptions options;
    options.no_compression = (*message)->text() == "uncompressed";
    absl::Status written = co_await stream.Write(**message, options);
    if (!written.ok()) {
      NoteCancelledStream();
      co_return written;
    }
  }
}

asio::awaitable<absl::StatusOr<EchoReply>> EchoServiceImpl::Relay(
    ServerContext& context, const EchoRequest& request) {
  absl::StatusOr<std::shared_ptr<Channel>> channel = Channel::Create(
      co_await asio::this_coro::executor, request.text(), downstream_);
  if (!channel.ok()) co_return channel.status();
  EchoService::Stub downstream(*channel);
  ClientContext next;
  if (context.deadline()) next.set_deadline(*context.deadline());  // pass it on
  EchoRequest block;
  co_return co_await downstream.Block(next, block);
}

void EchoServiceImpl::NoteCancelledStream() {
  {
    std::lock_guard lock(mu_);
    ++cancelled_streams_;
  }
  changed_.notify_all();
}

int64_t EchoServiceImpl::generated() const {
  std::lock_guard lock(mu_);
  return generated_;
}

void EchoServiceImpl::WaitForGenerated(int64_t n) {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return generated_ >= n; });
}

void EchoServiceImpl::WaitForCancelledStreams(int n) {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return cancelled_streams_ >= n; });
}

bool EchoServiceImpl::WaitForLaterWaitsEnded(int n,
                                             std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout,
                           [&] { return later_waits_ended_ >= n; });
}

int EchoServiceImpl::cancelled_streams() const {
  std::lock_guard lock(mu_);
  return cancelled_streams_;
}

void EchoServiceImpl::WaitForBlocked(int n) {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return static_cast<int>(gates_.size()) >= n; });
}

void EchoServiceImpl::WaitForBlocksEnded(int n) {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return blocks_ended_ >= n; });
}

bool EchoServiceImpl::WaitForBlocked(int n,
                                     std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(
      lock, timeout, [&] { return static_cast<int>(gates_.size()) >= n; });
}

bool EchoServiceImpl::WaitForBlocksEnded(int n,
                                         std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] { return blocks_ended_ >= n; });
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

std::optional<Clock::duration> EchoServiceImpl::last_block_time_left() const {
  std::lock_guard lock(mu_);
  return last_block_time_left_;
}

int EchoServiceImpl::max_blocked() const {
  std::lock_guard lock(mu_);
  return max_blocked_;
}

}  // namespace dynrpc::testing
