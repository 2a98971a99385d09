// Serves inference.Worker: streams tokens, and notices when a caller
// cancels a generation mid-way.
//
//   token_worker [--address-file=PATH]
#include <atomic>
#include <memory>
#include <mutex>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/experimental/concurrent_channel.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "common/example_server.h"
#include "dynrpc/dynrpc.h"
#include "inference/worker.dynrpc.pb.h"

namespace asio = boost::asio;

namespace {

class WorkerImpl final : public inference::Worker::Service {
 public:
  asio::awaitable<absl::Status> Generate(
      dynrpc::ServerContext& context, const inference::GenerateRequest& request,
      dynrpc::ServerWriter<inference::Token>& writer) override {
    std::vector<std::string> words =
        absl::StrSplit(request.prompt(), ' ', absl::SkipEmpty());
    if (words.empty()) words = {"..."};
    asio::steady_timer compute(co_await asio::this_coro::executor);
    for (int i = 0; i < request.max_tokens(); ++i) {
      // "Computing" the token: a wait that the caller's cancellation ends.
      compute.expires_after(std::chrono::milliseconds(request.token_delay_ms()));
      co_await compute.async_wait(asio::as_tuple(asio::use_awaitable));
      inference::Token token;
      token.set_index(i);
      token.set_text(words[i % words.size()]);
      if (context.IsCancelled() || !(co_await writer.Write(token)).ok()) {
        NoteCancelled();
        std::cout << "token_worker: generation cancelled by its caller after "
                  << i << " tokens" << std::endl;
        co_return absl::CancelledError("caller went away");
      }
      ++tokens_sent_;
    }
    ++completed_;
    co_return absl::OkStatus();
  }

  asio::awaitable<absl::StatusOr<inference::WorkerStats>> Stats(
      dynrpc::ServerContext&, const inference::StatsRequest& request) override {
    while (cancelled_ < request.wait_for_cancelled()) {
      auto changed = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
      {
        std::lock_guard lock(mu_);
        if (cancelled_ >= request.wait_for_cancelled()) break;
        waiters_.push_back(changed);
      }
      auto [ec] = co_await changed->async_receive(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return absl::CancelledError("Stats cancelled");
    }
    inference::WorkerStats stats;
    stats.set_completed(completed_);
    stats.set_cancelled(cancelled_);
    stats.set_tokens_sent(tokens_sent_);
    co_return stats;
  }

 private:
  using Signal = asio::experimental::concurrent_channel<void(
      boost::system::error_code)>;

  void NoteCancelled() {
    std::vector<std::shared_ptr<Signal>> waiters;
    {
      std::lock_guard lock(mu_);
      ++cancelled_;
      waiters.swap(waiters_);
    }
    for (auto& w : waiters) w->try_send(boost::system::error_code{});
  }

  std::atomic<int64_t> completed_{0}, cancelled_{0}, tokens_sent_{0};
  std::mutex mu_;
  std::vector<std::shared_ptr<Signal>> waiters_;  // Stats calls waiting
};

}  // namespace

int main(int argc, char** argv) {
  WorkerImpl worker;
  return examples::ServeUntilSignalled("token_worker", worker, argc, argv);
}
