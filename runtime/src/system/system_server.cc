#include "system/system_server.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/metrics.h"
#include "health/health_service.h"

namespace dynrpc::internal {

namespace {

std::mutex g_start_mu;
SystemServer* g_running = nullptr;  // under g_start_mu; never deleted

// A listening socket on host:port, or why not.
absl::StatusOr<int> Listen(const std::string& host, uint16_t port,
                           std::string* address, uint16_t* bound) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
      rc != 0) {
    return absl::UnavailableError(absl::StrCat(
        "DYN_SYSTEM_HOST=", host, " does not resolve: ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0) {
      sockaddr_storage local{};
      socklen_t len = sizeof(local);
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
      *bound = ntohs(local.ss_family == AF_INET6
                         ? reinterpret_cast<sockaddr_in6*>(&local)->sin6_port
                         : reinterpret_cast<sockaddr_in*>(&local)->sin_port);
      const bool v6 = host.find(':') != std::string::npos;
      *address = absl::StrCat(v6 ? "[" : "", host, v6 ? "]" : "", ":", *bound);
      break;
    }
    why = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(
        "the system server cannot listen on ", host, ":", port, " (",
        why, "; DYN_SYSTEM_HOST, DYN_SYSTEM_PORT)"));
  }
  return fd;
}

const char* Reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

void WriteAll(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;  // the caller went away
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

absl::StatusOr<SystemServer*> SystemServer::StartFor(const Config& config) {
  std::lock_guard lock(g_start_mu);
  if (g_running != nullptr) {
    if (config.system_port && *config.system_port != 0 &&
        *config.system_port != g_running->port_) {
      DYNRPC_LOG(kWarn, "dynrpc::system", "the system server already runs at ",
                 g_running->address_, "; DYN_SYSTEM_PORT=",
                 *config.system_port, " is ignored (one per process)");
    }
    return g_running;
  }
  auto* server = new SystemServer();
  absl::StatusOr<int> listener =
      Listen(config.system_host, config.system_port.value_or(0),
             &server->address_, &server->port_);
  if (!listener.ok()) {
    delete server;
    return listener.status();
  }
  Metrics::Global().Enable();
  g_running = server;
  // For the rest of the process.
  std::thread([server, fd = *listener] { server->Serve(fd); }).detach();
  DYNRPC_LOG(kInfo, "dynrpc::system", "system server at http://",
             server->address_, " (/health, /live, /metrics)");
  return server;
}

SystemServer* SystemServer::Running() {
  std::lock_guard lock(g_start_mu);
  return g_running;
}

void SystemServer::AddHealth(const HealthService* health) {
  std::lock_guard lock(mu_);
  health_.push_back(health);
}

void SystemServer::RemoveHealth(const HealthService* health) {
  std::lock_guard lock(mu_);
  std::erase(health_, health);
}

SystemServer::Answer SystemServer::Handle(std::string_view method,
                                          std::string_view target) const {
  std::string_view path = target.substr(0, target.find('?'));
  if (path != "/live" && path != "/health" && path != "/metrics") {
    return {404, "text/plain", "not found: try /health, /live or /metrics\n"};
  }
  if (method != "GET" && method != "HEAD") {
    return {405, "text/plain", "use GET\n"};
  }
  if (path == "/live") return {200, "text/plain", "live\n"};
  if (path == "/metrics") {
    return {200, "text/plain; version=0.0.4; charset=utf-8",
            Metrics::Global().Render()};
  }
  using Status = HealthService::ServingStatus;
  Status overall = grpc::health::v1::HealthCheckResponse::SERVING;
  {
    std::lock_guard lock(mu_);
    for (const HealthService* h : health_) {
      Status s = h->Status("");
      if (s != grpc::health::v1::HealthCheckResponse::SERVING) {
        overall = s;
        break;
      }
    }
  }
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(overall);
  return {overall == grpc::health::v1::HealthCheckResponse::SERVING ? 200 : 503,
          "application/json", absl::StrCat("{\"status\":\"", name, "\"}\n")};
}

void SystemServer::Serve(int listener) {
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
          errno == ENFILE) {
        if (errno == EMFILE || errno == ENFILE) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        continue;
      }
      DYNRPC_LOG(kError, "dynrpc::system", "the system server stopped: ",
                 std::strerror(errno));
      return;
    }
    // A caller that does not read its answer does not hold the server.
    timeval send_timeout{kRequestTimeoutMs / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout,
               sizeof(send_timeout));
    // The request line and headers, within the size and time bounds.
    std::string request;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(kRequestTimeoutMs);
    int code = 0;
    while (request.find("\r\n\r\n") == std::string::npos) {
      if (request.size() >= kMaxRequestBytes) {
        code = 400;
        break;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        code = 408;
        break;
      }
      char buffer[1024];
      ssize_t n = recv(fd, buffer,
                       std::min(sizeof(buffer), kMaxRequestBytes - request.size()),
                       0);
      if (n <= 0) {
        code = -1;  // gone
        break;
      }
      request.append(buffer, static_cast<std::size_t>(n));
    }
    if (code >= 0) {
      Answer answer{code, "text/plain",
                    code == 400 ? "request too large\n" : "request too slow\n"};
      std::string_view method;
      if (code == 0) {
        std::string_view line(request.data(), request.find("\r\n"));
        std::size_t sp1 = line.find(' ');
        std::size_t sp2 = line.find(' ', sp1 + 1);
        if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
          answer = {400, "text/plain", "malformed request line\n"};
        } else {
          method = line.substr(0, sp1);
          answer = Handle(method, line.substr(sp1 + 1, sp2 - sp1 - 1));
        }
      }
      std::string response = absl::StrCat(
          "HTTP/1.1 ", answer.code, " ", Reason(answer.code),
          "\r\nContent-Type: ", answer.content_type,
          "\r\nContent-Length: ", answer.body.size(),
          "\r\nConnection: close\r\n\r\n", method == "HEAD" ? "" : answer.body);
      WriteAll(fd, response);
    }
    close(fd);
  }
}

}  // namespace dynrpc::internal
