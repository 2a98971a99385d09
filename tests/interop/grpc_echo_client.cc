// A gRPC C++ (Debian's 1.51) client of EchoService, for grpc_interop_test:
// runs one scenario against a server (dynrpc's HTTP/2 request plane, or
// grpc_echo_server) and checks the results itself.
//
// Usage: grpc_echo_client <host:port> <scenario>
// Scenarios: unary, error, deadline, cancel, server_streaming, health,
// client_streaming, bidi, unknown_method, large, compression, reflection,
// all (each of the others in order).
//
// Prints "PASS <scenario>" and exits 0, or "FAIL <scenario>: <what differed,
// with the actual values>" and exits 1; `all` prints a line per scenario,
// then its own. Every call has a deadline, and a scenario's calls share a
// budget of 40 s, so a scenario ends on its own, with a FAIL line, against a
// server that never answers. Usage errors exit 2.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "dynrpc/testing/echo.grpc.pb.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace {

using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoService;
using ::dynrpc::testing::FailRequest;
using ::dynrpc::testing::SizeRequest;
using ::dynrpc::testing::StreamMessage;
using ::dynrpc::testing::StreamRequest;
using ::dynrpc::testing::StreamSummary;

// Calls that do not test deadlines get kCallTimeout, within what is left of
// the scenario's kScenarioBudget: generous for a slow (sanitized) build, and
// a scenario against a server that answers nothing still ends well within
// the 60 s grpc_interop_test waits for it.
constexpr std::chrono::seconds kCallTimeout(10);
constexpr std::chrono::seconds kScenarioBudget(40);
constexpr int kMaxReceiveBytes = 64 << 20;

// Its arguments, streamed into one string (bools as true/false). Debian's
// Abseil has its own string_view, so absl::StrCat would not take ours.
template <typename... Args>
std::string Cat(const Args&... args) {
  std::ostringstream out;
  out << std::boolalpha;
  (out << ... << args);
  return out.str();
}

template <typename Range>
std::string JoinStrings(const Range& parts, std::string_view separator) {
  std::string out;
  bool first = true;
  for (const auto& part : parts) {
    if (!first) out += separator;
    out += part;
    first = false;
  }
  return out;
}

// `s` quoted, with anything but printable ASCII hex-escaped: one line.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out + "\"";
}

std::string CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  if (i >= 0 && i < static_cast<int>(std::size(kNames))) {
    return Cat(i, " (", kNames[i], ")");
  }
  return Cat(i);
}

std::string Describe(const grpc::Status& status) {
  return Cat("code ", CodeName(status.error_code()), " message ",
             Quote(status.error_message()));
}

// What differed from what a scenario expected, one entry per difference.
class Failures {
 public:
  void Add(std::string what) { list_.push_back(std::move(what)); }

  // Each returns whether the check held.
  bool Expect(bool held, std::string_view what) {
    if (!held) Add(std::string(what));
    return held;
  }
  bool ExpectEq(std::string_view what, std::string_view actual,
                std::string_view expected) {
    if (actual == expected) return true;
    Add(Cat(what, ": got ", Quote(actual), ", want ", Quote(expected)));
    return false;
  }
  bool ExpectEq(std::string_view what, int64_t actual, int64_t expected) {
    if (actual == expected) return true;
    Add(Cat(what, ": got ", actual, ", want ", expected));
    return false;
  }
  bool ExpectEq(std::string_view what, bool actual, bool expected) {
    if (actual == expected) return true;
    Add(Cat(what, ": got ", actual, ", want ", expected));
    return false;
  }
  // For payloads: names sizes and the first differing byte, not the bytes.
  bool ExpectSameBytes(std::string_view what, std::string_view actual,
                       std::string_view expected) {
    if (actual == expected) return true;
    std::size_t i = 0;
    while (i < actual.size() && i < expected.size() && actual[i] == expected[i])
      ++i;
    Add(Cat(what, ": got ", actual.size(), " bytes, want ", expected.size(),
            "; first difference at byte ", i));
    return false;
  }
  bool ExpectOk(std::string_view what, const grpc::Status& status) {
    if (status.ok()) return true;
    Add(Cat(what, ": got ", Describe(status), ", want OK"));
    return false;
  }
  // `message`: the exact message wanted, or nullopt for any.
  bool ExpectStatus(std::string_view what, const grpc::Status& status,
                    grpc::StatusCode code,
                    std::optional<std::string_view> message = std::nullopt) {
    if (status.error_code() == code &&
        (!message || status.error_message() == *message)) {
      return true;
    }
    Add(Cat(what, ": got ", Describe(status), ", want code ", CodeName(code),
            message ? Cat(" message ", Quote(*message)) : std::string()));
    return false;
  }

