// Stubs generated with dynrpc_generate(... NAMESPACE dyn): the classes are
// acme::streaming::dyn::Transfer (gRPC's for the same .proto would be
// acme::streaming::Transfer), the messages stay protobuf's, and a call goes
// through as usual.
#include <memory>
#include <type_traits>

#include "dynrpc/dynrpc.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "streaming.dynrpc.pb.h"
#include "support/status_matchers.h"

namespace {

using ::acme::streaming::Chunk;
using ::dynrpc::testing::IsOk;
namespace dyn = ::acme::streaming::dyn;

class Transfer final : public dyn::Transfer::Service {
 public:
  boost::asio::awaitable<absl::StatusOr<Chunk>> Check(
      dynrpc::ServerContext& context, const Chunk& request) override {
    co_return request;
  }
};

TEST(GeneratedNamespaceTest, ClassesLiveInTheNamespaceAndServeAsUsual) {
  EXPECT_STREQ(dyn::Transfer::kServiceName, "acme.streaming.Transfer");
  dynrpc::Config config;
  config.tcp.host = "127.0.0.1";
  dynrpc::Runtime runtime(1);
  Transfer service;
  dynrpc::Server server(runtime.executor(), config);
  ASSERT_THAT(server.AddService(service), IsOk());
  ASSERT_THAT(server.Start(), IsOk());
  absl::StatusOr<std::shared_ptr<dynrpc::Channel>> channel =
      dynrpc::Channel::Create(runtime.executor(), server.address(), config);
  ASSERT_THAT(channel, IsOk());
  dyn::Transfer::Stub stub(*channel);
  dynrpc::ClientContext context;
  Chunk request;
  request.set_sequence(3);
  absl::StatusOr<Chunk> reply = stub.CheckFuture(context, request).get();
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->sequence(), 3);
}

}  // namespace
