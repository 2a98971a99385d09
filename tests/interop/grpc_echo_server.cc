// EchoService served by gRPC C++ (Debian's 1.51), for grpc_interop_test: the
// peer a dynrpc client on the HTTP/2 request plane must interoperate with.
// It behaves like tests/support/echo_service.cc, dynrpc's implementation.
//
// Usage: grpc_echo_server
// Listens on 127.0.0.1 with an OS-assigned port and prints, one line each,
// flushed:
//   "listening 127.0.0.1:<port>"  once it accepts calls;
//   "blocked"                     when a Block call starts waiting;
//   "block cancelled"             when a Block call ends because it was
//                                 cancelled or its deadline passed;
//   "generate cancelled"          when a Generate call ends because a write
//                                 failed (the caller went away).
// Then serves until killed; it also dies with the process that started it.
//
// Block uses the callback API (it waits for OnCancel, no polling); every
// other method the synchronous API.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "dynrpc/testing/echo.grpc.pb.h"

namespace {

using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoService;
using ::dynrpc::testing::FailRequest;
using ::dynrpc::testing::SizeRequest;
using ::dynrpc::testing::StreamMessage;
using ::dynrpc::testing::StreamRequest;
using ::dynrpc::testing::StreamSummary;

// Largest message either direction, well above the 4 MiB the tests send.
constexpr int kMaxMessageBytes = 64 << 20;

// Prints `line` to stdout and flushes; lines from different threads never
// interleave.
void Announce(std::string_view line) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// The first value the caller sent under `key`, or nullopt.
std::optional<std::string> FindClientMetadata(
    const grpc::ServerContextBase& context, std::string_view key) {
  auto it =
      context.client_metadata().find(grpc::string_ref(key.data(), key.size()));
  if (it == context.client_metadata().end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

// The caller's "x-echo" metadata, echoed as initial metadata
// "x-echo-initial" and trailing metadata "x-echo-trailing".
void EchoMetadata(grpc::ServerContextBase& context) {
  if (std::optional<std::string> echo = FindClientMetadata(context, "x-echo")) {
    context.AddInitialMetadata("x-echo-initial", *echo);
    context.AddTrailingMetadata("x-echo-trailing", *echo);
  }
}

// The caller's "x-compress: gzip|deflate" has the responses compressed, as
// dynrpc's echo service does.
void CompressAsAsked(grpc::ServerContextBase& context) {
  std::optional<std::string> name = FindClientMetadata(context, "x-compress");
  if (name == "gzip") context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  if (name == "deflate") {
    context.set_compression_algorithm(GRPC_COMPRESS_DEFLATE);
  }
}

// A channel argument set that never routes through an HTTP proxy from the
// environment: every peer here is on loopback.
grpc::ChannelArguments DirectChannelArguments() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  return args;
}

// Waits until its call is cancelled (by the caller, or by gRPC when the
// deadline passes), then ends it with CANCELLED, as dynrpc's Block does.
// gRPC owns it from the handler's return; it deletes itself in OnDone.
class BlockReactor final : public grpc::ServerUnaryReactor {
 public:
  BlockReactor() { Announce("blocked"); }

  // gRPC calls this even when the cancellation arrived before the handler
  // returned the reactor.
  void OnCancel() override {
    Announce("block cancelled");
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "Block was cancelled"));
  }
  void OnDone() override { delete this; }
};

