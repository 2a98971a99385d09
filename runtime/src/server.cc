#include "dynrpc/server.h"

#include <utility>

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

void Server::AddService(Service& service) {
  if (absl::Status s = dispatcher_->Register(service);
      !s.ok() && add_error_.ok()) {
    add_error_ = s;
  }
}

absl::Status Server::Start() {
  if (started_) return absl::FailedPreconditionError("server already started");
  if (!config_.ok()) return config_.status();
  if (!add_error_.ok()) return add_error_;
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
  if (plane_ != nullptr) plane_->Shutdown();
}

}  // namespace dynrpc
