#include "tcp/tcp_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/ip/address.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "tcp/limits.h"

namespace dynrpc::internal::tcp {

namespace asio = boost::asio;
using asio::ip::tcp;

TcpServer::TcpServer(TcpConfig config, asio::any_io_executor executor)
    : config_(std::move(config)),
      executor_(std::move(executor)),
      tasks_(executor_) {}

TcpServer::~TcpServer() { Shutdown(); }

absl::StatusOr<std::string> TcpServer::Start(CallHandler& handler) {
  handler_ = &handler;
  std::string host =
      config_.host.empty() ? DetectHostAddress() : config_.host;
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    // A host name: take its first address.
    tcp::resolver resolver(executor_);
    auto results = resolver.resolve(host, "0", ec);
    if (ec || results.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot resolve DYN_TCP_RPC_HOST=", host, ": ", ec.message()));
    }
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, config_.port);
  acceptor_.emplace(asio::make_strand(executor_));
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::string where = address.is_v6()
                            ? absl::StrCat("[", host, "]:", config_.port)
                            : absl::StrCat(host, ":", config_.port);
    std::string hint =
        config_.port == 0
            ? ""
            : absl::StrCat(" (port ", config_.port,
                           " set by DYN_TCP_RPC_PORT; unset it or use 0 to "
                           "let the OS pick a free port)");
    acceptor_.reset();
    std::string why = ec == asio::error::address_in_use
                          ? std::string("address already in use")
                          : ec.message();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", where, ": ", why, hint));
  }
  uint16_t port = acceptor_->local_endpoint(ec).port();
  tasks_.Spawn(acceptor_->get_executor(), AcceptLoop(), "tcp accept loop");
  return address.is_v6() ? absl::StrCat("[", address.to_string(), "]:", port)
                         : absl::StrCat(address.to_string(), ":", port);
}

void TcpServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  tasks_.CancelAll();
  tasks_.Wait();
}

asio::awaitable<void> TcpServer::AcceptLoop() {
  co_await asio::this_coro::throw_if_cancelled(false);
  asio::steady_timer backoff(acceptor_->get_executor());
  for (;;) {
    asio::any_io_executor strand = tasks_.NewStrand();
    auto [ec, socket] = co_await acceptor_->async_accept(
        strand, asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted) break;
    if (ec) {
      // Out of file descriptors, or the peer reset before we accepted:
      // pause briefly rather than spin on the error.
      backoff.expires_after(std::chrono::milliseconds(10));
      auto [wait_ec] =
          co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
      if (wait_ec) break;
      continue;
    }
    auto connection = std::make_shared<FramedSocket>(std::move(socket),
                                                     config_.max_message_size);
    tasks_.Spawn(strand, FramedSocket::WriteLoop(connection),
                 "tcp server writer");
    tasks_.Spawn(strand, ServeConnection(connection), "tcp server reader");
  }
  boost::system::error_code ignored;
  acceptor_->close(ignored);
}

asio::awaitable<void> TcpServer::ServeConnection(
    std::shared_ptr<FramedSocket> connection) {
  co_await asio::this_coro::throw_if_cancelled(false);
  for (;;) {
    absl::StatusOr<InFrame> frame = co_await connection->ReadFrame();
    if (!frame.ok()) break;  // peer gone, or a header we cannot trust
    const FrameHeader& header = frame->header;
    if (header.type == FrameType::kCancel) {
      // TODO(cleanup): cancel the running handler (call-semantics issue).
      continue;
    }
    if (header.type != FrameType::kRequest) break;  // protocol violation
    if (frame->oversized) {
      SendError(*connection, header.call_id,
                OversizedError("request", header, config_.max_message_size));
      continue;
    }
    absl::StatusOr<RequestHead> head = DecodeRequestHead(frame->head);
    if (!head.ok()) {
      SendError(*connection, header.call_id, head.status());
      continue;
    }
    CallRequest request;
    request.method = std::move(head->method);
    request.metadata = std::move(head->metadata);
    if (head->timeout_us != 0) {
      request.deadline =
          Clock::now() + std::chrono::microseconds(head->timeout_us);
    }
    request.payload = std::move(frame->payload);
    tasks_.Spawn(tasks_.NewStrand(),
                 ServeCall(connection, header.call_id, std::move(request)),
                 "tcp server call");
  }
  connection->Close();
}

asio::awaitable<void> TcpServer::ServeCall(
    std::shared_ptr<FramedSocket> connection, uint64_t call_id,
    CallRequest request) {
  absl::StatusOr<std::string> reply =
      co_await handler_->HandleUnary(std::move(request), connection->peer());
  if (reply.ok() && reply->size() > config_.max_message_size) {
    reply = OversizedError("response", reply->size(),
                           config_.max_message_size);
  }
  if (!reply.ok()) {
    SendError(*connection, call_id, reply.status());
    co_return;
  }
  absl::StatusOr<std::string> prefix =
      EncodeResponsePrefix(call_id, ResponseHead{}, reply->size());
  if (!prefix.ok()) {
    SendError(*connection, call_id, prefix.status());
    co_return;
  }
  connection->Send(std::move(*prefix), std::move(*reply));
}

void TcpServer::SendError(FramedSocket& connection, uint64_t call_id,
                          const absl::Status& status) {
  ResponseHead head;
  head.code = status.code();
  head.message = std::string(status.message());
  absl::StatusOr<std::string> prefix = EncodeResponsePrefix(call_id, head, 0);
  if (!prefix.ok()) {
    // The message itself is too large to send: send the code alone.
    head.message.resize(1024);
    prefix = EncodeResponsePrefix(call_id, head, 0);
  }
  if (prefix.ok()) connection.Send(std::move(*prefix));
}

}  // namespace dynrpc::internal::tcp
