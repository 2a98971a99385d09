#include "dynrpc/server.h"

#include <csignal>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/signal_set.hpp"
#include "core/dispatcher.h"
#include "network_manager.h"

namespace dynrpc {

Server::Server(boost::asio::any_io_executor executor)
    : executor_(std::move(executor)),
      config_(Config::Global()),
      dispatcher_(std::make_unique<internal::Dispatcher>()) {}

Server::Server(boost::asio::any_io_executor executor, Config config)
    : executor_(std::move(executor)),
      config_(std::move(config)),
      dispatcher_(std::make_unique<internal::Dispatcher>()) {}

Server::~Server() { Shutdown(); }

absl::Status Server::AddService(Service& service) {
  // Runtime threads read the method table once the server has started.
  if (started_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "AddService(", service.full_name(),
        ") after Start(): services must be added before the server starts"));
  }
  absl::Status s = dispatcher_->Register(service);
  if (!s.ok() && add_error_.ok()) add_error_ = s;
  return s;
}

absl::Status Server::Start() {
  if (started_) return absl::FailedPreconditionError("server already started");
  if (!config_.ok()) return config_.status();
  if (!add_error_.ok()) return add_error_;
  dispatcher_->set_max_handlers(config_->limits.max_handlers);
  absl::StatusOr<std::unique_ptr<internal::RequestPlaneServer>> plane =
      internal::CreateRequestPlaneServer(*config_, executor_);
  if (!plane.ok()) return plane.status();
  absl::StatusOr<std::string> address = (*plane)->Start(*dispatcher_);
  if (!address.ok()) return address.status();
  plane_ = std::move(*plane);
  address_ = std::move(*address);
  started_ = true;
  return absl::OkStatus();
}

void Server::Shutdown() {
  {
    std::lock_guard lock(stop_mu_);
    stop_requested_ = true;
  }
  stop_cv_.notify_all();
  std::lock_guard lock(shutdown_mu_);
  if (plane_ != nullptr) plane_->Shutdown();
}

int Server::Wait() {
  boost::asio::signal_set signals(executor_, SIGINT, SIGTERM);
  signals.async_wait(
      [this](const boost::system::error_code& ec, int signal_number) {
        if (ec) return;  // Wait() returned first
        {
          std::lock_guard lock(stop_mu_);
          if (!stop_requested_) stop_signal_ = signal_number;
          stop_requested_ = true;
        }
        stop_cv_.notify_all();
      });
  int signal_number;
  {
    std::unique_lock lock(stop_mu_);
    stop_cv_.wait(lock, [&] { return stop_requested_; });
    signal_number = stop_signal_;
  }
  signals.cancel();
  Shutdown();
  return signal_number;
}

}  // namespace dynrpc
