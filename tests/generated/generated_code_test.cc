// Builds and runs the code protoc-gen-dynrpc generates for the plugin's
// testdata (protoc-plugin/testdata/*.proto), so that a golden that
// generator_test accepts is also known to compile and work: a gmock mock of
// a generated StubInterface, and calls through generated Stubs to generated
// Services over a real server, including the methods whose C++ names the
// plugin had to mangle. Streaming methods are in generated_streaming_test.cc.
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/use_future.hpp"
#include "common/types.dynrpc.pb.h"
#include "dynrpc/dynrpc.h"
#include "gmock/gmock.h"
#include "greeter.dynrpc.pb.h"
#include "gtest/gtest.h"
#include "nopackage.dynrpc.pb.h"
#include "support/status_matchers.h"

namespace {

using ::acme::common::Outer_Inner;
using ::acme::greeter::v1::Clashes;
using ::acme::greeter::v1::Greeter;
using ::acme::greeter::v1::HelloReply;
using ::acme::greeter::v1::HelloRequest;
using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Property;

template <typename T>
using Awaitable = boost::asio::awaitable<T>;

HelloReply MakeReply(std::string message) {
  HelloReply reply;
  reply.set_message(std::move(message));
  return reply;
}

HelloRequest MakeRequest(std::string name) {
  HelloRequest request;
  request.set_name(std::move(name));
  return request;
}

// An awaitable that completes at once with `reply`: what a mocked method
// returns.
Awaitable<absl::StatusOr<HelloReply>> ReplyWith(
    absl::StatusOr<HelloReply> reply) {
  co_return reply;
}

// Runs `call` on `executor` and blocks until it completes. Whatever `call`
// borrows must outlive this function's return, which it does when the
// caller's locals are passed.
template <typename T>
T Await(const boost::asio::any_io_executor& executor, Awaitable<T> call) {
  return boost::asio::co_spawn(executor, std::move(call),
                               boost::asio::use_future)
      .get();
}

// --- Mocking ---------------------------------------------------------------

class MockGreeterStub : public Greeter::StubInterface {
 public:
  MOCK_METHOD(Awaitable<absl::StatusOr<HelloReply>>, SayHello,
              (dynrpc::ClientContext & context, const HelloRequest& request),
              (override));
  MOCK_METHOD(Awaitable<absl::StatusOr<google::protobuf::Empty>>, Ping,
              (dynrpc::ClientContext & context,
               const google::protobuf::Empty& request),
              (override));
  MOCK_METHOD(Awaitable<absl::StatusOr<Outer_Inner>>, Echo,
              (dynrpc::ClientContext & context, const Outer_Inner& request),
              (override));
};

// Code under test that depends only on the interface: greets `name` twice
// and joins the replies.
Awaitable<absl::StatusOr<std::string>> GreetTwice(Greeter::StubInterface& stub,
                                                  std::string name) {
  const HelloRequest request = MakeRequest(std::move(name));
  std::string joined;
  for (int i = 0; i < 2; ++i) {
    dynrpc::ClientContext context;  // One per call.
    absl::StatusOr<HelloReply> reply = co_await stub.SayHello(context, request);
    if (!reply.ok()) co_return reply.status();
    joined += (i == 0 ? "" : " / ") + reply->message();
  }
  co_return joined;
}

TEST(GeneratedCodeTest, StubInterfaceCanBeMocked) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, SayHello(_, Property(&HelloRequest::name, "ada")))
      .WillOnce([](dynrpc::ClientContext&, const HelloRequest&) {
        return ReplyWith(MakeReply("hello"));
      })
      .WillOnce([](dynrpc::ClientContext&, const HelloRequest&) {
        return ReplyWith(MakeReply("again"));
      });

  boost::asio::io_context io_context;
  std::future<absl::StatusOr<std::string>> greeting = boost::asio::co_spawn(
      io_context, GreetTwice(stub, "ada"), boost::asio::use_future);
  io_context.run();

  absl::StatusOr<std::string> result = greeting.get();
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(*result, "hello / again");
}

TEST(GeneratedCodeTest, MockedErrorReachesTheCaller) {
  MockGreeterStub stub;
  EXPECT_CALL(stub, SayHello)
      .WillOnce([](dynrpc::ClientContext&, const HelloRequest&) {
        return ReplyWith(absl::UnavailableError("connection lost"));
      });

  boost::asio::io_context io_context;
  std::future<absl::StatusOr<std::string>> greeting = boost::asio::co_spawn(
      io_context, GreetTwice(stub, "ada"), boost::asio::use_future);
  io_context.run();

  EXPECT_THAT(greeting.get(), StatusIs(absl::StatusCode::kUnavailable,
                                       HasSubstr("connection lost")));
}

// --- Registration ----------------------------------------------------------

