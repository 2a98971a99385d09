#include "dynrpc/server.h"

#include <csignal>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "boost/asio/signal_set.hpp"
#include "core/dispatcher.h"
#include "core/log.h"
#include "discovery/discovery.h"
#include "health/health_service.h"
#include "reflection/reflection_service.h"
#include "system/system_server.h"
#include "network_manager.h"

namespace dynrpc {
namespace {

uint64_t NewInstanceId() {
  thread_local absl::BitGen gen;
  uint64_t id = 0;
  while (id == 0) id = absl::Uniform<uint64_t>(gen);
  return id;
}

using grpc::health::v1::HealthCheckResponse;

// The limits a server runs with, by the variables that set them.
std::string EffectiveLimits(const Config& c) {
  std::string plane;
  switch (c.request_plane) {
    case RequestPlaneKind::kTcp:
      plane = absl::StrCat(
          "DYN_TCP_MAX_MESSAGE_SIZE=", c.tcp.max_message_size,
          " DYN_TCP_MAX_CALLS_PER_CONNECTION=", c.tcp.max_calls_per_connection,
          " DYN_TCP_MAX_QUEUED_BYTES=", c.tcp.max_queued_bytes,
          " DYN_TCP_READ_TIMEOUT=", c.tcp.read_timeout.count(), "ms");
      break;
    case RequestPlaneKind::kHttp:
      plane = absl::StrCat(
          "DYN_HTTP_MAX_MESSAGE_SIZE=", c.http.max_message_size,
          " DYN_HTTP2_MAX_CONCURRENT_STREAMS=", c.http.max_concurrent_streams,
          " DYN_HTTP2_MAX_FRAME_SIZE=", c.http.max_frame_size);
      break;
    case RequestPlaneKind::kNats:
      plane = c.nats.max_message_size == 0
                  ? std::string("DYN_NATS_MAX_MESSAGE_SIZE=unset (the NATS "
                                "server's max_payload)")
                  : absl::StrCat("DYN_NATS_MAX_MESSAGE_SIZE=",
                                 c.nats.max_message_size);
      break;
  }
  return absl::StrCat(plane, " DYN_SERVER_MAX_CONNECTIONS=",
                      c.limits.max_connections, " DYN_SERVER_MAX_HANDLERS=",
                      c.limits.max_handlers,
                      " DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT=",
                      c.graceful_shutdown_timeout.count(), "ms");
}

// A drain's last step: no call for this long, and the server closes.
constexpr std::chrono::milliseconds kDrainQuietPeriod{500};

}  // namespace

Server::Server(boost::asio::any_io_executor executor)
    : Server(std::move(executor), Config()) {
  config_ = Config::Global();
}

Server::Server(boost::asio::any_io_executor executor, Config config)
    : executor_(std::move(executor)),
      config_(std::move(config)),
      dispatcher_(std::make_unique<internal::Dispatcher>(executor_)),
      health_(std::make_unique<internal::HealthService>()),
      reflection_(std::make_unique<internal::ReflectionServices>()),
      instance_id_(NewInstanceId()) {}

Server::~Server() {
  Shutdown();
  if (system_ != nullptr) system_->RemoveHealth(health_.get());
}

namespace {
// Every service `dispatcher` serves ("pkg.Service"), sorted: what
// reflection lists.
std::vector<std::string> ServedServices(const internal::Dispatcher& dispatcher) {
  std::set<std::string> names;
  for (const std::string& path : dispatcher.MethodPaths()) {
    std::size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 1) {
      names.insert(path.substr(1, slash - 1));
    }
  }
  return std::vector<std::string>(names.begin(), names.end());
}
}  // namespace

absl::Status Server::AddService(Service& service) {
  // Runtime threads read the method table once the server has started.
  if (started_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "AddService(", service.full_name(),
        ") after Start(): services must be added before the server starts"));
  }
  absl::Status s = dispatcher_->Register(service);
  if (!s.ok() && add_error_.ok()) add_error_ = s;
  if (s.ok()) services_.push_back(service.full_name());
  return s;
}

