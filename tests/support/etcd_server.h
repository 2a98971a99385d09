// etcd server processes for the tests of the etcd discovery backend
// (Debian's etcd-server). ./scripts/test starts one for the whole run and
// exports ETCD_ENDPOINTS; a test binary run by hand starts its own.
#ifndef DYNRPC_TESTS_SUPPORT_ETCD_SERVER_H_
#define DYNRPC_TESTS_SUPPORT_ETCD_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "support/subprocess.h"

namespace dynrpc::testing {

// One etcd on free loopback ports, with its data in a temporary directory;
// killed, and its directory removed, when destroyed.
class EtcdProcess {
 public:
  // Starts it and waits (up to 30 s) until it serves clients.
  static absl::StatusOr<std::unique_ptr<EtcdProcess>> Start();
  ~EtcdProcess();

  // http://127.0.0.1:<port>
  const std::string& endpoint() const { return endpoint_; }

 private:
  EtcdProcess() = default;
  std::string dir_;
  std::string endpoint_;
  std::unique_ptr<Subprocess> process_;
};

// ETCD_ENDPOINTS when set (./scripts/test's etcd), else one started for
// this process (a test failure if it cannot be).
std::string SharedEtcdEndpoint();

// A loopback TCP port that nothing listens on now.
int FreeLoopbackPort();

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_ETCD_SERVER_H_