TEST(GeneratedCodeTest, ServiceRegistersEveryMethodUnderItsProtoName) {
  Clashes::Service service;
  EXPECT_EQ(service.full_name(), "acme.greeter.v1.Clashes");
  std::vector<std::string> paths;
  for (const dynrpc::MethodEntry& method : service.methods()) {
    paths.push_back(method.path);
  }
  const std::string prefix = "/acme.greeter.v1.Clashes/";
  EXPECT_THAT(
      paths,
      ::testing::ElementsAre(
          prefix + "delete", prefix + "class", prefix + "new",
          prefix + "co_await", prefix + "requires", prefix + "NULL",
          prefix + "Stub", prefix + "Service", prefix + "StubInterface",
          prefix + "kServiceName", prefix + "channel_", prefix + "full_name",
          prefix + "methods", prefix + "AddUnaryMethod", prefix + "Clashes",
          prefix + "Foo", prefix + "FooFuture", prefix + "delete_"));
}

// --- Round trips -------------------------------------------------------------

// Greets with the request's greeting (when set) or "Hello"; echoes Outer.Inner
// unchanged. Ping is left to the generated default.
class GreeterImpl final : public Greeter::Service {
 public:
  Awaitable<absl::StatusOr<HelloReply>> SayHello(
      dynrpc::ServerContext& context, const HelloRequest& request) override {
    co_return MakeReply(
        (request.has_greeting() ? request.greeting() : std::string("Hello")) +
        " " + request.name());
  }

  Awaitable<absl::StatusOr<Outer_Inner>> Echo(
      dynrpc::ServerContext& context, const Outer_Inner& request) override {
    co_return request;
  }
};

// Replies to every call with the method path it arrived under.
Awaitable<absl::StatusOr<HelloReply>> ReplyWithPath(
    dynrpc::ServerContext& context) {
  co_return MakeReply(context.method());
}

// Implements every method of Clashes, under its mangled C++ name.
class ClashesImpl final : public Clashes::Service {
 public:
  using Reply = Awaitable<absl::StatusOr<HelloReply>>;
  using Context = dynrpc::ServerContext;

  Reply delete_2(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply class_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply new_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply co_await_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply requires_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply NULL_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply Stub_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply Service_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply StubInterface_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply kServiceName_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply channel_2(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply full_name_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply methods_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply AddUnaryMethod_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply Clashes_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply Foo(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply FooFuture_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
  Reply delete_(Context& c, const HelloRequest&) override {
    return ReplyWithPath(c);
  }
};

// The service of a file without a package: its classes are global.
class PingerImpl final : public ::Pinger::Service {
 public:
  Awaitable<absl::StatusOr<::PingReply>> Ping(
      dynrpc::ServerContext& context, const ::PingRequest& request) override {
    ::PingReply reply;
    reply.set_sequence(request.sequence() + 1);
    co_return reply;
  }
};

dynrpc::Config LoopbackConfig() {
  dynrpc::Config config;
  config.tcp.host = "127.0.0.1";
  return config;
}

// A server hosting the three services and a channel to it, on one runtime.
class GeneratedRoundTripTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EXPECT_TRUE(server_.AddService(greeter_).ok());
    EXPECT_TRUE(server_.AddService(clashes_).ok());
    EXPECT_TRUE(server_.AddService(pinger_).ok());
    ASSERT_THAT(server_.Start(), IsOk());
    absl::StatusOr<std::shared_ptr<dynrpc::Channel>> channel =
        dynrpc::Channel::Create(runtime_.executor(), server_.address(),
                                config_);
    ASSERT_THAT(channel, IsOk());
    channel_ = *std::move(channel);
  }

  // Members are destroyed in reverse: the channel and the server before the
  // services they reach and the runtime they run on.
  dynrpc::Runtime runtime_{2};
  const dynrpc::Config config_ = LoopbackConfig();
  GreeterImpl greeter_;
  ClashesImpl clashes_;
  PingerImpl pinger_;
  dynrpc::Server server_{runtime_.executor(), config_};
  std::shared_ptr<dynrpc::Channel> channel_;
};

TEST_F(GeneratedRoundTripTest, CoroutineCallReturnsTheReply) {
  Greeter::Stub stub(channel_);
  HelloRequest request = MakeRequest("ada");
  request.set_greeting("Hi");
  dynrpc::ClientContext context;

  absl::StatusOr<HelloReply> reply =
      Await(runtime_.executor(), stub.SayHello(context, request));

  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->message(), "Hi ada");
}

TEST_F(GeneratedRoundTripTest, FutureCallReturnsTheReply) {
  Greeter::Stub stub(channel_);
  const HelloRequest request = MakeRequest("grace");
  dynrpc::ClientContext context;

  std::future<absl::StatusOr<HelloReply>> reply =
      stub.SayHelloFuture(context, request);

  absl::StatusOr<HelloReply> result = reply.get();
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->message(), "Hello grace");
}