  bool ok() const { return list_.empty(); }
  std::string Join() const { return JoinStrings(list_, "; "); }

 private:
  std::vector<std::string> list_;
};

// The server this run talks to.
struct Target {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<EchoService::Stub> stub;
  // When the scenario's budget runs out.
  std::chrono::system_clock::time_point budget_end;
};

Target Connect(const std::string& address) {
  grpc::ChannelArguments args;
  // Loopback peers only: never through a proxy from the environment.
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  Target target;
  target.channel = grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args);
  target.stub = EchoService::NewStub(target.channel);
  target.budget_end = std::chrono::system_clock::now() + kScenarioBudget;
  return target;
}

// Gives a call that does not test deadlines its deadline.
void SetTimeout(grpc::ClientContext& context, const Target& t) {
  context.set_deadline(
      std::min(std::chrono::system_clock::now() + kCallTimeout, t.budget_end));
}

// Gives a call that tests deadlines exactly `timeout`.
void SetDeadlineIn(grpc::ClientContext& context,
                   std::chrono::milliseconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

// The first value under `key`, or "<absent>".
std::string FindOrAbsent(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
    std::string_view key) {
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return "<absent>";
  return std::string(it->second.data(), it->second.size());
}

// `n` bytes running through every byte value, 0x00 and 0xff included.
std::string Pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 256);
  return s;
}

// Waits for the completion queue's next event, until 5 s past the deadline
// of the call's `context`; false (with a failure added) when none comes.
bool AwaitTag(grpc::CompletionQueue& cq, void* want,
              const grpc::ClientContext& context, std::string_view what,
              Failures& f) {
  void* tag = nullptr;
  bool ok = false;
  grpc::CompletionQueue::NextStatus next =
      cq.AsyncNext(&tag, &ok, context.deadline() + std::chrono::seconds(5));
  if (next != grpc::CompletionQueue::GOT_EVENT) {
    f.Add(Cat(what, ": no completion 5 s after the call's deadline"));
    return false;
  }
  return f.Expect(tag == want && ok,
                  Cat(what, ": unexpected completion (ok=", ok, ")"));
}

