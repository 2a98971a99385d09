#include "http/raw_h2_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dynrpc::testing {

namespace {

// Read and write sizes: small enough to interleave sending a large body with
// reading the WINDOW_UPDATEs that let it continue.
constexpr std::size_t kChunk = 64 * 1024;

using Clock = std::chrono::steady_clock;

std::optional<std::string> Find(const RawHeaders& headers,
                                std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

absl::Status Errno(std::string_view what) {
  return absl::UnavailableError(std::string(what) + ": " +
                                std::strerror(errno));
}

// Milliseconds left until `deadline` (0 once it has passed).
int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 0));
}

nghttp2_nv Nv(const std::string& name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
          name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

std::optional<std::string> RawStream::Header(std::string_view name) const {
  return Find(headers, name);
}

std::optional<std::string> RawStream::Trailer(std::string_view name) const {
  return Find(trailers, name);
}

std::optional<std::string> RawStream::StatusField(std::string_view name) const {
  if (std::optional<std::string> v = Find(trailers, name)) return v;
  return Find(headers, name);
}

// The nghttp2 callbacks; `user` is the RawH2Client.
struct RawH2Callbacks {
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                      const uint8_t* name, size_t namelen, const uint8_t* value,
                      size_t valuelen, uint8_t, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto* s = static_cast<RawH2Client*>(user)->Find(frame->hd.stream_id);
    if (s == nullptr) return 0;
    RawHeaders& block = frame->headers.cat == NGHTTP2_HCAT_HEADERS
                            ? s->seen.trailers
                            : s->seen.headers;
    block.emplace_back(
        std::string(reinterpret_cast<const char*>(name), namelen),
        std::string(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }

  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                         void* user) {
    auto* self = static_cast<RawH2Client*>(user);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      self->goaway_received_ = true;
      return 0;
    }
    auto* s = self->Find(frame->hd.stream_id);
    if (s == nullptr) return 0;
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
      s->seen.reset_code = frame->rst_stream.error_code;
    } else if ((frame->hd.type == NGHTTP2_HEADERS ||
                frame->hd.type == NGHTTP2_DATA) &&
               (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      s->seen.ended = true;
    }
    return 0;
  }

  static int OnFrameSend(nghttp2_session*, const nghttp2_frame* frame,
                         void* user) {
    if (frame->hd.type != NGHTTP2_DATA) return 0;
    auto* s = static_cast<RawH2Client*>(user)->Find(frame->hd.stream_id);
    if (s != nullptr) s->seen.data_bytes_sent += frame->hd.length;
    return 0;
  }

  static int OnFrameNotSend(nghttp2_session*, const nghttp2_frame* frame,
                            int error, void* user) {
    auto* s = static_cast<RawH2Client*>(user)->Find(frame->hd.stream_id);
    if (s != nullptr) s->seen.send_error = error;
    return 0;
  }

  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id,
                         const uint8_t* data, size_t len, void* user) {
    auto* s = static_cast<RawH2Client*>(user)->Find(stream_id);
    if (s != nullptr)
      s->seen.data.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t,
                           void* user) {
    auto* s = static_cast<RawH2Client*>(user)->Find(stream_id);
    if (s != nullptr) s->seen.closed = true;
    return 0;
  }

  // Hands nghttp2 the request body; then either ends the stream or, for a
  // request left open, defers forever (the stream stays half-open).
  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf,
                          size_t length, uint32_t* data_flags,
                          nghttp2_data_source* source, void*) {
    auto* s = static_cast<RawH2Client::StreamState*>(source->ptr);
    const std::string& body = s->request.body;
    std::size_t n = std::min(length, body.size() - s->offset);
    std::memcpy(buf, body.data() + s->offset, n);
    s->offset += n;
    if (s->offset == body.size()) {
      if (s->request.end_stream) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      } else if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(n);
  }
};

void RawH2Client::SessionDeleter::operator()(nghttp2_session* session) const {
  nghttp2_session_del(session);
}

RawH2Client::RawH2Client(int fd) : fd_(fd) {}

RawH2Client::~RawH2Client() {
  session_.reset();
  close(fd_);
}

absl::StatusOr<std::unique_ptr<RawH2Client>> RawH2Client::Connect(
    uint16_t port, std::chrono::milliseconds timeout) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  std::unique_ptr<RawH2Client> client(new RawH2Client(fd));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) return Errno("connect");
    pollfd p{fd, POLLOUT, 0};
    int ready = poll(&p, 1, static_cast<int>(timeout.count()));
    if (ready < 0) return Errno("poll");
    if (ready == 0) return absl::DeadlineExceededError("connect timed out");
    int error = 0;
    socklen_t len = sizeof error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) {
      errno = error;
      return Errno("connect");
    }
  }
  if (absl::Status s = client->Init(); !s.ok()) return s;
  return client;
}

