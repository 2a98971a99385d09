#include "support/etcd_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace dynrpc::testing {

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

absl::StatusOr<std::unique_ptr<EtcdProcess>> EtcdProcess::Start() {
  std::unique_ptr<EtcdProcess> etcd(new EtcdProcess());
  std::string pattern =
      (std::filesystem::temp_directory_path() / "dynrpc-etcd-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError("mkdtemp failed");
  }
  etcd->dir_ = pattern;
  int client = FreeLoopbackPort();
  int peer = FreeLoopbackPort();
  etcd->endpoint_ = absl::StrCat("http://127.0.0.1:", client);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", peer);
  // Through sh, for its log on stdout: the test reads the line that says
  // it serves.
  std::string command = absl::StrCat(
      "exec ", DYNRPC_ETCD_EXECUTABLE, " --name dynrpc-test --data-dir ",
      etcd->dir_, " --listen-client-urls ", etcd->endpoint_,
      " --advertise-client-urls ", etcd->endpoint_, " --listen-peer-urls ",
      peer_url, " --initial-advertise-peer-urls ", peer_url,
      " --initial-cluster dynrpc-test=", peer_url, " 2>&1");
  etcd->process_ = std::make_unique<Subprocess>(
      "/bin/sh", std::vector<std::string>{"-c", command},
      std::vector<std::string>{});
  std::string log;
  for (;;) {
    std::optional<std::string> line =
        etcd->process_->ReadLine(std::chrono::seconds(30));
    if (!line) {
      return absl::UnavailableError(
          absl::StrCat("etcd did not start; its log:\n", log));
    }
    log += *line + "\n";
    if (line->find("ready to serve client requests") != std::string::npos) {
      return etcd;
    }
  }
}

EtcdProcess::~EtcdProcess() {
  process_.reset();  // killed
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

std::string SharedEtcdEndpoint() {
  if (const char* url = std::getenv("ETCD_ENDPOINTS");
      url != nullptr && *url != '\0') {
    return url;
  }
  static const absl::StatusOr<std::unique_ptr<EtcdProcess>> shared =
      EtcdProcess::Start();
  if (!shared.ok()) {
    ADD_FAILURE() << "ETCD_ENDPOINTS is unset and no etcd could be started: "
                  << shared.status();
    return "http://127.0.0.1:1";
  }
  return (*shared)->endpoint();
}

}  // namespace dynrpc::testing
