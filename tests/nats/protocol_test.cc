#include "nats/protocol.h"

#include <memory>

#include "boost/asio/cancellation_signal.hpp"
#include "boost/asio/io_context.hpp"
#include "core/task_group.h"
#include "gmock/gmock.h"
#include "nats/envelope.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace dynrpc::internal::nats {
namespace {

using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;

NatsMessage WithSeq(std::string seq) {
  NatsMessage m;
  m.headers.emplace_back(kSeq, std::move(seq));
  return m;
}

TEST(NatsProtocol, MethodPathsBecomeSubjects) {
  EXPECT_THAT(MethodSubjectSuffix("/helloworld.Greeter/SayHello"),
              Optional(std::string("helloworld.Greeter.SayHello")));
  EXPECT_EQ(ServiceOf("/helloworld.Greeter/SayHello"), "helloworld.Greeter");
  for (const char* bad : {"", "/", "//M", "/Svc/", "Svc/M", "/a b/M", "/S/*"}) {
    EXPECT_EQ(MethodSubjectSuffix(bad), std::nullopt) << bad;
  }
}

TEST(NatsProtocol, CallSubjectsEndWithTheCallNumber) {
  EXPECT_THAT(CallNumber("dynamo.call.abc.42"), Optional(uint64_t{42}));
  EXPECT_EQ(CallNumber("dynamo.call.abc."), std::nullopt);
  EXPECT_EQ(CallNumber("dynamo.call.abc.x1"), std::nullopt);
  EXPECT_EQ(CallNumber("nodot"), std::nullopt);
}

TEST(NatsProtocol, MetadataAndTextSurviveAnyBytes) {
  Metadata metadata = {{"x-a", "1"},
                       {"x-bin", std::string("\0\r\n\xff", 4)},
                       {"empty", ""}};
  std::string encoded = EncodeMetadata(metadata);
  EXPECT_EQ(encoded.find_first_of("\r\n"), std::string::npos);
  EXPECT_THAT(DecodeMetadata(encoded), Optional(metadata));
  EXPECT_EQ(DecodeMetadata("not base64!"), std::nullopt);
  EXPECT_EQ(DecodeMetadata(EncodeText(std::string("\0\0\0\x09", 4))),
            std::nullopt);  // a length past the end
  std::string text = "line one\r\nline two: ü";
  EXPECT_EQ(DecodeText(EncodeText(text)), text);
}

TEST(NatsProtocol, StatusRoundTripsThroughHeaders) {
  NatsMessage m;
  AddStatus(m.headers, absl::NotFoundError("no such\nthing"));
  EXPECT_THAT(StatusFrom(m),
              StatusIs(absl::StatusCode::kNotFound, "no such\nthing"));
  EXPECT_THAT(StatusFrom(NatsMessage{}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("status")));
}

TEST(NatsProtocol, SequenceGapsAreDataLoss) {
  int64_t expected = 0;
  EXPECT_THAT(CheckSequence(WithSeq("0"), &expected), IsOk());
  EXPECT_THAT(CheckSequence(WithSeq("1"), &expected), IsOk());
  EXPECT_EQ(expected, 2);
  EXPECT_THAT(CheckSequence(WithSeq("3"), &expected),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("message 2 was lost")));
  EXPECT_THAT(CheckSequence(NatsMessage{}, &expected),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("unnumbered")));
}

TEST(NatsProtocol, ThePlanesOwnLimitNamesItsVariable) {
  NatsConfig config;
  EXPECT_THAT(CheckMessageSize(config, 1 << 30, "request message"), IsOk());
  config.max_message_size = 100;
  EXPECT_THAT(CheckMessageSize(config, 100, "request message"), IsOk());
  EXPECT_THAT(CheckMessageSize(config, 101, "request message"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "request message of 101 bytes exceeds "
                       "DYN_NATS_MAX_MESSAGE_SIZE=100 bytes"));
}

TEST(NatsEnvelope, HeadersRideAheadOfThePayload) {
  const NatsHeaders headers = {{kType, "open"},
                               {kMetadata, std::string("\0\r\n\xff", 4)},
                               {"k", ""},
                               {"long", std::string(300, 'v')}};
  std::string message;
  AppendEnvelope(headers, message);
  EXPECT_EQ(message.size(), EnvelopeSize(headers));
  message.append("payload");
  NatsHeaders read;
  EXPECT_THAT(ReadEnvelope(message, read), Optional(EnvelopeSize(headers)));
  EXPECT_EQ(read, headers);
  EXPECT_EQ(message.substr(EnvelopeSize(headers)), "payload");

  std::string empty;
  AppendEnvelope({}, empty);
  EXPECT_THAT(ReadEnvelope(empty, read), Optional(std::size_t{2}));
  EXPECT_TRUE(read.empty());
}

TEST(NatsEnvelope, AnythingElseIsNotADynrpcMessage) {
  std::string whole;
  AppendEnvelope({{kType, "end"}, {kCode, "0"}}, whole);
  NatsHeaders read = {{"stale", "x"}};
  // Every truncation of a well-formed envelope is refused, headers cleared.
  for (std::size_t n = 0; n < whole.size(); ++n) {
    EXPECT_EQ(ReadEnvelope(whole.substr(0, n), read), std::nullopt) << n;
    EXPECT_TRUE(read.empty()) << n;
  }
  EXPECT_EQ(ReadEnvelope("plain bytes", read), std::nullopt);
  // Too many headers; an empty key; a length past the end.
  EXPECT_EQ(ReadEnvelope(std::string{kEnvelopeMagic, 65}, read), std::nullopt);
  EXPECT_EQ(ReadEnvelope(std::string{kEnvelopeMagic, 1, 0, 0}, read),
            std::nullopt);
  EXPECT_EQ(ReadEnvelope(std::string{kEnvelopeMagic, 1, 1, 'k', 9, 'v'}, read),
            std::nullopt);
  // A varint that never ends.
  EXPECT_EQ(ReadEnvelope(std::string{kEnvelopeMagic, '\xff', '\xff', '\xff',
                                     '\xff', '\xff', '\xff'},
                         read),
            std::nullopt);
}

// A cancellation that comes while the loop is not waiting (here: during a
// tick; in a server, between the timer's firing and the loop's resumption)
// reaches no operation. The loop must still end before it waits again: a
// draining server waits for it (seen: a NATS server's Shutdown() hung).
TEST(NatsProtocol, HeartbeatsEndOnACancelThatCameBetweenWaits) {
  boost::asio::io_context io;
  TaskGroup tasks(io.get_executor());
  auto signal = std::make_shared<boost::asio::cancellation_signal>();
  int ticks = 0;
  tasks.Spawn(tasks.NewStrand(), EveryHeartbeat([&] {
                ++ticks;
                // On the task's strand, as TaskGroup::CancelAll() emits.
                signal->emit(boost::asio::cancellation_type::terminal);
                return ticks < 2;  // a second tick means the cancel was lost
              }),
              "heartbeats", signal);
  io.run();  // returns once the task has ended
  EXPECT_EQ(ticks, 1);
}

}  // namespace
}  // namespace dynrpc::internal::nats