TEST_F(GeneratedRoundTripTest, NestedTypesAndOptionalFieldsRoundTrip) {
  Greeter::Stub stub(channel_);
  Outer_Inner request;
  request.set_text("inner");
  request.set_count(0);  // Set to its default: has_count() must survive.
  dynrpc::ClientContext context;

  absl::StatusOr<Outer_Inner> reply =
      Await(runtime_.executor(), stub.Echo(context, request));

  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->text(), "inner");
  EXPECT_TRUE(reply->has_count());
}

TEST_F(GeneratedRoundTripTest, MethodNotOverriddenIsUnimplemented) {
  Greeter::Stub stub(channel_);
  const google::protobuf::Empty request;
  dynrpc::ClientContext context;

  EXPECT_THAT(Await(runtime_.executor(), stub.Ping(context, request)),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("/acme.greeter.v1.Greeter/Ping")));
}

TEST_F(GeneratedRoundTripTest, ServiceWithoutPackageRoundTrips) {
  ::Pinger::Stub stub(channel_);
  ::PingRequest request;
  request.set_sequence(41);
  dynrpc::ClientContext context;

  absl::StatusOr<::PingReply> reply = stub.PingFuture(context, request).get();

  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->sequence(), 42);
}

TEST_F(GeneratedRoundTripTest, MangledMethodsCallTheirProtoMethods) {
  using CoroutineForm = Awaitable<absl::StatusOr<HelloReply>> (
      Clashes::Stub::*)(dynrpc::ClientContext&, const HelloRequest&);
  using FutureForm = std::future<absl::StatusOr<HelloReply>> (Clashes::Stub::*)(
      dynrpc::ClientContext&, const HelloRequest&);
  const struct {
    CoroutineForm call;
    FutureForm call_future;
    std::string path;
  } kCases[] = {
      {&Clashes::Stub::delete_2, &Clashes::Stub::delete_2Future,
       "/acme.greeter.v1.Clashes/delete"},
      {&Clashes::Stub::class_, &Clashes::Stub::class_Future,
       "/acme.greeter.v1.Clashes/class"},
      {&Clashes::Stub::new_, &Clashes::Stub::new_Future,
       "/acme.greeter.v1.Clashes/new"},
      {&Clashes::Stub::co_await_, &Clashes::Stub::co_await_Future,
       "/acme.greeter.v1.Clashes/co_await"},
      {&Clashes::Stub::requires_, &Clashes::Stub::requires_Future,
       "/acme.greeter.v1.Clashes/requires"},
      {&Clashes::Stub::NULL_, &Clashes::Stub::NULL_Future,
       "/acme.greeter.v1.Clashes/NULL"},
      {&Clashes::Stub::Stub_, &Clashes::Stub::Stub_Future,
       "/acme.greeter.v1.Clashes/Stub"},
      {&Clashes::Stub::Service_, &Clashes::Stub::Service_Future,
       "/acme.greeter.v1.Clashes/Service"},
      {&Clashes::Stub::StubInterface_, &Clashes::Stub::StubInterface_Future,
       "/acme.greeter.v1.Clashes/StubInterface"},
      {&Clashes::Stub::kServiceName_, &Clashes::Stub::kServiceName_Future,
       "/acme.greeter.v1.Clashes/kServiceName"},
      {&Clashes::Stub::channel_2, &Clashes::Stub::channel_2Future,
       "/acme.greeter.v1.Clashes/channel_"},
      {&Clashes::Stub::full_name_, &Clashes::Stub::full_name_Future,
       "/acme.greeter.v1.Clashes/full_name"},
      {&Clashes::Stub::methods_, &Clashes::Stub::methods_Future,
       "/acme.greeter.v1.Clashes/methods"},
      {&Clashes::Stub::AddUnaryMethod_, &Clashes::Stub::AddUnaryMethod_Future,
       "/acme.greeter.v1.Clashes/AddUnaryMethod"},
      {&Clashes::Stub::Clashes_, &Clashes::Stub::Clashes_Future,
       "/acme.greeter.v1.Clashes/Clashes"},
      {&Clashes::Stub::Foo, &Clashes::Stub::FooFuture,
       "/acme.greeter.v1.Clashes/Foo"},
      {&Clashes::Stub::FooFuture_, &Clashes::Stub::FooFuture_Future,
       "/acme.greeter.v1.Clashes/FooFuture"},
      {&Clashes::Stub::delete_, &Clashes::Stub::delete_Future,
       "/acme.greeter.v1.Clashes/delete_"},
  };
  Clashes::Stub stub(channel_);
  const HelloRequest request = MakeRequest("x");
  for (const auto& test_case : kCases) {
    SCOPED_TRACE(test_case.path);
    dynrpc::ClientContext context;
    absl::StatusOr<HelloReply> reply =
        Await(runtime_.executor(), (stub.*test_case.call)(context, request));
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->message(), test_case.path);

    dynrpc::ClientContext future_context;
    absl::StatusOr<HelloReply> future_reply =
        (stub.*test_case.call_future)(future_context, request).get();
    ASSERT_THAT(future_reply, IsOk());
    EXPECT_EQ(future_reply->message(), test_case.path);
  }
}

}  // namespace