absl::Status RawH2Client::Init() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) {
    return absl::InternalError("nghttp2_session_callbacks_new failed");
  }
  nghttp2_session_callbacks_set_on_header_callback(callbacks,
                                                   &RawH2Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      callbacks, &RawH2Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_frame_send_callback(
      callbacks, &RawH2Callbacks::OnFrameSend);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(
      callbacks, &RawH2Callbacks::OnFrameNotSend);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      callbacks, &RawH2Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(
      callbacks, &RawH2Callbacks::OnStreamClose);
  nghttp2_session* session = nullptr;
  int rv = nghttp2_session_client_new(&session, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    return absl::InternalError(std::string("nghttp2_session_client_new: ") +
                               nghttp2_strerror(rv));
  }
  session_.reset(session);
  nghttp2_settings_entry no_push{NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
  rv = nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, &no_push, 1);
  if (rv != 0) {
    return absl::InternalError(std::string("nghttp2_submit_settings: ") +
                               nghttp2_strerror(rv));
  }
  return absl::OkStatus();
}

int32_t RawH2Client::Submit(RawRequest request) {
  auto state = std::make_unique<StreamState>();
  state->request = std::move(request);
  const RawRequest& r = state->request;
  const std::string kMethod = ":method", kScheme = ":scheme", kHttp = "http",
                    kAuthority = ":authority", kHost = "127.0.0.1",
                    kPath = ":path";
  std::vector<nghttp2_nv> nv = {Nv(kMethod, r.method), Nv(kScheme, kHttp),
                                Nv(kAuthority, kHost), Nv(kPath, r.path)};
  for (const auto& [name, value] : r.headers) nv.push_back(Nv(name, value));
  nghttp2_data_provider provider{};
  provider.source.ptr = state.get();
  provider.read_callback = &RawH2Callbacks::ReadBody;
  // A request that ends with no body ends with its HEADERS frame.
  bool headers_only = r.body.empty() && r.end_stream;
  int32_t id =
      nghttp2_submit_request(session_.get(), nullptr, nv.data(), nv.size(),
                             headers_only ? nullptr : &provider, nullptr);
  if (id > 0) streams_[id] = std::move(state);
  return id;
}

const RawStream& RawH2Client::stream(int32_t id) const {
  return streams_.at(id)->seen;
}

RawH2Client::StreamState* RawH2Client::Find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

bool RawH2Client::AllClosed() const {
  return std::all_of(streams_.begin(), streams_.end(),
                     [](const auto& s) { return s.second->seen.closed; });
}

absl::Status RawH2Client::Run(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  nghttp2_session* session = session_.get();
  for (;;) {
    while (pending_out_.size() < kChunk) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session, &data);
      if (n < 0) {
        return absl::InternalError(std::string("nghttp2_session_mem_send: ") +
                                   nghttp2_strerror(static_cast<int>(n)));
      }
      if (n == 0) break;
      pending_out_.append(reinterpret_cast<const char*>(data), n);
    }
    if (AllClosed() && pending_out_.empty()) return absl::OkStatus();
    if (connection_closed_) {
      return absl::UnavailableError("the server closed the connection");
    }
    if (pending_out_.empty() && !nghttp2_session_want_read(session) &&
        !nghttp2_session_want_write(session)) {
      return absl::UnavailableError(
          "the HTTP/2 session has ended (GOAWAY) with streams open");
    }
    pollfd p{fd_, POLLIN, 0};
    if (!pending_out_.empty()) p.events |= POLLOUT;
    int ready = poll(&p, 1, MillisLeft(deadline));
    if (ready < 0 && errno != EINTR) return Errno("poll");
    if (ready == 0) {
      return absl::DeadlineExceededError("streams still open after " +
                                         std::to_string(timeout.count()) +
                                         " ms");
    }
    if (ready < 0) continue;
    if (p.revents & POLLOUT) {
      ssize_t n = send(fd_, pending_out_.data(),
                       std::min(pending_out_.size(), kChunk), MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) return Errno("send");
      if (n > 0) pending_out_.erase(0, n);
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      uint8_t buf[kChunk];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno != EAGAIN && errno != EINTR) return Errno("recv");
      if (n == 0) {
        connection_closed_ = true;
        continue;  // report it once what was received is accounted for
      }
      if (n > 0) {
        ssize_t rv = nghttp2_session_mem_recv(session, buf, n);
        if (rv < 0) {
          return absl::InternalError(std::string("nghttp2_session_mem_recv: ") +
                                     nghttp2_strerror(static_cast<int>(rv)));
        }
      }
    }
  }
}

}  // namespace dynrpc::testing