// Drains and shuts down a completion queue whose calls have all completed.
void ShutdownQueue(grpc::CompletionQueue& cq) {
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

// ---- Scenarios -------------------------------------------------------------

void Unary(Target& t, Failures& f) {
  {
    grpc::ClientContext context;
    SetTimeout(context, t);
    context.AddMetadata("x-echo", "v1");
    EchoRequest request;
    request.set_text("hello");
    request.set_payload(Pattern(1024));
    EchoReply reply;
    grpc::Status status = t.stub->Echo(&context, request, &reply);
    if (f.ExpectOk("Echo", status)) {
      f.ExpectEq("Echo text", reply.text(), "hello");
      f.ExpectSameBytes("Echo payload", reply.payload(), request.payload());
      f.ExpectEq(
          "Echo initial metadata x-echo-initial",
          FindOrAbsent(context.GetServerInitialMetadata(), "x-echo-initial"),
          "v1");
      f.ExpectEq(
          "Echo trailing metadata x-echo-trailing",
          FindOrAbsent(context.GetServerTrailingMetadata(), "x-echo-trailing"),
          "v1");
    }
  }
  struct Case {
    std::string_view text;
    std::optional<std::string_view> sent;  // the x-plain value sent, if any
    std::string_view want;
  };
  for (const Case& c : {Case{"metadata:x-plain", "hello world", "hello world"},
                        Case{"metadata:x-plain", std::nullopt, "<absent>"}}) {
    grpc::ClientContext context;
    SetTimeout(context, t);
    if (c.sent) context.AddMetadata("x-plain", std::string(*c.sent));
    EchoRequest request;
    request.set_text(std::string(c.text));
    EchoReply reply;
    const std::string what =
        Cat("Echo ", Quote(c.text), " with x-plain ",
            c.sent ? Quote(*c.sent) : std::string("unset"));
    if (f.ExpectOk(what, t.stub->Echo(&context, request, &reply))) {
      f.ExpectEq(what, reply.text(), c.want);
    }
  }
}

void Error(Target& t, Failures& f) {
  struct Case {
    grpc::StatusCode code;
    std::string_view message;
  };
  for (const Case& c : {
           Case{grpc::StatusCode::FAILED_PRECONDITION, "bad state: ü"},
           Case{grpc::StatusCode::NOT_FOUND, "not found: key 42"},
           // '%' and a line break must survive grpc-message's encoding.
           Case{grpc::StatusCode::INVALID_ARGUMENT, "100% wrong\nsecond line"},
           Case{grpc::StatusCode::UNKNOWN, ""},
       }) {
    grpc::ClientContext context;
    SetTimeout(context, t);
    FailRequest request;
    request.set_code(static_cast<int>(c.code));
    request.set_message(std::string(c.message));
    EchoReply reply;
    f.ExpectStatus(Cat("Fail(", CodeName(c.code), ")"),
                   t.stub->Fail(&context, request, &reply), c.code, c.message);
  }
}

void Deadline(Target& t, Failures& f) {
  {
    grpc::ClientContext context;
    SetDeadlineIn(context, std::chrono::milliseconds(300));
    const auto start = std::chrono::steady_clock::now();
    EchoReply reply;
    grpc::Status status = t.stub->Block(&context, EchoRequest(), &reply);
    const auto elapsed_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start)
            .count();
    f.ExpectStatus("Block with a 300 ms deadline", status,
                   grpc::StatusCode::DEADLINE_EXCEEDED);
    f.Expect(elapsed_ms >= 250 && elapsed_ms <= 5000,
             Cat("Block with a 300 ms deadline ended after ", elapsed_ms,
                 " ms, want 250..5000 ms"));
  }
  {
    grpc::ClientContext context;
    SetDeadlineIn(context, std::chrono::seconds(10));
    EchoRequest request;
    request.set_text("deadline-ms");
    EchoReply reply;
    if (f.ExpectOk("Echo \"deadline-ms\"",
                   t.stub->Echo(&context, request, &reply))) {
      int64_t left_ms = -1;
      const std::string& text = reply.text();
      auto [end, ec] =
          std::from_chars(text.data(), text.data() + text.size(), left_ms);
      // gRPC C++ rounds grpc-timeout up as it encodes it (a 10 s deadline
      // reaches a gRPC server as about 10.1 s), so allow 10 % above; the
      // bounds still catch a unit misread by 1000 either way.
      f.Expect(ec == std::errc() && end == text.data() + text.size() &&
                   left_ms >= 5000 && left_ms <= 11000,
               Cat("Echo \"deadline-ms\" with a 10 s deadline: got ",
                   Quote(text), ", want 5000..11000"));
    }
  }
}

