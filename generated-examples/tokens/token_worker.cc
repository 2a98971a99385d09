// Serves inference.Worker: streams tokens, and notices when a caller
// cancels a generation mid-way.
//
//   token_worker [--address-file=PATH]
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/experimental/concurrent_channel.hpp"
#include "boost/asio/signal_set.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
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
  std::string address_file;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--address-file=")) {
      address_file = arg.substr(std::string_view("--address-file=").size());
    } else {
      std::cerr << "usage: token_worker [--address-file=PATH]\n";
      return 2;
    }
  }
  const absl::StatusOr<dynrpc::Config>& config = dynrpc::Config::Global();
  if (!config.ok()) {
    std::cerr << "token_worker: " << config.status().message() << "\n";
    return 2;
  }
  dynrpc::Runtime runtime;
  WorkerImpl worker;
  dynrpc::Server server(runtime.executor(), *config);
  server.AddService(worker);
  if (absl::Status s = server.Start(); !s.ok()) {
    std::cerr << "token_worker: " << s.message() << "\n";
    return 1;
  }
  std::cout << "token_worker: listening on " << server.address() << std::endl;
  if (!address_file.empty()) {
    std::ofstream(address_file + ".tmp") << server.address() << "\n";
    std::rename((address_file + ".tmp").c_str(), address_file.c_str());
  }
  std::promise<void> stop;
  asio::signal_set signals(runtime.executor(), SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) stop.set_value();
  });
  stop.get_future().wait();
  server.Shutdown();
  return 0;
}
