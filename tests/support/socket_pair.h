// A connected pair of loopback TCP sockets with small kernel buffers, for
// tests of a connection's writer that must fill the socket with little.
#ifndef DYNRPC_TESTS_SUPPORT_SOCKET_PAIR_H_
#define DYNRPC_TESTS_SUPPORT_SOCKET_PAIR_H_

#include <cstddef>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/strand.hpp"

namespace dynrpc::testing {

struct SocketPair {
  boost::asio::ip::tcp::socket sender;    // its send buffer is small
  boost::asio::ip::tcp::socket receiver;  // its receive buffer is small
  // What the kernel gave the two small buffers, together: more than this,
  // queued while the receiver does not read, cannot all be written.
  std::size_t kernel_buffers = 0;
};

// Connects two sockets on strands of `io` over 127.0.0.1 and asks for
// `kernel_buffer` bytes of send buffer on the sender and of receive buffer
// on the receiver.
inline SocketPair SmallBufferedPair(boost::asio::io_context& io,
                                    int kernel_buffer) {
  namespace asio = boost::asio;
  asio::ip::tcp::acceptor acceptor(io,
                                   {asio::ip::make_address("127.0.0.1"), 0});
  SocketPair pair{asio::ip::tcp::socket(asio::make_strand(io)),
                  asio::ip::tcp::socket(asio::make_strand(io))};
  pair.sender.connect(acceptor.local_endpoint());
  acceptor.accept(pair.receiver);
  pair.sender.set_option(asio::socket_base::send_buffer_size(kernel_buffer));
  pair.receiver.set_option(
      asio::socket_base::receive_buffer_size(kernel_buffer));
  asio::socket_base::send_buffer_size send;
  asio::socket_base::receive_buffer_size receive;
  pair.sender.get_option(send);
  pair.receiver.get_option(receive);
  pair.kernel_buffers = send.value() + receive.value();
  return pair;
}

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_SOCKET_PAIR_H_