void Cancel(Target& t, Failures& f) {
  // A server stream the server would write forever: the messages prove its
  // handler runs; then the caller cancels.
  {
    grpc::ClientContext context;
    SetTimeout(context, t);
    StreamRequest request;
    request.set_forever(true);
    request.set_payload_bytes(10);
    std::unique_ptr<grpc::ClientReader<StreamMessage>> reader =
        t.stub->Generate(&context, request);
    StreamMessage message;
    for (int i = 0; i < 3; ++i) {
      if (!f.Expect(reader->Read(&message),
                    Cat("Generate(forever): stream ended before "
                        "message ",
                        i))) {
        break;
      }
      f.ExpectEq("Generate(forever) sequence", message.sequence(), i);
    }
    context.TryCancel();
    while (reader->Read(&message)) {
    }
    f.ExpectStatus("Generate(forever) after TryCancel", reader->Finish(),
                   grpc::StatusCode::CANCELLED);
  }
  // A unary Block, cancelled while the server holds it. The Echo after it on
  // the same channel completes after the server has received Block's
  // headers (one connection, in order), so the cancel finds the call in the
  // server's hands; CANCELLED is the answer either way.
  {
    grpc::CompletionQueue cq;
    grpc::ClientContext context;
    SetTimeout(context, t);
    EchoReply reply;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<EchoReply>> call =
        t.stub->AsyncBlock(&context, EchoRequest(), &cq);
    int finished_tag = 0;
    call->Finish(&reply, &status, &finished_tag);

    grpc::ClientContext echo_context;
    SetTimeout(echo_context, t);
    EchoRequest echo;
    echo.set_text("while blocked");
    EchoReply echo_reply;
    f.ExpectOk("Echo while Block waits",
               t.stub->Echo(&echo_context, echo, &echo_reply));

    context.TryCancel();
    if (AwaitTag(cq, &finished_tag, context, "Block after TryCancel", f)) {
      f.ExpectStatus("Block after TryCancel", status,
                     grpc::StatusCode::CANCELLED);
    }
    ShutdownQueue(cq);
  }
  // The channel and the server still serve after both cancellations.
  {
    grpc::ClientContext context;
    SetTimeout(context, t);
    EchoRequest request;
    request.set_text("after cancel");
    EchoReply reply;
    if (f.ExpectOk("Echo after the cancellations",
                   t.stub->Echo(&context, request, &reply))) {
      f.ExpectEq("Echo after the cancellations", reply.text(), "after cancel");
    }
  }
}

void ServerStreaming(Target& t, Failures& f) {
  // count, fail_after, messages wanted, status wanted.
  struct Case {
    int64_t count;
    int64_t fail_after;
    int64_t want_messages;
    grpc::StatusCode want_code;
    std::string_view want_message;
  };
  for (const Case& c : {
           Case{100, 0, 100, grpc::StatusCode::OK, ""},
           Case{100, 3, 3, grpc::StatusCode::FAILED_PRECONDITION,
                "failed after 3 messages"},
           Case{0, 0, 0, grpc::StatusCode::OK, ""},
       }) {
    const std::string what =
        Cat("Generate(count=", c.count, ", fail_after=", c.fail_after, ")");
    grpc::ClientContext context;
    SetTimeout(context, t);
    context.AddMetadata("x-echo", "stream");
    StreamRequest request;
    request.set_count(c.count);
    request.set_payload_bytes(10);
    request.set_fail_after(c.fail_after);
    std::unique_ptr<grpc::ClientReader<StreamMessage>> reader =
        t.stub->Generate(&context, request);
    StreamMessage message;
    int64_t received = 0;
    bool in_order = true;
    while (reader->Read(&message)) {
      if (in_order && (message.sequence() != received ||
                       message.payload() != std::string(10, 'g'))) {
        f.Add(Cat(what, ": message ", received, " has sequence ",
                  message.sequence(), " and payload ", Quote(message.payload()),
                  ", want sequence ", received, " and payload of 10 'g'"));
        in_order = false;
      }
      ++received;
    }
    grpc::Status status = reader->Finish();
    f.ExpectEq(Cat(what, " messages"), received, c.want_messages);
    f.ExpectStatus(what, status, c.want_code, c.want_message);
    f.ExpectEq(
        Cat(what, " initial metadata x-echo-initial"),
        FindOrAbsent(context.GetServerInitialMetadata(), "x-echo-initial"),
        "stream");
    f.ExpectEq(
        Cat(what, " trailing metadata x-echo-trailing"),
        FindOrAbsent(context.GetServerTrailingMetadata(), "x-echo-trailing"),
        "stream");
  }
}