absl::Status Server::Start() {
  if (started_) return absl::FailedPreconditionError("server already started");
  if (!config_.ok()) return config_.status();
  if (!add_error_.ok()) return add_error_;
  // The health service, unless the application brought its own.
  if (dispatcher_->FindMethod("/grpc.health.v1.Health/Check") == nullptr) {
    if (absl::Status s = dispatcher_->Register(*health_); !s.ok()) return s;
  }
  // Reflection, both versions, unless the application brought its own.
  for (Service* reflection : std::initializer_list<Service*>{
           &reflection_->v1, &reflection_->v1alpha}) {
    std::string info = "/" + reflection->full_name() + "/ServerReflectionInfo";
    if (dispatcher_->FindMethod(info) != nullptr) continue;
    if (absl::Status s = dispatcher_->Register(*reflection); !s.ok()) return s;
  }
  reflection_->index.set_services(ServedServices(*dispatcher_));
  if (config_->system_port) {
    absl::StatusOr<internal::SystemServer*> system =
        internal::SystemServer::StartFor(*config_);
    if (!system.ok()) return system.status();
    system_ = *system;
    dispatcher_->set_metrics(RequestPlaneName(config_->request_plane));
  }
  dispatcher_->set_max_handlers(config_->limits.max_handlers);
  dispatcher_->set_compression(internal::CompressionPolicy{
      config_->compression, config_->compression_min_bytes});
  absl::StatusOr<std::unique_ptr<internal::RequestPlaneServer>> plane =
      internal::CreateRequestPlaneServer(*config_, executor_);
  if (!plane.ok()) return plane.status();
  absl::StatusOr<std::string> address = (*plane)->Start(*dispatcher_);
  if (!address.ok()) return address.status();
  plane_ = std::move(*plane);
  address_ = std::move(*address);
  started_ = true;
  for (const std::string& service : services_) {
    health_->Set(service, HealthCheckResponse::SERVING);
  }
  health_->Set("", HealthCheckResponse::SERVING);
  if (system_ != nullptr) system_->AddHealth(health_.get());

  if (config_->discovery.register_servers && !services_.empty()) {
    absl::StatusOr<std::shared_ptr<internal::Discovery>> discovery =
        internal::CreateDiscovery(*config_, executor_);
    absl::Status failed = discovery.status();
    if (discovery.ok()) {
      std::vector<Instance> instances;
      for (const std::string& service : services_) {
        Instance& i = instances.emplace_back();
        i.service = service;
        i.id = instance_id_;
        i.plane = std::string(RequestPlaneName(config_->request_plane));
        i.address = address_;
        i.start_time_unix_ms = internal::ProcessStartUnixMillis();
      }
      absl::StatusOr<std::unique_ptr<internal::Registration>> registration =
          (*discovery)->Register(std::move(instances));
      if (registration.ok()) registration_ = *std::move(registration);
      failed = registration.status();
    }
    if (!failed.ok()) {
      Shutdown();
      return absl::Status(
          failed.code(),
          absl::StrCat("cannot register the server's services: ",
                       failed.message(),
                       " (DYN_DISCOVERY_REGISTER=false starts without)"));
    }
    discovery_ = *std::move(discovery);
  }
  // One line that shows a misconfiguration at a glance.
  DYNRPC_LOG(kInfo, "dynrpc::server", "serving ",
             services_.empty() ? std::string("no service")
                               : absl::StrJoin(services_, ", "),
             " on the ", std::string(RequestPlaneName(config_->request_plane)),
             " request plane at ", address_, " (instance ",
             absl::StrFormat("%016x", instance_id_), "; discovery: ",
             discovery_ != nullptr
                 ? absl::StrCat(discovery_->Describe(), ", namespace ",
                                config_->discovery.name_space)
                 : std::string("not registered"),
             "; limits: ", EffectiveLimits(*config_), ")");
  return absl::OkStatus();
}

bool Server::Drain(std::optional<std::chrono::milliseconds> grace) {
  {
    std::lock_guard lock(shutdown_mu_);
    if (plane_ == nullptr || !started_ || draining_) return true;
    draining_ = true;
    DYNRPC_LOG(kInfo, "dynrpc::server", "draining ", address_,
               ": NOT_SERVING, leaving discovery, refusing new calls");
    // Refusing first: whoever sees NOT_SERVING (or the entry gone) finds
    // new calls refused too.
    dispatcher_->StartDrain();
    health_->SetAll(HealthCheckResponse::NOT_SERVING);
    if (registration_ != nullptr) registration_->Deregister();
  }
  // Not under shutdown_mu_: a Shutdown() meanwhile ends these waits.
  Clock::time_point deadline =
      Clock::now() + grace.value_or(config_->graceful_shutdown_timeout);
  bool finished = dispatcher_->WaitIdle(deadline);
  // Then until callers stop coming (they learn of the drain from
  // discovery, or from a refusal they retry elsewhere) and the last
  // handler's answer has had time to go out: closing the connections at
  // once could cut it off, and its caller would take the call for
  // unprocessed.
  if (finished) dispatcher_->WaitQuiet(kDrainQuietPeriod, deadline);
  if (finished) {
    DYNRPC_LOG(kInfo, "dynrpc::server", "drained ", address_,
               ": every call finished");
  } else {
    DYNRPC_LOG(kWarn, "dynrpc::server", "drain of ", address_,
               " cut short (DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT or "
               "Shutdown()): the calls still running are cancelled");
  }
  Shutdown();
  return finished;
}

void Server::Shutdown() {
  {
    std::lock_guard lock(stop_mu_);
    stop_requested_ = true;
  }
  stop_cv_.notify_all();
  dispatcher_->EndDrainWaits();
  std::lock_guard lock(shutdown_mu_);
  health_->SetAll(HealthCheckResponse::NOT_SERVING);
  if (registration_ != nullptr) registration_->Deregister();
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
  if (signal_number != 0) Drain();
  Shutdown();
  return signal_number;
}

}  // namespace dynrpc