class EchoServiceImpl final
    : public EchoService::WithCallbackMethod_Block<EchoService::Service> {
 public:
  grpc::Status Echo(grpc::ServerContext* context, const EchoRequest* request,
                    EchoReply* reply) override {
    EchoMetadata(*context);
    CompressAsAsked(*context);
    if (request->text() == "deadline-ms") {
      // The time the handler has left, as a chain would pass it on.
      const auto deadline = context->deadline();
      if (deadline == std::chrono::system_clock::time_point::max()) {
        reply->set_text("none");
      } else {
        reply->set_text(std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::system_clock::now())
                .count()));
      }
      return grpc::Status::OK;
    }
    constexpr std::string_view kMetadataPrefix = "metadata:";
    if (request->text().starts_with(kMetadataPrefix)) {
      reply->set_text(
          FindClientMetadata(
              *context,
              std::string_view(request->text()).substr(kMetadataPrefix.size()))
              .value_or("<absent>"));
    } else {
      reply->set_text(request->text());
    }
    if (!request->no_payload_back()) reply->set_payload(request->payload());
    return grpc::Status::OK;
  }

  grpc::Status Fail(grpc::ServerContext* context, const FailRequest* request,
                    EchoReply* reply) override {
    return grpc::Status(static_cast<grpc::StatusCode>(request->code()),
                        request->message());
  }

  grpc::ServerUnaryReactor* Block(grpc::CallbackServerContext* context,
                                  const EchoRequest* request,
                                  EchoReply* reply) override {
    return new BlockReactor();
  }

  grpc::Status Sized(grpc::ServerContext* context, const SizeRequest* request,
                     EchoReply* reply) override {
    if (request->reply_payload_bytes() < 0 ||
        request->reply_payload_bytes() > kMaxMessageBytes) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "reply_payload_bytes out of range");
    }
    CompressAsAsked(*context);
    reply->set_payload(std::string(request->reply_payload_bytes(), 'r'));
    return grpc::Status::OK;
  }

  grpc::Status Generate(grpc::ServerContext* context,
                        const StreamRequest* request,
                        grpc::ServerWriter<StreamMessage>* writer) override {
    if (request->payload_bytes() < 0 ||
        request->payload_bytes() > kMaxMessageBytes) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "payload_bytes out of range");
    }
    EchoMetadata(*context);
    CompressAsAsked(*context);
    const std::string payload(request->payload_bytes(), 'g');
    for (int64_t i = 0; request->forever() || i < request->count(); ++i) {
      if (request->fail_after() > 0 && i == request->fail_after()) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            "failed after " + std::to_string(i) + " messages");
      }
      StreamMessage message;
      message.set_sequence(i);
      message.set_payload(payload);
      if (!writer->Write(message)) {
        Announce("generate cancelled");
        return grpc::Status(grpc::StatusCode::CANCELLED,
                            "Generate: the caller went away");
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Collect(grpc::ServerContext* context,
                       grpc::ServerReader<StreamMessage>* reader,
                       StreamSummary* summary) override {
    summary->set_in_order(true);
    StreamMessage message;
    while (reader->Read(&message)) {
      if (message.sequence() != summary->count()) summary->set_in_order(false);
      summary->set_count(summary->count() + 1);
      summary->set_bytes(summary->bytes() + message.payload().size());
    }
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "Collect was cancelled");
    }
    return grpc::Status::OK;
  }

  grpc::Status Chat(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<StreamMessage, StreamMessage>* stream) override {
    CompressAsAsked(*context);
    StreamMessage message;
    while (stream->Read(&message)) {
      if (!stream->Write(message)) {
        return grpc::Status(grpc::StatusCode::CANCELLED,
                            "Chat: the caller went away");
      }
    }
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "Chat was cancelled");
    }
    return grpc::Status::OK;
  }

  // Calls Block on the EchoService at `text` (host:port) with gRPC, passing
  // this call's deadline and cancellation on.
  grpc::Status Relay(grpc::ServerContext* context, const EchoRequest* request,
                     EchoReply* reply) override {
    std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
        request->text(), grpc::InsecureChannelCredentials(),
        DirectChannelArguments());
    std::unique_ptr<EchoService::Stub> downstream =
        EchoService::NewStub(channel);
    std::unique_ptr<grpc::ClientContext> next =
        grpc::ClientContext::FromServerContext(*context);
    EchoRequest block;
    return downstream->Block(next.get(), block, reply);
  }
};

}  // namespace

int main() {
  // Killed with the test that started it, even if that test dies first.
  prctl(PR_SET_PDEATHSIG, SIGKILL);

  EchoServiceImpl service;
  // gRPC's own reflection service, for dynrpc's command line to read.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "grpc_echo_server: cannot listen on 127.0.0.1:0\n");
    return 1;
  }
  Announce("listening 127.0.0.1:" + std::to_string(port));
  server->Wait();  // until killed
}
