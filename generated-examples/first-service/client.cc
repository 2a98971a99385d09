// Calls first.Greeter at ADDRESS (what the server printed): one unary call,
// then a stream.
//
//   client ADDRESS [NAME]
#include <chrono>
#include <iostream>
#include <string>

#include "dynrpc/dynrpc.h"
#include "greeter.dynrpc.pb.h"

// The client's conversation, as a coroutine.
boost::asio::awaitable<absl::Status> Greet(first::Greeter::Stub& stub,
                                           std::string name) {
  dynrpc::ClientContext context;
  context.set_timeout(std::chrono::seconds(5));
  first::HelloRequest request;
  request.set_name(name);
  absl::StatusOr<first::HelloReply> reply =
      co_await stub.SayHello(context, request);
  if (!reply.ok()) co_return reply.status();
  std::cout << reply->message() << "\n";

  dynrpc::ClientContext stream_context;
  stream_context.set_timeout(std::chrono::seconds(5));
  request.set_times(3);
  dynrpc::ClientReader<first::HelloReply> replies =
      stub.SayHellos(stream_context, request);
  first::HelloReply next;
  while (co_await replies.Next(next)) std::cout << next.message() << "\n";
  co_return co_await replies.Finish();  // OK, or why the stream ended
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: client ADDRESS [NAME]\n";
    return 2;
  }
  dynrpc::Runtime runtime;
  absl::StatusOr<std::shared_ptr<dynrpc::Channel>> channel =
      dynrpc::Channel::Create(runtime.executor(), argv[1]);
  if (!channel.ok()) {
    std::cerr << "client: " << channel.status() << "\n";
    return 2;
  }
  first::Greeter::Stub stub(*channel);
  absl::Status done = runtime.Run(Greet(stub, argc > 2 ? argv[2] : "world"));
  if (!done.ok()) {
    std::cerr << "client: " << done << "\n";
    return 1;
  }
}
