// The floor any NATS request plane pays: a bare nats.c echo. It subscribes
// to one subject on the NATS server NATS_SERVER names and answers every
// request with its data, published to the request's reply subject; no RPC
// at all. Connected as dynrpc's NATS plane connects (send-asap: each publish
// is written at once, runtime/src/nats/nats_connection.cc), with the same
// subscription pending limits. nats.c's threads (its reader and the
// subscription's delivery thread, where the echo runs) are all pinned with
// --cpu=N. It announces the subject it serves as its address; the harness
// (NatsFloorSystem in rpc_bench.cc) sends requests there.
#include <nats/nats.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench_util.h"

namespace {

void Echo(natsConnection* nc, natsSubscription*, natsMsg* msg, void*) {
  if (const char* reply = natsMsg_GetReply(msg)) {
    natsConnection_Publish(nc, reply, natsMsg_GetData(msg),
                           natsMsg_GetDataLength(msg));
  }
  natsMsg_Destroy(msg);
}

int Fail(const char* what, natsStatus s) {
  const char* text = nats_GetLastError(nullptr);
  std::fprintf(stderr, "nats_floor_server: %s: %s\n", what,
               text != nullptr && *text != '\0' ? text
                                                : natsStatus_GetText(s));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Before nats.c starts any thread: they all inherit the mask.
  bench::PinToCpu(bench::CpuFlag(argc, argv));
  const char* url = std::getenv("NATS_SERVER");
  if (url == nullptr || *url == '\0') {
    std::fprintf(stderr, "nats_floor_server: NATS_SERVER is not set\n");
    return 2;
  }
  natsOptions* options = nullptr;
  natsStatus s = natsOptions_Create(&options);
  if (s == NATS_OK) s = natsOptions_SetURL(options, url);
  if (s == NATS_OK) s = natsOptions_SetSendAsap(options, true);
  if (s != NATS_OK) return Fail("options", s);
  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, options);
  natsOptions_Destroy(options);
  if (s != NATS_OK) return Fail(url, s);
  // Unique on a shared server.
  std::string subject = "bench.nats_floor." + std::to_string(getpid());
  natsSubscription* sub = nullptr;
  s = natsConnection_Subscribe(&sub, nc, subject.c_str(), &Echo, nullptr);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, 1 << 20, 1 << 30);
  // Registered with the server before the harness sends anything.
  if (s == NATS_OK) s = natsConnection_Flush(nc);
  if (s != NATS_OK) return Fail("subscribe", s);
  bench::AnnounceAddress(subject);
  for (;;) pause();  // the harness kills it
}
