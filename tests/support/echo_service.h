// EchoService as the end-to-end tests use it, with hooks to observe and
// release blocked calls.
#ifndef DYNRPC_TESTS_SUPPORT_ECHO_SERVICE_H_
#define DYNRPC_TESTS_SUPPORT_ECHO_SERVICE_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "boost/asio/experimental/concurrent_channel.hpp"
#include "dynrpc/testing/echo.dynrpc.pb.h"

namespace dynrpc::testing {

class EchoServiceImpl final : public EchoService::Service {
 public:
  boost::asio::awaitable<absl::StatusOr<EchoReply>> Echo(
      ServerContext& context, const EchoRequest& request) override;
  boost::asio::awaitable<absl::StatusOr<EchoReply>> Fail(
      ServerContext& context, const FailRequest& request) override;
  boost::asio::awaitable<absl::StatusOr<EchoReply>> Block(
      ServerContext& context, const EchoRequest& request) override;
  boost::asio::awaitable<absl::StatusOr<EchoReply>> Sized(
      ServerContext& context, const SizeRequest& request) override;
  boost::asio::awaitable<absl::Status> Generate(
      ServerContext& context, const StreamRequest& request,
      ServerWriter<StreamMessage>& writer) override;
  boost::asio::awaitable<absl::StatusOr<StreamSummary>> Collect(
      ServerContext& context, ServerReader<StreamMessage>& reader) override;
  boost::asio::awaitable<absl::Status> Chat(
      ServerContext& context,
      ServerReaderWriter<StreamMessage, StreamMessage>& stream) override;
  boost::asio::awaitable<absl::StatusOr<EchoReply>> Relay(
      ServerContext& context, const EchoRequest& request) override;

  // The configuration Relay calls downstream with (its plane).
  void set_downstream_config(Config config) { downstream_ = std::move(config); }

  // Messages Generate handlers have written so far (Write returned OK).
  int64_t generated() const;
  // Blocks the calling thread until generated() >= n.
  void WaitForGenerated(int64_t n);
  // Streaming handlers that ended because the call was over (a Read or
  // Write failed, or the context said cancelled); blocks until there are n.
  void WaitForCancelledStreams(int n);
  int cancelled_streams() const;
  // Generate handlers with then_wait_ms whose second (later) wait has ended,
  // by its timer or by cancellation; waits until there are n, giving up
  // after `timeout`: whether the count was reached.
  bool WaitForLaterWaitsEnded(int n, std::chrono::milliseconds timeout);

  // A Block call whose text is "ignore-cancel" ignores cancellation: it
  // ends only when released.
  // Called (on a runtime thread) when a Block call starts waiting.
  void set_on_block(std::function<void()> f) { on_block_ = std::move(f); }

  // Blocks the calling thread until `n` Block calls are waiting at once
  // (released calls no longer count as waiting).
  void WaitForBlocked(int n);
  // Blocks the calling thread until `n` Block calls have ended in total.
  void WaitForBlocksEnded(int n);
  // The two waits above, giving up after `timeout`: whether the count was
  // reached.
  bool WaitForBlocked(int n, std::chrono::milliseconds timeout);
  bool WaitForBlocksEnded(int n, std::chrono::milliseconds timeout);
  // Lets one waiting Block call return (true), or none is waiting (false).
  bool ReleaseOne();
  // Lets every waiting Block call return.
  void ReleaseAll();

  // Calls that reached any handler; Block calls that ended, either way.
  int calls() const;
  int blocks_ended() const;
  // The most Block calls ever waiting at once.
  int max_blocked() const;
  // The time the last Block call had left when it started (its deadline as
  // the handler saw it), or nullopt when it had none.
  std::optional<Clock::duration> last_block_time_left() const;

 private:
  void NoteCancelledStream();

  using Gate = boost::asio::experimental::concurrent_channel<void(
      boost::system::error_code)>;

  std::function<void()> on_block_;
  Config downstream_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::shared_ptr<Gate>> gates_;
  int calls_ = 0;
  int64_t generated_ = 0;
  int cancelled_streams_ = 0;
  int later_waits_ended_ = 0;
  int blocks_ended_ = 0;
  int max_blocked_ = 0;
  std::optional<Clock::duration> last_block_time_left_;
};

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_ECHO_SERVICE_H_
