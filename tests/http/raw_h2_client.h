// A test-only HTTP/2 client that speaks cleartext HTTP/2 with prior
// knowledge (h2c) on nghttp2's client session, over a POSIX TCP socket
// driven synchronously with poll(): it sends exactly the headers and body
// bytes a test gives it, on as many streams of one connection as it likes,
// and records everything the server answers per stream. It knows nothing of
// gRPC or dynrpc, so the HTTP plane's wire behaviour can be tested from the
// outside.
//
// Example:
//   absl::StatusOr<std::unique_ptr<RawH2Client>> client =
//       RawH2Client::Connect(port, std::chrono::seconds(5));
//   int32_t id = (*client)->Submit({.path = "/pkg.Service/Method",
//                                   .headers = {{"content-type",
//                                                "application/grpc"}},
//                                   .body = framed_request});
//   ASSERT_THAT((*client)->Run(std::chrono::seconds(5)), IsOk());
//   const RawStream& stream = (*client)->stream(id);
#ifndef DYNRPC_TESTS_HTTP_RAW_H2_CLIENT_H_
#define DYNRPC_TESTS_HTTP_RAW_H2_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct nghttp2_session;

namespace dynrpc::testing {

using RawHeaders = std::vector<std::pair<std::string, std::string>>;

// One request. The pseudo-headers come from `method` and `path`; `headers`
// are sent as they are (names must be lowercase).
struct RawRequest {
  std::string method = "POST";
  std::string path;
  RawHeaders headers;
  std::string body;
  // False: after `body` the request side stays open (no END_STREAM), as a
  // client still sending would leave it.
  bool end_stream = true;
};

// What one stream saw. A trailers-only response (a single HEADERS frame that
// ends the stream) lands in `headers`.
struct RawStream {
  RawHeaders headers;   // the response's header block
  RawHeaders trailers;  // the trailing header block, if any
  std::string data;     // every DATA byte, in order
  // The server ended its side with END_STREAM.
  bool ended = false;
  // The error code of the RST_STREAM the server sent, if it sent one.
  std::optional<uint32_t> reset_code;
  // The stream has closed (either way).
  bool closed = false;
  // DATA payload bytes this client sent on the stream.
  std::size_t data_bytes_sent = 0;
  // nghttp2 could not send a frame of the request (its error code): the
  // stream closed without reaching the server.
  std::optional<int> send_error;

  // The value of the first header / trailer named `name`, if any.
  std::optional<std::string> Header(std::string_view name) const;
  std::optional<std::string> Trailer(std::string_view name) const;
  // grpc-status (or any trailing field) from the trailers, else from a
  // trailers-only header block.
  std::optional<std::string> StatusField(std::string_view name) const;
};

class RawH2Client {
 public:
  // Connects to 127.0.0.1:`port` within `timeout` and queues the connection
  // preface and an empty SETTINGS frame.
  static absl::StatusOr<std::unique_ptr<RawH2Client>> Connect(
      uint16_t port, std::chrono::milliseconds timeout);
  ~RawH2Client();
  RawH2Client(const RawH2Client&) = delete;
  RawH2Client& operator=(const RawH2Client&) = delete;

  // Opens a stream for `request` (sent by the next Run()) and returns its id,
  // or a negative nghttp2 error code.
  int32_t Submit(RawRequest request);
  // Sends and receives until every submitted stream has closed. An error
  // when `timeout` passes first, the server closes the connection, or the
  // session fails; the streams keep what they saw so far either way.
  absl::Status Run(std::chrono::milliseconds timeout);

  // The stream `id` returned by Submit(). Valid while the client lives.
  const RawStream& stream(int32_t id) const;
  // The server sent GOAWAY / closed the TCP connection.
  bool goaway_received() const { return goaway_received_; }
  bool connection_closed() const { return connection_closed_; }

 private:
  struct StreamState {
    RawRequest request;
    std::size_t offset = 0;  // of request.body already handed to nghttp2
    RawStream seen;
  };
  struct SessionDeleter {
    void operator()(nghttp2_session* session) const;
  };

  explicit RawH2Client(int fd);
  absl::Status Init();
  bool AllClosed() const;
  StreamState* Find(int32_t id);

  // nghttp2's callbacks (raw_h2_client.cc), which fill in `streams_`.
  friend struct RawH2Callbacks;

  int fd_;
  std::unique_ptr<nghttp2_session, SessionDeleter> session_;
  // Bytes the session produced that the socket has not taken yet.
  std::string pending_out_;
  std::map<int32_t, std::unique_ptr<StreamState>> streams_;
  bool goaway_received_ = false;
  bool connection_closed_ = false;
};

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_HTTP_RAW_H2_CLIENT_H_