void ClientStreaming(Target& t, Failures& f) {
  struct Case {
    std::vector<int64_t> sequence;
    int64_t payload_bytes;
    StreamSummary want;
  };
  auto summary = [](int64_t count, int64_t bytes, bool in_order) {
    StreamSummary s;
    s.set_count(count);
    s.set_bytes(bytes);
    s.set_in_order(in_order);
    return s;
  };
  std::vector<int64_t> fifty;
  for (int64_t i = 0; i < 50; ++i) fifty.push_back(i);
  for (const Case& c : {
           Case{fifty, 100, summary(50, 5000, true)},
           Case{{}, 100, summary(0, 0, true)},
           Case{{0, 2, 1}, 7, summary(3, 21, false)},
       }) {
    const std::string what = Cat("Collect(", c.sequence.size(), " messages)");
    grpc::ClientContext context;
    SetTimeout(context, t);
    StreamSummary got;
    std::unique_ptr<grpc::ClientWriter<StreamMessage>> writer =
        t.stub->Collect(&context, &got);
    for (int64_t sequence : c.sequence) {
      StreamMessage message;
      message.set_sequence(sequence);
      message.set_payload(std::string(c.payload_bytes, 'c'));
      if (!f.Expect(writer->Write(message),
                    Cat(what, ": Write of message ", sequence, " failed"))) {
        break;
      }
    }
    writer->WritesDone();
    if (!f.ExpectOk(what, writer->Finish())) continue;
    f.ExpectEq(Cat(what, " count"), got.count(), c.want.count());
    f.ExpectEq(Cat(what, " bytes"), got.bytes(), c.want.bytes());
    f.ExpectEq(Cat(what, " in_order"), got.in_order(), c.want.in_order());
  }
}

void Bidi(Target& t, Failures& f) {
  grpc::ClientContext context;
  SetTimeout(context, t);
  std::unique_ptr<grpc::ClientReaderWriter<StreamMessage, StreamMessage>>
      stream = t.stub->Chat(&context);
  for (int64_t i = 0; i < 20; ++i) {
    StreamMessage sent;
    sent.set_sequence(i);
    sent.set_text(Cat("chat ", i));
    sent.set_payload(Pattern(i * 10));
    if (!f.Expect(stream->Write(sent),
                  Cat("Chat: Write of message ", i, " failed"))) {
      break;
    }
    StreamMessage got;
    if (!f.Expect(stream->Read(&got), Cat("Chat: no echo of message ", i))) {
      break;
    }
    const std::string what = Cat("Chat echo ", i);
    f.ExpectEq(Cat(what, " sequence"), got.sequence(), i);
    f.ExpectEq(Cat(what, " text"), got.text(), sent.text());
    f.ExpectSameBytes(Cat(what, " payload"), got.payload(), sent.payload());
  }
  f.Expect(stream->WritesDone(), "Chat: WritesDone failed");
  StreamMessage extra;
  f.Expect(!stream->Read(&extra),
           "Chat: a message after WritesDone, want the end of the stream");
  f.ExpectOk("Chat status", stream->Finish());
}

void UnknownMethod(Target& t, Failures& f) {
  grpc::GenericStub generic(t.channel);
  for (std::string_view method : {"/dynrpc.testing.EchoService/NoSuchMethod",
                                  "/dynrpc.testing.NoSuchService/Echo"}) {
    grpc::CompletionQueue cq;
    grpc::ClientContext context;
    SetTimeout(context, t);
    grpc::ByteBuffer request;
    grpc::Slice empty;
    request = grpc::ByteBuffer(&empty, 1);
    grpc::ByteBuffer response;
    grpc::Status status;
    std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
        generic.PrepareUnaryCall(&context, std::string(method), request, &cq);
    call->StartCall();
    int finished_tag = 0;
    call->Finish(&response, &status, &finished_tag);
    const std::string what = Cat("call to ", method);
    if (AwaitTag(cq, &finished_tag, context, what, f)) {
      f.ExpectStatus(what, status, grpc::StatusCode::UNIMPLEMENTED);
    }
    ShutdownQueue(cq);
  }
}

