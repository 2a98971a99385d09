#include "net/socket_server.h"

#include <utility>

#include "boost/asio/strand.hpp"

namespace dynrpc::internal::net {
namespace asio = boost::asio;

SocketServer::SocketServer(ListenSpec spec, const ServerLimits& limits,
                           asio::any_io_executor executor,
                           const char* accept_task_name)
    : spec_(std::move(spec)),
      accept_task_name_(accept_task_name),
      executor_(std::move(executor)),
      connections_(limits.max_connections, spec_.connections_gauge),
      tasks_(executor_) {}

SocketServer::~SocketServer() { Shutdown(); }

absl::StatusOr<std::string> SocketServer::Start(CallHandler& handler) {
  handler_ = &handler;
  absl::StatusOr<Listener> listener =
      Listen(MakeStrand(executor_), spec_);
  if (!listener.ok()) return listener.status();
  acceptor_.emplace(std::move(listener->acceptor));
  tasks_.Spawn(acceptor_->get_executor(), AcceptLoop(), accept_task_name_);
  return std::move(listener->address);
}

void SocketServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  tasks_.CancelAll();
  tasks_.Wait();
}

asio::awaitable<void> SocketServer::AcceptLoop() {
  co_await net::AcceptLoop(
      *acceptor_, connections_, [this] { return tasks_.NewStrand(); },
      [this](asio::ip::tcp::socket socket, asio::any_io_executor strand,
             Admission::Token token) {
        Accepted(std::move(socket), std::move(strand), std::move(token));
      });
  StoppedAccepting();
}

}  // namespace dynrpc::internal::net
