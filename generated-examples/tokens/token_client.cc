// Asks inference.Worker for two completions: prints the first one's tokens
// as they arrive, cancels the second mid-way, then shows that the worker
// noticed.
//
//   token_client ADDRESS [PROMPT]
#include <chrono>
#include <iostream>
#include <string>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/dynrpc.h"
#include "inference/worker.dynrpc.pb.h"

namespace asio = boost::asio;

namespace {

// Streams one completion to stdout; cancels it after `cancel_after` tokens
// (never when negative). Returns how the call ended.
asio::awaitable<absl::Status> Complete(inference::Worker::Stub& stub,
                                       const std::string& prompt,
                                       int cancel_after) {
  dynrpc::ClientContext context;
  context.set_timeout(std::chrono::seconds(30));
  inference::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_max_tokens(12);
  request.set_token_delay_ms(20);
  dynrpc::ClientReader<inference::Token> tokens = stub.Generate(context, request);
  int received = 0;
  std::cout << "  tokens:";
  for (;;) {
    absl::StatusOr<std::optional<inference::Token>> token = co_await tokens.Read();
    if (!token.ok()) {
      std::cout << "\n";
      co_return token.status();
    }
    if (!token->has_value()) break;
    std::cout << " " << (*token)->text() << std::flush;
    if (++received == cancel_after) {
      std::cout << "\n  client: cancelling after " << received << " tokens\n";
      context.TryCancel();
    }
  }
  std::cout << "\n";
  co_return co_await tokens.Finish();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: token_client ADDRESS [PROMPT]\n";
    return 2;
  }
  std::string prompt =
      argc > 2 ? argv[2] : "the quick brown fox jumps over the lazy dog";
  dynrpc::Runtime runtime;
  absl::StatusOr<std::shared_ptr<dynrpc::Channel>> channel =
      dynrpc::Channel::Create(runtime.executor(), argv[1]);
  if (!channel.ok()) {
    std::cerr << "token_client: " << channel.status().message() << "\n";
    return 2;
  }
  inference::Worker::Stub stub(*channel);
  auto run = [&](auto op) {
    return asio::co_spawn(runtime.executor(), std::move(op), asio::use_future)
        .get();
  };

  std::cout << "generation 1 (to the end):\n";
  absl::Status first = run(Complete(stub, prompt, -1));
  std::cout << "  status: " << first << "\n";

  std::cout << "generation 2 (cancelled mid-way):\n";
  absl::Status second = run(Complete(stub, prompt, 5));
  std::cout << "  status: " << second << "\n";

  // The worker notices at once; Stats answers when it has (or fails with
  // DEADLINE_EXCEEDED if it never does).
  dynrpc::ClientContext context;
  context.set_timeout(std::chrono::seconds(10));
  inference::StatsRequest wait;
  wait.set_wait_for_cancelled(1);
  absl::StatusOr<inference::WorkerStats> got =
      stub.StatsFuture(context, wait).get();
  if (!got.ok()) {
    std::cerr << "token_client: Stats failed: " << got.status() << "\n";
    return 1;
  }
  const inference::WorkerStats& stats = *got;
  std::cout << "worker stats: completed=" << stats.completed()
            << " cancelled=" << stats.cancelled()
            << " tokens_sent=" << stats.tokens_sent() << "\n";
  bool ok = first.ok() && absl::IsCancelled(second) && stats.cancelled() == 1;
  std::cout << (ok ? "the worker noticed the cancellation\n"
                   : "unexpected outcome\n");
  return ok ? 0 : 1;
}