void Large(Target& t, Failures& f) {
  constexpr std::size_t kBytes = 4u << 20;
  {
    grpc::ClientContext context;
    SetTimeout(context, t);
    EchoRequest request;
    request.set_text("large");
    request.set_payload(Pattern(kBytes));
    EchoReply reply;
    if (f.ExpectOk("Echo of 4 MiB", t.stub->Echo(&context, request, &reply))) {
      f.ExpectEq("Echo of 4 MiB text", reply.text(), "large");
      f.ExpectSameBytes("Echo of 4 MiB payload", reply.payload(),
                        request.payload());
    }
  }
  {
    grpc::ClientContext context;
    SetTimeout(context, t);
    SizeRequest request;
    request.set_reply_payload_bytes(kBytes);
    EchoReply reply;
    if (f.ExpectOk("Sized(4 MiB)", t.stub->Sized(&context, request, &reply))) {
      f.ExpectSameBytes("Sized(4 MiB) payload", reply.payload(),
                        std::string(kBytes, 'r'));
    }
  }
}

// gRPC's health checking against the health service every dynrpc server
// serves: per service and overall, Check and Watch.
void Health(Target& t, Failures& f) {
  using grpc::health::v1::HealthCheckRequest;
  using grpc::health::v1::HealthCheckResponse;
  std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(t.channel);
  for (std::string_view service : {"", "dynrpc.testing.EchoService"}) {
    grpc::ClientContext context;
    SetTimeout(context, t);
    HealthCheckRequest request;
    request.set_service(std::string(service));
    HealthCheckResponse response;
    const std::string what = Cat("Check(", Quote(service), ")");
    if (f.ExpectOk(what, health->Check(&context, request, &response))) {
      f.ExpectEq(what, HealthCheckResponse::ServingStatus_Name(response.status()),
                 "SERVING");
    }
  }
  {
    grpc::ClientContext context;
    SetTimeout(context, t);
    HealthCheckRequest request;
    request.set_service("no.Such");
    HealthCheckResponse response;
    f.ExpectStatus("Check(\"no.Such\")",
                   health->Check(&context, request, &response),
                   grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext context;
    SetTimeout(context, t);
    HealthCheckRequest request;
    request.set_service("dynrpc.testing.EchoService");
    std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> watch =
        health->Watch(&context, request);
    HealthCheckResponse response;
    if (f.Expect(watch->Read(&response), "Watch: no first answer")) {
      f.ExpectEq("Watch", HealthCheckResponse::ServingStatus_Name(response.status()),
                 "SERVING");
    }
    context.TryCancel();
    (void)watch->Finish();
  }
}

// Compressed calls both ways: gRPC compresses its requests (gzip, then
// deflate), and asks the dynrpc handler ("x-compress") to compress its
// responses, which gRPC then inflates.
void Compression(Target& t, Failures& f) {
  for (grpc_compression_algorithm algorithm :
       {GRPC_COMPRESS_GZIP, GRPC_COMPRESS_DEFLATE}) {
    const std::string name =
        algorithm == GRPC_COMPRESS_GZIP ? "gzip" : "deflate";
    {
      grpc::ClientContext context;
      SetTimeout(context, t);
      context.set_compression_algorithm(algorithm);
      context.AddMetadata("x-compress", name);
      EchoRequest request;
      request.set_text("compressed");
      request.set_payload(std::string(200 << 10, 'c'));
      EchoReply reply;
      const std::string what = Cat("Echo with ", name);
      if (f.ExpectOk(what, t.stub->Echo(&context, request, &reply))) {
        f.ExpectSameBytes(what, reply.payload(), request.payload());
      }
    }
    {
      grpc::ClientContext context;
      SetTimeout(context, t);
      context.set_compression_algorithm(algorithm);
      StreamSummary summary;
      std::unique_ptr<grpc::ClientWriter<StreamMessage>> writer =
          t.stub->Collect(&context, &summary);
      for (int i = 0; i < 3; ++i) {
        StreamMessage m;
        m.set_sequence(i);
        m.set_payload(std::string(100 << 10, 'w'));
        f.Expect(writer->Write(m), Cat("Collect with ", name, ": write"));
      }
      writer->WritesDone();
      const std::string what = Cat("Collect with ", name);
      if (f.ExpectOk(what, writer->Finish())) {
        f.ExpectEq(what, std::to_string(summary.bytes()),
                   std::to_string(300 << 10));
      }
    }
    {
      grpc::ClientContext context;
      SetTimeout(context, t);
      context.set_compression_algorithm(algorithm);
      context.AddMetadata("x-compress", name);
      std::unique_ptr<grpc::ClientReaderWriter<StreamMessage, StreamMessage>>
          chat = t.stub->Chat(&context);
      const std::string what = Cat("Chat with ", name);
      for (int i = 0; i < 3; ++i) {
        StreamMessage m;
        m.set_sequence(i);
        m.set_payload(std::string(100 << 10, 'b'));
        f.Expect(chat->Write(m), Cat(what, ": write"));
        StreamMessage back;
        if (f.Expect(chat->Read(&back), Cat(what, ": no echo"))) {
          f.ExpectSameBytes(what, back.payload(), m.payload());
        }
      }
      chat->WritesDone();
      f.ExpectOk(what, chat->Finish());
    }
  }
}

// gRPC's reflection client (what grpcurl and grpc_cli speak), v1 and
// v1alpha: the services a dynrpc server lists, and the file that declares
// one, with its imports.
template <typename Reflection>
void ReflectionOf(Target& t, Failures& f, std::string_view version) {
  auto stub = Reflection::ServerReflection::NewStub(t.channel);
  grpc::ClientContext context;
  SetTimeout(context, t);
  auto stream = stub->ServerReflectionInfo(&context);
  typename Reflection::ServerReflectionRequest list;
  list.set_list_services("");
  typename Reflection::ServerReflectionResponse response;
  const std::string what = Cat("reflection ", version);
  if (f.Expect(stream->Write(list) && stream->Read(&response),
               Cat(what, ": no answer to list_services"))) {
    std::string names;
    for (const auto& s : response.list_services_response().service()) {
      names += Cat(s.name(), " ");
    }
    f.ExpectEq(Cat(what, " services"), names,
               "dynrpc.testing.EchoService grpc.health.v1.Health "
               "grpc.reflection.v1.ServerReflection "
               "grpc.reflection.v1alpha.ServerReflection ");
  }
  typename Reflection::ServerReflectionRequest symbol;
  symbol.set_file_containing_symbol("dynrpc.testing.EchoService.Chat");
  if (f.Expect(stream->Write(symbol) && stream->Read(&response),
               Cat(what, ": no answer to file_containing_symbol"))) {
    const auto& files = response.file_descriptor_response().file_descriptor_proto();
    google::protobuf::FileDescriptorProto file;
    if (f.Expect(files.size() >= 1 && file.ParseFromString(files[0]),
                 Cat(what, ": no file descriptor"))) {
      f.ExpectEq(Cat(what, " file"), file.name(), "dynrpc/testing/echo.proto");
      f.ExpectEq(Cat(what, " service"),
                 file.service_size() > 0 ? file.service(0).name() : "",
                 "EchoService");
    }
  }
  typename Reflection::ServerReflectionRequest by_name;
  by_name.set_file_by_filename("grpc/health/v1/health.proto");
  if (f.Expect(stream->Write(by_name) && stream->Read(&response),
               Cat(what, ": no answer to file_by_filename"))) {
    const auto& files = response.file_descriptor_response().file_descriptor_proto();
    google::protobuf::FileDescriptorProto file;
    if (f.Expect(files.size() == 1 && file.ParseFromString(files[0]),
                 Cat(what, ": not one file descriptor by name"))) {
      f.ExpectEq(Cat(what, " file by name"), file.package(), "grpc.health.v1");
    }
  }
  typename Reflection::ServerReflectionRequest unknown;
  unknown.set_file_containing_symbol("no.Such");
  if (f.Expect(stream->Write(unknown) && stream->Read(&response),
               Cat(what, ": no answer for an unknown symbol"))) {
    f.ExpectEq(Cat(what, " unknown symbol"),
               std::to_string(response.error_response().error_code()),
               std::to_string(grpc::StatusCode::NOT_FOUND));
  }
  stream->WritesDone();
  f.ExpectOk(what, stream->Finish());
}

struct V1 {
  using ServerReflection = grpc::reflection::v1::ServerReflection;
  using ServerReflectionRequest = grpc::reflection::v1::ServerReflectionRequest;
  using ServerReflectionResponse =
      grpc::reflection::v1::ServerReflectionResponse;
};
struct V1Alpha {
  using ServerReflection = grpc::reflection::v1alpha::ServerReflection;
  using ServerReflectionRequest =
      grpc::reflection::v1alpha::ServerReflectionRequest;
  using ServerReflectionResponse =
      grpc::reflection::v1alpha::ServerReflectionResponse;
};

void Reflection(Target& t, Failures& f) {
  ReflectionOf<V1>(t, f, "v1");
  ReflectionOf<V1Alpha>(t, f, "v1alpha");
}

struct Scenario {
  std::string_view name;
  void (*run)(Target&, Failures&);
};

constexpr Scenario kScenarios[] = {
    {"unary", Unary},
    {"error", Error},
    {"deadline", Deadline},
    {"cancel", Cancel},
    {"server_streaming", ServerStreaming},
    {"client_streaming", ClientStreaming},
    {"bidi", Bidi},
    {"unknown_method", UnknownMethod},
    {"large", Large},
    {"health", Health},
    {"compression", Compression},
    {"reflection", Reflection},
};

// Runs `scenario` on a channel of its own and prints its PASS or FAIL line.
bool RunAndReport(const std::string& address, const Scenario& scenario) {
  Target target = Connect(address);
  Failures failures;
  scenario.run(target, failures);
  if (failures.ok()) {
    std::printf("PASS %.*s\n", static_cast<int>(scenario.name.size()),
                scenario.name.data());
  } else {
    std::printf("FAIL %.*s: %s\n", static_cast<int>(scenario.name.size()),
                scenario.name.data(), failures.Join().c_str());
  }
  std::fflush(stdout);
  return failures.ok();
}

}  // namespace

int main(int argc, char** argv) {
  auto usage = [] {
    std::string names;
    for (const Scenario& s : kScenarios) names += Cat(s.name, "|");
    std::fprintf(stderr, "usage: grpc_echo_client <host:port> <%sall>\n",
                 names.c_str());
    return 2;
  };
  if (argc != 3) return usage();
  const std::string address = argv[1];
  const std::string_view name = argv[2];
  if (name == "all") {
    std::vector<std::string_view> failed;
    for (const Scenario& s : kScenarios) {
      if (!RunAndReport(address, s)) failed.push_back(s.name);
    }
    if (failed.empty()) {
      std::printf("PASS all\n");
    } else {
      std::printf("FAIL all: %s failed\n", JoinStrings(failed, ", ").c_str());
    }
    std::fflush(stdout);
    return failed.empty() ? 0 : 1;
  }
  for (const Scenario& s : kScenarios) {
    if (s.name == name) return RunAndReport(address, s) ? 0 : 1;
  }
  return usage();
}
