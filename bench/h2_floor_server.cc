// The floor any HTTP/2 request plane pays: a minimal nghttp2 echo server.
// Each request's body is kept in memory and sent back as the response body
// with status 200 (content-type copied from the request); no RPC at all.
// Plain h2c with prior knowledge over loopback TCP, TCP_NODELAY, one thread
// (as dynrpc_server has one runtime thread) polling every connection:
// everything a read() brings is handed to nghttp2 and everything it answers
// goes out in one write(). Measured with h2load (see BM_H2load in
// rpc_bench.cc).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench_util.h"

namespace {

// Windows large enough that flow control never holds an echo back.
constexpr int32_t kStreamWindow = 64 << 20;
constexpr int32_t kConnectionWindow = 1 << 30;

struct Stream {
  std::string content_type;
  std::string body;    // the request, then the response
  size_t sent = 0;     // response bytes handed to nghttp2
};

struct Connection {
  int fd = -1;
  nghttp2_session* session = nullptr;
  std::map<int32_t, Stream> streams;
  std::string out;      // nghttp2's output the socket has not taken yet
  size_t out_sent = 0;  // of `out`

  ~Connection() {
    if (session != nullptr) nghttp2_session_del(session);
    if (fd >= 0) close(fd);
  }
};

ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                 uint32_t* flags, nghttp2_data_source* source, void*) {
  auto* stream = static_cast<Stream*>(source->ptr);
  size_t n = std::min(length, stream->body.size() - stream->sent);
  std::memcpy(buf, stream->body.data() + stream->sent, n);
  stream->sent += n;
  if (stream->sent == stream->body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    static_cast<Connection*>(user)->streams[frame->hd.stream_id];
  }
  return 0;
}

int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
             size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
             void* user) {
  auto& streams = static_cast<Connection*>(user)->streams;
  auto it = streams.find(frame->hd.stream_id);
  if (it != streams.end() &&
      std::string_view(reinterpret_cast<const char*>(name), namelen) ==
          "content-type") {
    it->second.content_type.assign(reinterpret_cast<const char*>(value),
                                   valuelen);
  }
  return 0;
}

int OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id,
                const uint8_t* data, size_t len, void* user) {
  auto& streams = static_cast<Connection*>(user)->streams;
  auto it = streams.find(stream_id);
  if (it != streams.end()) {
    it->second.body.append(reinterpret_cast<const char*>(data), len);
  }
  return 0;
}

// The request is complete (END_STREAM on its HEADERS or DATA): answer it.
int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame,
                void* user) {
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    return 0;
  }
  auto& streams = static_cast<Connection*>(user)->streams;
  auto it = streams.find(frame->hd.stream_id);
  if (it == streams.end()) return 0;
  Stream& stream = it->second;
  std::string length = std::to_string(stream.body.size());
  auto nv = [](std::string_view name, std::string_view value) {
    return nghttp2_nv{
        reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
        reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
        name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
  };
  nghttp2_nv headers[] = {
      nv(":status", "200"),
      nv("content-type", stream.content_type.empty()
                             ? std::string_view("application/octet-stream")
                             : std::string_view(stream.content_type)),
      nv("content-length", length)};
  nghttp2_data_provider body;
  body.source.ptr = &stream;
  body.read_callback = ReadBody;
  return nghttp2_submit_response(session, frame->hd.stream_id, headers,
                                 std::size(headers), &body) == 0
             ? 0
             : NGHTTP2_ERR_CALLBACK_FAILURE;
}

int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  static_cast<Connection*>(user)->streams.erase(stream_id);
  return 0;
}

// Hands nghttp2's output to the socket, in as few writes as it can, until
// nghttp2 has nothing more or the socket takes no more (then wait for
// POLLOUT). False: the connection is done.
bool Flush(Connection& c) {
  for (;;) {
    if (c.out_sent == c.out.size()) {
      c.out.clear();
      c.out_sent = 0;
      for (;;) {
        const uint8_t* data;
        ssize_t n = nghttp2_session_mem_send(c.session, &data);
        if (n < 0) return false;
        if (n == 0) break;
        c.out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
        if (c.out.size() >= (1 << 20)) break;
      }
      if (c.out.empty()) return true;
    }
    ssize_t k = write(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent);
    if (k < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    c.out_sent += static_cast<size_t>(k);
  }
}

// Reads what the socket has and hands it to nghttp2. False: the connection is
// done.
bool Receive(Connection& c) {
  static std::string in(256 << 10, '\0');
  for (;;) {
    ssize_t k = read(c.fd, in.data(), in.size());
    if (k == 0) return false;
    if (k < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    if (nghttp2_session_mem_recv(c.session,
                                 reinterpret_cast<const uint8_t*>(in.data()),
                                 static_cast<size_t>(k)) < 0) {
      return false;
    }
    if (static_cast<size_t>(k) < in.size()) return true;
  }
}

std::unique_ptr<Connection> Accept(int fd) {
  auto c = std::make_unique<Connection>();
  c->fd = fd;
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks,
                                                          OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
                                                            OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, OnFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks,
                                                         OnStreamClose);
  nghttp2_session_server_new(&c->session, callbacks, c.get());
  nghttp2_session_callbacks_del(callbacks);

  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow}};
  nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings,
                          std::size(settings));
  nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                        kConnectionWindow);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  bench::PinToCpu(bench::CpuFlag(argc, argv));
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener, 128) != 0) {
    std::perror("h2_floor_server");
    return 1;
  }
  socklen_t size = sizeof address;
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size);
  bench::AnnounceAddress("127.0.0.1:" + std::to_string(ntohs(address.sin_port)));
  fcntl(listener, F_SETFL, O_NONBLOCK);
  std::vector<std::unique_ptr<Connection>> connections;
  std::vector<pollfd> polled;
  for (;;) {
    polled.assign(1, pollfd{listener, POLLIN, 0});
    for (const auto& c : connections) {
      short events = POLLIN;
      if (c->out_sent < c->out.size()) events |= POLLOUT;
      polled.push_back(pollfd{c->fd, events, 0});
    }
    if (poll(polled.data(), polled.size(), -1) < 0) continue;
    for (size_t i = connections.size(); i-- > 0;) {
      Connection& c = *connections[i];
      short revents = polled[i + 1].revents;
      bool alive = true;
      if (revents & (POLLIN | POLLHUP | POLLERR)) alive = Receive(c);
      if (alive) alive = Flush(c);
      if (alive && !nghttp2_session_want_read(c.session) &&
          !nghttp2_session_want_write(c.session) && c.out_sent == c.out.size()) {
        alive = false;
      }
      if (!alive) connections.erase(connections.begin() + static_cast<long>(i));
    }
    if (polled[0].revents & POLLIN) {
      for (;;) {
        int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
        if (fd < 0) break;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        connections.push_back(Accept(fd));
        if (!Flush(*connections.back())) connections.pop_back();
      }
    }
  }
}
