// The HTTP/2 request plane's server as a client on the wire sees it: a
// dynrpc::Server on the HTTP plane, called through a raw HTTP/2 client
// (raw_h2_client.h) that sends exactly the frames a test builds, and through
// the real curl binary. Nothing here uses dynrpc's own HTTP client, so the
// two sides cannot agree on a mistake.
//
// What it covers: gRPC unary calls on the root and the bare path, metadata
// as headers and trailers; the root path setting; unknown methods, content
// types and HTTP methods; a message prefix over the size limit (answered
// before the body), a malformed or compressed prefix (only its stream
// fails), other malformed unary requests; large messages and many streams
// on one connection; JSON calls with their status mapping and limits; curl.
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include "dynrpc/dynrpc.h"
#include "dynrpc/testing/echo.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "http/raw_h2_client.h"
#include "support/echo_service.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace dynrpc {
namespace {

using ::dynrpc::testing::EchoReply;
using ::dynrpc::testing::EchoRequest;
using ::dynrpc::testing::EchoServiceImpl;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::RawH2Client;
using ::dynrpc::testing::RawRequest;
using ::dynrpc::testing::RawStream;
using ::dynrpc::testing::Subprocess;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;
using namespace std::chrono_literals;

constexpr auto kTimeout = 10s;
constexpr std::size_t kOneMiB = 1 << 20;
constexpr std::string_view kEcho = "/dynrpc.testing.EchoService/Echo";
constexpr std::string_view kFail = "/dynrpc.testing.EchoService/Fail";
constexpr std::string_view kGenerate = "/dynrpc.testing.EchoService/Generate";
// HTTP/2's RST_STREAM code NO_ERROR (RFC 9113 section 7).
constexpr uint32_t kNoError = 0;

// ---- Building requests ------------------------------------------------------

// A gRPC message prefix: the compressed flag, then the length, big-endian.
std::string Prefix(uint8_t flag, uint32_t length) {
  std::string prefix(1, static_cast<char>(flag));
  for (int shift = 24; shift >= 0; shift -= 8) {
    prefix.push_back(static_cast<char>((length >> shift) & 0xFF));
  }
  return prefix;
}

// `message` framed as gRPC sends it, with compressed flag `flag`.
std::string Framed(const google::protobuf::MessageLite& message,
                   uint8_t flag = 0) {
  std::string bytes = message.SerializeAsString();
  return Prefix(flag, static_cast<uint32_t>(bytes.size())) + bytes;
}

EchoRequest MakeEcho(std::string text, std::string payload = "") {
  EchoRequest request;
  request.set_text(std::move(text));
  request.set_payload(std::move(payload));
  return request;
}

// A gRPC POST of `body` to `path`, as gRPC's own clients send it.
RawRequest Grpc(std::string path, std::string body,
                testing::RawHeaders extra = {}) {
  RawRequest request{
      .path = std::move(path),
      .headers = {{"content-type", "application/grpc"}, {"te", "trailers"}},
      .body = std::move(body)};
  request.headers.insert(request.headers.end(), extra.begin(), extra.end());
  return request;
}

RawRequest Json(std::string path, std::string body) {
  return RawRequest{.path = std::move(path),
                    .headers = {{"content-type", "application/json"}},
                    .body = std::move(body)};
}

// ---- Reading responses ------------------------------------------------------

// The gRPC messages in a response body; a failure if it does not split
// into whole, uncompressed messages.
std::vector<std::string> Messages(std::string_view data) {
  std::vector<std::string> out;
  while (!data.empty()) {
    if (data.size() < 5) {
      ADD_FAILURE() << "a partial message prefix ends the body";
      return out;
    }
    EXPECT_EQ(data[0], 0) << "compressed flag";
    uint32_t length = 0;
    for (int i = 1; i <= 4; ++i) {
      length = (length << 8) | static_cast<uint8_t>(data[i]);
    }
    if (data.size() - 5 < length) {
      ADD_FAILURE() << "a message of " << length << " bytes has only "
                    << data.size() - 5;
      return out;
    }
    out.emplace_back(data.substr(5, length));
    data.remove_prefix(5 + length);
  }
  return out;
}

// grpc-message is percent-encoded (gRPC's PROTOCOL-HTTP2.md).
std::string PercentDecoded(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(s[i + 1]) &&
        std::isxdigit(s[i + 2])) {
      out.push_back(static_cast<char>(
          std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string GrpcMessage(const RawStream& stream) {
  return PercentDecoded(stream.StatusField("grpc-message").value_or(""));
}

// A JSON error body: {"code":N,"message":"..."}.
struct JsonError {
  int code = -1;
  std::string message;
};

std::optional<JsonError> ParseJsonError(const std::string& body) {
  google::protobuf::Struct parsed;
  if (!google::protobuf::util::JsonStringToMessage(body, &parsed).ok()) {
    return std::nullopt;
  }
  const auto& fields = parsed.fields();
  if (fields.size() != 2 || fields.count("code") == 0 ||
      fields.count("message") == 0) {
    return std::nullopt;
  }
  return JsonError{static_cast<int>(fields.at("code").number_value()),
                   fields.at("message").string_value()};
}

// Checks a complete, successful unary gRPC response carrying `want`.
void ExpectEchoReply(const RawStream& stream, const EchoRequest& want) {
  EXPECT_TRUE(stream.ended) << "the server's side ended with END_STREAM";
  EXPECT_EQ(stream.reset_code, std::nullopt);
  EXPECT_THAT(stream.Header(":status"), Optional(std::string("200")));
  EXPECT_THAT(stream.Header("content-type"),
              Optional(std::string("application/grpc")));
  EXPECT_THAT(stream.Trailer("grpc-status"), Optional(std::string("0")));
  std::vector<std::string> messages = Messages(stream.data);
  ASSERT_EQ(messages.size(), 1u);
  EchoReply reply;
  ASSERT_TRUE(reply.ParseFromString(messages[0]));
  EXPECT_EQ(reply.text(), want.text());
  EXPECT_EQ(reply.payload(), want.payload());
}

// Checks a trailers-only gRPC answer with status `code`: one HEADERS frame,
// HTTP 200, no message.
void ExpectTrailersOnly(const RawStream& stream, int code) {
  EXPECT_THAT(stream.Header(":status"), Optional(std::string("200")));
  EXPECT_THAT(stream.Header("content-type"),
              Optional(std::string("application/grpc")));
  EXPECT_THAT(stream.Header("grpc-status"), Optional(std::to_string(code)));
  EXPECT_THAT(stream.trailers, IsEmpty());
  EXPECT_THAT(stream.data, IsEmpty());
  EXPECT_TRUE(stream.ended);
}

// Checks an HTTP-level JSON error: `http_status`, application/json and a
// body {"code": grpc_code, "message": ...}; returns the message.
std::string ExpectJsonError(const RawStream& stream, int http_status,
                            int grpc_code) {
  EXPECT_THAT(stream.Header(":status"), Optional(std::to_string(http_status)));
  EXPECT_THAT(stream.Header("content-type"),
              Optional(std::string("application/json")));
  EXPECT_TRUE(stream.ended);
  std::optional<JsonError> error = ParseJsonError(stream.data);
  EXPECT_TRUE(error.has_value()) << "body: " << stream.data;
  if (!error) return "";
  EXPECT_EQ(error->code, grpc_code) << "body: " << stream.data;
  return error->message;
}

// ---- The fixture ------------------------------------------------------------

class HttpWireTest : public ::testing::Test {
 protected:
  void StartServer(HttpConfig http = {}) {
    Config config;
    config.request_plane = RequestPlaneKind::kHttp;
    config.http = std::move(http);
    config.http.host = "127.0.0.1";
    config.http.port = 0;
    server_ = std::make_unique<Server>(runtime_.executor(), config);
    EXPECT_TRUE(server_->AddService(service_).ok());
    ASSERT_THAT(server_->Start(), IsOk());
    const std::string& address = server_->address();
    port_ = static_cast<uint16_t>(
        std::stoi(address.substr(address.rfind(':') + 1)));
  }

  std::unique_ptr<RawH2Client> Connect() {
    absl::StatusOr<std::unique_ptr<RawH2Client>> client =
        RawH2Client::Connect(port_, kTimeout);
    EXPECT_THAT(client, IsOk());
    return client.ok() ? *std::move(client) : nullptr;
  }

  // Runs one request on a new connection to its end.
  RawStream Call(RawRequest request) {
    std::unique_ptr<RawH2Client> client = Connect();
    if (client == nullptr) return {};
    int32_t id = client->Submit(std::move(request));
    EXPECT_GT(id, 0);
    if (id <= 0) return {};
    EXPECT_THAT(client->Run(kTimeout), IsOk());
    return client->stream(id);
  }

  // A unary Echo on `client`'s connection succeeds: the connection is still
  // usable.
  void ExpectConnectionServes(RawH2Client& client) {
    EchoRequest request = MakeEcho("still here");
    int32_t id = client.Submit(Grpc(std::string(kEcho), Framed(request)));
    ASSERT_GT(id, 0);
    ASSERT_THAT(client.Run(kTimeout), IsOk());
    ExpectEchoReply(client.stream(id), request);
    EXPECT_FALSE(client.goaway_received());
    EXPECT_FALSE(client.connection_closed());
  }

  Runtime runtime_{2};
  EchoServiceImpl service_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

// ---- gRPC
// ---------------------------------------------------------------------

TEST_F(HttpWireTest, GrpcUnaryEchoOnRootAndBarePaths) {
  StartServer();
  const std::string paths[] = {"/v1/rpc" + std::string(kEcho),
                               std::string(kEcho)};
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    EchoRequest request = MakeEcho("hello", std::string("\0\x01\xff", 3));
    RawStream stream = Call(Grpc(path, Framed(request), {{"x-echo", "v"}}));
    ExpectEchoReply(stream, request);
    EXPECT_THAT(stream.Header("x-echo-initial"), Optional(std::string("v")));
    EXPECT_THAT(stream.Trailer("x-echo-trailing"), Optional(std::string("v")));
    // Metadata goes where it belongs, not both ways.
    EXPECT_EQ(stream.Trailer("x-echo-initial"), std::nullopt);
    EXPECT_EQ(stream.Header("x-echo-trailing"), std::nullopt);
  }
}

TEST_F(HttpWireTest, GrpcContentTypeWithProtoSuffixIsGrpc) {
  StartServer();
  EchoRequest request = MakeEcho("suffixed");
  RawRequest call = Grpc(std::string(kEcho), Framed(request));
  call.headers[0].second = "application/grpc+proto";
  ExpectEchoReply(Call(std::move(call)), request);
}

TEST_F(HttpWireTest, ConfiguredRootPathAndBarePathServeOthersAreUnknown) {
  HttpConfig http;
  http.root_path = "/api/x";
  StartServer(http);
  EchoRequest request = MakeEcho("rooted");
  for (std::string path : {"/api/x" + std::string(kEcho), std::string(kEcho)}) {
    SCOPED_TRACE(path);
    ExpectEchoReply(Call(Grpc(path, Framed(request))), request);
  }
  // The default root means nothing to this server.
  RawStream stream =
      Call(Grpc("/v1/rpc" + std::string(kEcho), Framed(request)));
  ExpectTrailersOnly(stream, 12);
  EXPECT_THAT(GrpcMessage(stream), HasSubstr("/v1/rpc"));
}

TEST_F(HttpWireTest, UnknownMethodIsUnimplementedForGrpc) {
  StartServer();
  const std::string paths[] = {
      "/v1/rpc/dynrpc.testing.EchoService/NoSuchMethod",
      "/dynrpc.testing.NoSuchService/Echo",
  };
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    RawStream stream = Call(Grpc(path, Framed(MakeEcho("x"))));
    ExpectTrailersOnly(stream, 12);
    EXPECT_THAT(GrpcMessage(stream), HasSubstr("unknown method"));
  }
  EXPECT_EQ(service_.calls(), 0);
}

TEST_F(HttpWireTest, UnknownMethodIs404ForJson) {
  StartServer();
  RawStream stream =
      Call(Json("/v1/rpc/dynrpc.testing.EchoService/NoSuchMethod", "{}"));
  std::string message = ExpectJsonError(stream, 404, 12);
  EXPECT_THAT(message, HasSubstr("NoSuchMethod"));
}

TEST_F(HttpWireTest, UnsupportedContentTypeIs415) {
  StartServer();
  struct Case {
    std::optional<std::string> content_type;
    std::string named;  // what the message must quote
  };
  const Case cases[] = {{"text/plain", "'text/plain'"}, {std::nullopt, "''"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.content_type.value_or("(none)"));
    RawRequest request;
    request.path = std::string(kEcho);
    request.body = "hello";
    if (c.content_type) {
      request.headers.emplace_back("content-type", *c.content_type);
    }
    std::string message = ExpectJsonError(Call(std::move(request)), 415, 3);
    EXPECT_THAT(message, HasSubstr("content-type " + c.named));
  }
  EXPECT_EQ(service_.calls(), 0);
}

TEST_F(HttpWireTest, MethodOtherThanPostIs405) {
  StartServer();
  for (const char* content_type : {"application/json", "application/grpc"}) {
    for (const char* method : {"GET", "PUT"}) {
      SCOPED_TRACE(std::string(method) + " " + content_type);
      RawRequest request;
      request.method = method;
      request.path = "/v1/rpc" + std::string(kEcho);
      request.headers = {{"content-type", content_type}};
      std::string message = ExpectJsonError(Call(std::move(request)), 405, 3);
      EXPECT_THAT(message, HasSubstr(method));
    }
  }
  EXPECT_EQ(service_.calls(), 0);
}

TEST_F(HttpWireTest, OversizedPrefixIsRefusedBeforeTheBody) {
  HttpConfig http;
  http.max_message_size = kOneMiB;
  StartServer(http);
  std::unique_ptr<RawH2Client> client = Connect();
  ASSERT_NE(client, nullptr);
  const uint32_t announced = (64u << 20) + 4096;
  // Only the prefix; the request side stays open, as a client about to
  // send 64 MiB would leave it.
  int32_t id = client->Submit(RawRequest{
      .path = std::string(kEcho),
      .headers = {{"content-type", "application/grpc"}, {"te", "trailers"}},
      .body = Prefix(0, announced),
      .end_stream = false});
  ASSERT_GT(id, 0);
  ASSERT_THAT(client->Run(kTimeout), IsOk());
  const RawStream& stream = client->stream(id);
  EXPECT_EQ(stream.data_bytes_sent, 5u);
  ExpectTrailersOnly(stream, 8);
  std::string message = GrpcMessage(stream);
  EXPECT_THAT(message, HasSubstr("DYN_HTTP_MAX_MESSAGE_SIZE"));
  EXPECT_THAT(message, HasSubstr(std::to_string(announced)));
  EXPECT_THAT(message, HasSubstr(std::to_string(kOneMiB)));
  // The server told the still-sending client to stop, without error.
  EXPECT_THAT(stream.reset_code, Optional(kNoError));
  EXPECT_EQ(service_.calls(), 0);
  ExpectConnectionServes(*client);
}

TEST_F(HttpWireTest, MalformedPrefixFailsOnlyItsStream) {
  StartServer();
  for (bool end_stream : {true, false}) {
    SCOPED_TRACE(end_stream ? "request ended" : "request left open");
    std::unique_ptr<RawH2Client> client = Connect();
    ASSERT_NE(client, nullptr);
    RawRequest bad = Grpc(std::string(kEcho), Framed(MakeEcho("bad"), 0x07));
    bad.end_stream = end_stream;
    EchoRequest good = MakeEcho("good");
    int32_t a = client->Submit(std::move(bad));
    int32_t b = client->Submit(Grpc(std::string(kEcho), Framed(good)));
    ASSERT_GT(a, 0);
    ASSERT_GT(b, 0);
    ASSERT_THAT(client->Run(kTimeout), IsOk());

    // A gets INTERNAL at once; a client still sending is then told to stop.
    const RawStream& failed = client->stream(a);
    ExpectTrailersOnly(failed, 13);
    EXPECT_THAT(GrpcMessage(failed),
                HasSubstr("malformed gRPC message prefix"));
    if (end_stream) {
      EXPECT_EQ(failed.reset_code, std::nullopt);
    } else {
      EXPECT_THAT(failed.reset_code, Optional(kNoError));
    }
    ExpectEchoReply(client->stream(b), good);
    ExpectConnectionServes(*client);
  }
}

TEST_F(HttpWireTest, BadUnaryRequestsGetAStatus) {
  StartServer();
  const std::string message = Framed(MakeEcho("abc"));
  struct Case {
    std::string name;
    std::string body;
    testing::RawHeaders headers;
    int code;
    std::string says;
  };
  const Case cases[] = {
      {"truncated",
       message.substr(0, message.size() - 2),
       {},
       13,
       "ended inside a message"},
      {"two messages", message + message, {}, 13, "second message"},
      {"no message", "", {}, 13, "without its message"},
      {"bad grpc-timeout",
       message,
       {{"grpc-timeout", "soon"}},
       3,
       "malformed grpc-timeout 'soon'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RawStream stream = Call(Grpc(std::string(kEcho), c.body, c.headers));
    ExpectTrailersOnly(stream, c.code);
    EXPECT_THAT(GrpcMessage(stream), HasSubstr(c.says));
  }
  EXPECT_EQ(service_.calls(), 0);
}

// A caller that never finishes its request is answered at its deadline,
// not held forever (gRPC and JSON alike).
TEST_F(HttpWireTest, AnUnfinishedRequestEndsAtItsDeadline) {
  StartServer();
  RawRequest grpc = Grpc(std::string(kEcho), Prefix(0, 100),
                         {{"grpc-timeout", "100m"}});
  grpc.end_stream = false;
  RawStream stream = Call(std::move(grpc));
  ExpectTrailersOnly(stream, 4);  // DEADLINE_EXCEEDED
  EXPECT_THAT(GrpcMessage(stream), HasSubstr("deadline"));

  RawRequest json = Json("/v1/rpc" + std::string(kEcho), R"({"text":)");
  json.headers.emplace_back("grpc-timeout", "100m");
  json.end_stream = false;
  EXPECT_THAT(ExpectJsonError(Call(std::move(json)), 504, 4),
              HasSubstr("deadline"));
  EXPECT_EQ(service_.calls(), 0);
}

// ---- Compression (gRPC's compression spec) --------------------------------

// `bytes` in gzip's format, by zlib directly (not dynrpc's code).
std::string Gzip(const std::string& bytes) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                         Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&z, bytes.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Gunzip(const std::string& bytes) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out(1 << 22, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

// One message of a body, with its flag.
struct WireMessage {
  uint8_t flag = 0;
  std::string bytes;
};
std::vector<WireMessage> FlaggedMessages(std::string_view data) {
  std::vector<WireMessage> out;
  while (data.size() >= 5) {
    uint32_t length = 0;
    for (int i = 1; i <= 4; ++i) {
      length = (length << 8) | static_cast<uint8_t>(data[i]);
    }
    if (data.size() - 5 < length) break;
    out.push_back({static_cast<uint8_t>(data[0]),
                   std::string(data.substr(5, length))});
    data.remove_prefix(5 + length);
  }
  EXPECT_TRUE(data.empty()) << "a partial message ends the body";
  return out;
}

// The compressed flag without a grpc-encoding naming a compression is
// INTERNAL (a gRPC client that compresses always sends one).
TEST_F(HttpWireTest, CompressedFlagWithoutAnEncodingIsInternal) {
  StartServer();
  std::unique_ptr<RawH2Client> client = Connect();
  ASSERT_NE(client, nullptr);
  int32_t bare =
      client->Submit(Grpc(std::string(kEcho), Framed(MakeEcho("zip"), 1)));
  int32_t identity = client->Submit(Grpc(std::string(kEcho),
                                         Framed(MakeEcho("zip"), 1),
                                         {{"grpc-encoding", "identity"}}));
  ASSERT_GT(bare, 0);
  ASSERT_GT(identity, 0);
  ASSERT_THAT(client->Run(kTimeout), IsOk());
  for (int32_t id : {bare, identity}) {
    const RawStream& stream = client->stream(id);
    EXPECT_THAT(stream.StatusField("grpc-status"), Optional(std::string("13")));
    EXPECT_THAT(stream.StatusField("grpc-message"),
                Optional(HasSubstr("grpc-encoding")));
  }
  EXPECT_EQ(service_.calls(), 0);
  ExpectConnectionServes(*client);
}

// An encoding we do not support: UNIMPLEMENTED, naming those we do, in the
// message and in grpc-accept-encoding.
TEST_F(HttpWireTest, AnUnknownEncodingIsUnimplementedNamingTheSupported) {
  StartServer();
  std::unique_ptr<RawH2Client> client = Connect();
  ASSERT_NE(client, nullptr);
  int32_t id = client->Submit(Grpc(std::string(kEcho),
                                   Framed(MakeEcho("zip"), 1),
                                   {{"grpc-encoding", "br"}}));
  ASSERT_GT(id, 0);
  ASSERT_THAT(client->Run(kTimeout), IsOk());
  const RawStream& stream = client->stream(id);
  EXPECT_THAT(stream.StatusField("grpc-status"), Optional(std::string("12")));
  EXPECT_THAT(stream.StatusField("grpc-message"),
              Optional(AllOf(HasSubstr("'br'"),
                             HasSubstr("identity,deflate,gzip"))));
  EXPECT_THAT(stream.Header("grpc-accept-encoding"),
              Optional(std::string("identity,deflate,gzip")));
  EXPECT_EQ(service_.calls(), 0);
  ExpectConnectionServes(*client);
}

// A gzip request is inflated for the handler; the handler's gzip response
// goes with grpc-encoding and the flag, because the caller accepts gzip.
TEST_F(HttpWireTest, GzipBothWaysWhenTheCallerAcceptsIt) {
  StartServer();
  std::unique_ptr<RawH2Client> client = Connect();
  ASSERT_NE(client, nullptr);
  const std::string payload(50'000, 'z');
  std::string request = MakeEcho("gz", payload).SerializeAsString();
  std::string compressed = Gzip(request);
  ASSERT_LT(compressed.size(), request.size() / 10);
  std::string body =
      Prefix(1, static_cast<uint32_t>(compressed.size())) + compressed;
  int32_t id = client->Submit(Grpc(std::string(kEcho), body,
                                   {{"grpc-encoding", "gzip"},
                                    {"grpc-accept-encoding", "gzip"},
                                    {"x-compress", "gzip"}}));
  ASSERT_GT(id, 0);
  ASSERT_THAT(client->Run(kTimeout), IsOk());
  const RawStream& stream = client->stream(id);
  ASSERT_THAT(stream.StatusField("grpc-status"), Optional(std::string("0")));
  EXPECT_THAT(stream.Header("grpc-encoding"), Optional(std::string("gzip")));
  std::vector<WireMessage> messages = FlaggedMessages(stream.data);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].flag, 1);
  EchoReply reply;
  ASSERT_TRUE(reply.ParseFromString(Gunzip(messages[0].bytes)));
  EXPECT_EQ(reply.text(), "gz");
  EXPECT_EQ(reply.payload(), payload);
}

// A caller that accepts no compression (no grpc-accept-encoding) gets its
// response uncompressed, whatever the handler asked.
TEST_F(HttpWireTest, ACallerThatAcceptsNoCompressionGetsNone) {
  StartServer();
  std::unique_ptr<RawH2Client> client = Connect();
  ASSERT_NE(client, nullptr);
  const std::string payload(50'000, 'z');
  int32_t id = client->Submit(Grpc(std::string(kEcho),
                                   Framed(MakeEcho("plain", payload)),
                                   {{"x-compress", "gzip"}}));
  ASSERT_GT(id, 0);
  ASSERT_THAT(client->Run(kTimeout), IsOk());
  const RawStream& stream = client->stream(id);
  ASSERT_THAT(stream.StatusField("grpc-status"), Optional(std::string("0")));
  EXPECT_EQ(stream.Header("grpc-encoding"), std::nullopt);
  std::vector<std::string> messages = Messages(stream.data);  // flag 0
  ASSERT_EQ(messages.size(), 1u);
  EchoReply reply;
  ASSERT_TRUE(reply.ParseFromString(messages[0]));
  EXPECT_EQ(reply.payload(), payload);
}

// A handler's stream compresses message by message: one written with
// WriteOptions::no_compression goes with flag 0 on a gzip stream.
TEST_F(HttpWireTest, AStreamsMessagesAreCompressedOneByOne) {
  StartServer();
  std::unique_ptr<RawH2Client> client = Connect();
  ASSERT_NE(client, nullptr);
  std::string body;
  for (const char* text : {"squeezed", "uncompressed"}) {
    dynrpc::testing::StreamMessage m;
    m.set_text(text);
    m.set_payload(std::string(50'000, 'm'));
    body += Framed(m);
  }
  int32_t id = client->Submit(
      Grpc("/dynrpc.testing.EchoService/Chat", body,
           {{"grpc-accept-encoding", "identity,gzip"}, {"x-compress", "gzip"}}));
  ASSERT_GT(id, 0);
  ASSERT_THAT(client->Run(kTimeout), IsOk());
  const RawStream& stream = client->stream(id);
  ASSERT_THAT(stream.StatusField("grpc-status"), Optional(std::string("0")));
  EXPECT_THAT(stream.Header("grpc-encoding"), Optional(std::string("gzip")));
  std::vector<WireMessage> messages = FlaggedMessages(stream.data);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].flag, 1);
  EXPECT_EQ(messages[1].flag, 0);
  dynrpc::testing::StreamMessage first, second;
  ASSERT_TRUE(first.ParseFromString(Gunzip(messages[0].bytes)));
  ASSERT_TRUE(second.ParseFromString(messages[1].bytes));
  EXPECT_EQ(first.text(), "squeezed");
  EXPECT_EQ(second.text(), "uncompressed");
}

// ---- JSON
// ---------------------------------------------------------------------

TEST_F(HttpWireTest, JsonEchoRoundTrips) {
  StartServer();
  RawStream stream = Call(Json("/v1/rpc" + std::string(kEcho),
                               R"({"text":"hi","payload":"AAE="})"));
  EXPECT_THAT(stream.Header(":status"), Optional(std::string("200")));
  EXPECT_THAT(stream.Header("content-type"),
              Optional(std::string("application/json")));
  EXPECT_THAT(stream.Header("content-length"),
              Optional(std::to_string(stream.data.size())));
  EchoReply reply;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(stream.data, &reply).ok())
      << stream.data;
  EXPECT_EQ(reply.text(), "hi");
  EXPECT_EQ(reply.payload(), std::string("\x00\x01", 2));
}

TEST_F(HttpWireTest, JsonFailureMapsTheCodeToAnHttpStatus) {
  StartServer();
  struct Case {
    std::string body;
    std::string status;
    std::string want_body;
  };
  const Case cases[] = {
      {R"({"code":5,"message":"nope"})", "404",
       R"({"code":5,"message":"nope"})"},
      {R"({"code":14,"message":"down"})", "503",
       R"({"code":14,"message":"down"})"},
      {R"({"code":8,"message":"full"})", "429",
       R"({"code":8,"message":"full"})"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body);
    RawStream stream = Call(Json("/v1/rpc" + std::string(kFail), c.body));
    EXPECT_THAT(stream.Header(":status"), Optional(c.status));
    EXPECT_THAT(stream.Header("content-type"),
                Optional(std::string("application/json")));
    EXPECT_EQ(stream.data, c.want_body);
  }
}

TEST_F(HttpWireTest, InvalidJsonIs400) {
  StartServer();
  for (std::string body : {std::string("{\"text\":"), std::string("[1,2]"),
                           std::string(R"({"no_such_field":1})")}) {
    SCOPED_TRACE(body);
    std::string message = ExpectJsonError(
        Call(Json("/v1/rpc" + std::string(kEcho), body)), 400, 3);
    EXPECT_THAT(message, HasSubstr("dynrpc.testing.EchoRequest"));
  }
  EXPECT_EQ(service_.calls(), 0);
}

TEST_F(HttpWireTest, JsonBodyOverTheLimitIs429) {
  HttpConfig http;
  http.max_message_size = kOneMiB;
  StartServer(http);
  std::string body =
      R"({"text":")" + std::string(kOneMiB + 1024, 'x') + R"("})";
  std::string message = ExpectJsonError(
      Call(Json("/v1/rpc" + std::string(kEcho), std::move(body))), 429, 8);
  EXPECT_THAT(message, HasSubstr("DYN_HTTP_MAX_MESSAGE_SIZE"));
  EXPECT_THAT(message, HasSubstr(std::to_string(kOneMiB)));
  EXPECT_EQ(service_.calls(), 0);
}

TEST_F(HttpWireTest, JsonOnAStreamingMethodIs501) {
  StartServer();
  std::string message = ExpectJsonError(
      Call(Json("/v1/rpc" + std::string(kGenerate), R"({"count":1})")), 501,
      12);
  EXPECT_THAT(message, HasSubstr("streaming"));
}

// ---- curl
// -----------------------------------------------------------------------

constexpr char kCurl[] = "/usr/bin/curl";

// Runs `command` in /bin/sh and returns its stdout's lines.
std::vector<std::string> Shell(const std::string& command) {
  // Without the proxy variables: the call goes to 127.0.0.1 directly.
  Subprocess sh(
      "/bin/sh",
      {"-c", "unset http_proxy HTTP_PROXY all_proxy ALL_PROXY; " + command},
      {});
  std::vector<std::string> lines;
  while (std::optional<std::string> line = sh.ReadLine(kTimeout)) {
    lines.push_back(*std::move(line));
  }
  return lines;
}

TEST_F(HttpWireTest, CurlCallsJsonOverHttp2PriorKnowledge) {
  ASSERT_EQ(access(kCurl, X_OK), 0)
      << kCurl << " is missing: install Debian's curl (apt-get install curl)";
  StartServer();
  const std::string url = "http://127.0.0.1:" + std::to_string(port_) +
                          "/v1/rpc/dynrpc.testing.EchoService/";

  // Exactly what a user types; the shell adds a newline and curl's exit code.
  std::vector<std::string> lines =
      Shell(std::string(kCurl) +
            " -s --http2-prior-knowledge -H 'content-type: application/json'"
            " -d '{\"text\":\"x\"}' " +
            url + "Echo; rc=$?; echo; echo \"exit=$rc\"");
  ASSERT_EQ(lines.size(), 2u) << ::testing::PrintToString(lines);
  EXPECT_EQ(lines[1], "exit=0");
  EXPECT_THAT(lines[0], HasSubstr(R"("text":"x")"));
  EchoReply reply;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(lines[0], &reply).ok())
      << lines[0];
  EXPECT_EQ(reply.text(), "x");

  // A failing call: the body, then the HTTP status and version curl saw.
  lines =
      Shell(std::string(kCurl) +
            " -s --http2-prior-knowledge -H 'content-type: application/json'"
            " -d '{\"code\":5,\"message\":\"nope\"}'"
            " -w '%{http_code} HTTP/%{http_version}' " +
            url + "Fail; rc=$?; echo; echo \"exit=$rc\"");
  ASSERT_EQ(lines.size(), 2u) << ::testing::PrintToString(lines);
  EXPECT_EQ(lines[0], R"({"code":5,"message":"nope"}404 HTTP/2)");
  EXPECT_EQ(lines[1], "exit=0");
}

}  // namespace
}  // namespace dynrpc
