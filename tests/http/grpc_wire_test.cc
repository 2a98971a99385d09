#include "http/grpc_wire.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace dynrpc::internal::http {

// Messages compare with their bytes, in these tests.
bool operator==(const GrpcMessage& m, std::string_view bytes) {
  return m.bytes == bytes;
}
void PrintTo(const GrpcMessage& m, std::ostream* os) {
  *os << '"' << m.bytes << '"';
}

namespace {

using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;
using namespace std::chrono_literals;

// A message as it travels: prefix, then payload.
std::string Frame(std::string_view payload) {
  return EncodeGrpcPrefix(static_cast<uint32_t>(payload.size())) +
         std::string(payload);
}

// Every byte value once, in order.
std::string AllBytes() {
  std::string s;
  for (int c = 0; c < 256; ++c) s.push_back(static_cast<char>(c));
  return s;
}

// ---------------------------------------------------------------------------
// EncodeGrpcPrefix

TEST(GrpcPrefix, FlagZeroThenBigEndianLength) {
  struct Case {
    uint32_t length;
    std::string want;
  };
  const Case cases[] = {
      {0, std::string("\0\0\0\0\0", 5)},
      {5, std::string("\0\0\0\0\x05", 5)},
      {0x01020304, std::string("\0\x01\x02\x03\x04", 5)},
      {0x80FF7F00, std::string("\0\x80\xFF\x7F\0", 5)},
      {0xFFFFFFFF, std::string("\0\xFF\xFF\xFF\xFF", 5)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.length);
    std::string prefix = EncodeGrpcPrefix(c.length);
    ASSERT_EQ(prefix.size(), kGrpcPrefixSize);
    EXPECT_EQ(prefix, c.want);
  }
}

// ---------------------------------------------------------------------------
// GrpcMessageDecoder

TEST(GrpcMessageDecoder, StartsAtBoundary) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  EXPECT_TRUE(decoder.AtBoundary());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(GrpcMessageDecoder, OneMessageInOneFeed) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  std::vector<GrpcMessage> out;
  ASSERT_THAT(decoder.Feed(Frame("hello"), "request", out), IsOk());
  EXPECT_THAT(out, ElementsAre("hello"));
  EXPECT_TRUE(decoder.AtBoundary());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(GrpcMessageDecoder, EmptyFeedDoesNothing) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  std::vector<GrpcMessage> out;
  ASSERT_THAT(decoder.Feed("", "request", out), IsOk());
  EXPECT_THAT(out, IsEmpty());
  EXPECT_TRUE(decoder.AtBoundary());

  // Also in the middle of a prefix and of a payload.
  std::string frame = Frame("abc");
  ASSERT_THAT(decoder.Feed(frame.substr(0, 2), "request", out), IsOk());
  ASSERT_THAT(decoder.Feed("", "request", out), IsOk());
  EXPECT_EQ(decoder.buffered(), 2u);
  ASSERT_THAT(decoder.Feed(frame.substr(2, 4), "request", out), IsOk());
  ASSERT_THAT(decoder.Feed("", "request", out), IsOk());
  EXPECT_EQ(decoder.buffered(), 6u);
  EXPECT_THAT(out, IsEmpty());
  ASSERT_THAT(decoder.Feed(frame.substr(6), "request", out), IsOk());
  EXPECT_THAT(out, ElementsAre("abc"));
}

TEST(GrpcMessageDecoder, EmptyMessageIsCompleteWithItsPrefix) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  std::vector<GrpcMessage> out;
  ASSERT_THAT(decoder.Feed(Frame(""), "request", out), IsOk());
  EXPECT_THAT(out, ElementsAre(""));
  EXPECT_TRUE(decoder.AtBoundary());
}

TEST(GrpcMessageDecoder, EmptyMessageWithZeroLimit) {
  GrpcMessageDecoder decoder(0, "LIMIT");
  std::vector<GrpcMessage> out;
  ASSERT_THAT(decoder.Feed(Frame("") + Frame(""), "request", out), IsOk());
  EXPECT_THAT(out, ElementsAre("", ""));
  EXPECT_THAT(decoder.Feed(Frame("x"), "request", out),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "request message of 1 bytes exceeds LIMIT=0 bytes"));
}

TEST(GrpcMessageDecoder, AppendsToWhatOutHolds) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  std::vector<GrpcMessage> out = {GrpcMessage{"earlier"}};
  ASSERT_THAT(
      decoder.Feed(Frame("a") + Frame("") + Frame("bc"), "response", out),
      IsOk());
  EXPECT_THAT(out, ElementsAre("earlier", "a", "", "bc"));
}

TEST(GrpcMessageDecoder, MessageBytesArePreservedExactly) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  std::vector<GrpcMessage> out;
  std::string all = AllBytes();
  ASSERT_THAT(decoder.Feed(Frame(all), "request", out), IsOk());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], all);
}

// The same messages, whatever the chunking.
std::vector<std::string> SampleMessages() {
  std::string big(300, '\0');  // a length needing two bytes
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i);
  return {"hello", "", "x", big, "", std::string("\0\x01", 2), ""};
}

std::string Concatenated(const std::vector<std::string>& messages) {
  std::string wire;
  for (const std::string& m : messages) wire += Frame(m);
  return wire;
}

TEST(GrpcMessageDecoder, EverySplitPoint) {
  const std::vector<std::string> messages = SampleMessages();
  const std::string wire = Concatenated(messages);
  for (std::size_t split = 0; split <= wire.size(); ++split) {
    SCOPED_TRACE(split);
    GrpcMessageDecoder decoder(1024, "LIMIT");
    std::vector<GrpcMessage> out;
    ASSERT_THAT(
        decoder.Feed(std::string_view(wire).substr(0, split), "request", out),
        IsOk());
    ASSERT_THAT(
        decoder.Feed(std::string_view(wire).substr(split), "request", out),
        IsOk());
    EXPECT_THAT(out, ElementsAreArray(messages));
    EXPECT_TRUE(decoder.AtBoundary());
  }
}

TEST(GrpcMessageDecoder, EveryPairOfSplitPoints) {
  // Small messages, so the pairs stay few.
  const std::vector<std::string> messages = {"ab", "", "cde", ""};
  const std::string wire = Concatenated(messages);
  for (std::size_t a = 0; a <= wire.size(); ++a) {
    for (std::size_t b = a; b <= wire.size(); ++b) {
      SCOPED_TRACE(::testing::Message() << "splits at " << a << ", " << b);
      GrpcMessageDecoder decoder(1024, "LIMIT");
      std::vector<GrpcMessage> out;
      std::string_view w(wire);
      ASSERT_THAT(decoder.Feed(w.substr(0, a), "request", out), IsOk());
      ASSERT_THAT(decoder.Feed(w.substr(a, b - a), "request", out), IsOk());
      ASSERT_THAT(decoder.Feed(w.substr(b), "request", out), IsOk());
      EXPECT_THAT(out, ElementsAreArray(messages));
      EXPECT_TRUE(decoder.AtBoundary());
    }
  }
}

TEST(GrpcMessageDecoder, OneByteFeeds) {
  const std::vector<std::string> messages = SampleMessages();
  const std::string wire = Concatenated(messages);
  GrpcMessageDecoder decoder(1024, "LIMIT");
  std::vector<GrpcMessage> out;
  for (char c : wire) {
    ASSERT_THAT(decoder.Feed(std::string_view(&c, 1), "request", out), IsOk());
  }
  EXPECT_THAT(out, ElementsAreArray(messages));
  EXPECT_TRUE(decoder.AtBoundary());
}

TEST(GrpcMessageDecoder, BufferedAndAtBoundaryTrackAPartialMessage) {
  std::string payload(1000, 'p');
  std::string frame = Frame(payload);
  GrpcMessageDecoder decoder(4096, "LIMIT");
  std::vector<GrpcMessage> out;
  for (std::size_t i = 0; i + 1 < frame.size(); ++i) {
    ASSERT_THAT(decoder.Feed(std::string_view(&frame[i], 1), "request", out),
                IsOk());
    ASSERT_THAT(out, IsEmpty()) << "after byte " << i;
    ASSERT_FALSE(decoder.AtBoundary()) << "after byte " << i;
    ASSERT_EQ(decoder.buffered(), i + 1);
  }
  ASSERT_THAT(decoder.Feed(std::string_view(&frame.back(), 1), "request", out),
              IsOk());
  EXPECT_THAT(out, ElementsAre(payload));
  EXPECT_TRUE(decoder.AtBoundary());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(GrpcMessageDecoder, RandomChunkings) {
  const std::vector<std::string> messages = SampleMessages();
  const std::string wire = Concatenated(messages);
  std::mt19937 rng(20240607);
  for (int round = 0; round < 200; ++round) {
    SCOPED_TRACE(round);
    GrpcMessageDecoder decoder(1024, "LIMIT");
    std::vector<GrpcMessage> out;
    std::string_view rest(wire);
    while (!rest.empty()) {
      std::size_t n = std::uniform_int_distribution<std::size_t>(
          0, std::min<std::size_t>(rest.size(), 40))(rng);
      ASSERT_THAT(decoder.Feed(rest.substr(0, n), "request", out), IsOk());
      rest.remove_prefix(n);
    }
    EXPECT_THAT(out, ElementsAreArray(messages));
    EXPECT_TRUE(decoder.AtBoundary());
  }
}

TEST(GrpcMessageDecoder, MessageOfExactlyTheLimitIsAccepted) {
  GrpcMessageDecoder decoder(10, "LIMIT");
  std::vector<GrpcMessage> out;
  ASSERT_THAT(decoder.Feed(Frame(std::string(10, 'z')), "request", out),
              IsOk());
  EXPECT_THAT(out, ElementsAre(std::string(10, 'z')));
}

TEST(GrpcMessageDecoder, OversizeMessageNamesWhatAndTheLimit) {
  struct Case {
    std::string what;
    uint32_t length;
    std::size_t limit;
    std::string want;
  };
  const Case cases[] = {
      {"request", 11, 10, "request message of 11 bytes exceeds MAX=10 bytes"},
      {"response", 4194305, 4194304,
       "response message of 4194305 bytes exceeds MAX=4194304 bytes"},
      {"request", 0xFFFFFFFF, 100,
       "request message of 4294967295 bytes exceeds MAX=100 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    GrpcMessageDecoder decoder(c.limit, "MAX");
    std::vector<GrpcMessage> out;
    // The prefix alone is enough: no payload byte has arrived.
    EXPECT_THAT(decoder.Feed(EncodeGrpcPrefix(c.length), c.what, out),
                StatusIs(absl::StatusCode::kResourceExhausted, c.want));
    EXPECT_THAT(out, IsEmpty());
  }
}

TEST(GrpcMessageDecoder, ErrorComesWithTheLastPrefixByte) {
  const std::string prefix = EncodeGrpcPrefix(1u << 30);
  GrpcMessageDecoder decoder(1024, "DYN_HTTP_MAX_MESSAGE_SIZE");
  std::vector<GrpcMessage> out;
  for (std::size_t i = 0; i + 1 < prefix.size(); ++i) {
    ASSERT_THAT(decoder.Feed(prefix.substr(i, 1), "request", out), IsOk());
  }
  EXPECT_THAT(decoder.Feed(prefix.substr(prefix.size() - 1), "request", out),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "request message of 1073741824 bytes exceeds "
                       "DYN_HTTP_MAX_MESSAGE_SIZE=1024 bytes"));
  // Nothing of the 1 GiB was reserved or buffered.
  EXPECT_LE(decoder.buffered(), kGrpcPrefixSize);
}

// gRPC's compression spec: the flag without a grpc-encoding that names a
// compression is INTERNAL.
TEST(GrpcMessageDecoder, CompressedFlagWithoutAnEncodingIsInternal) {
  for (std::optional<std::string_view> header :
       {std::optional<std::string_view>(),
        std::optional<std::string_view>("identity")}) {
    GrpcMessageDecoder decoder(1024, "LIMIT");
    decoder.set_encoding(header);
    std::vector<GrpcMessage> out;
    std::string wire = Frame("abc");
    wire[0] = '\x01';
    EXPECT_THAT(decoder.Feed(wire, "response", out),
                StatusIs(absl::StatusCode::kInternal,
                         AllOf(HasSubstr("response message is compressed"),
                               HasSubstr("grpc-encoding"))));
    EXPECT_THAT(out, IsEmpty());
  }
}

// With an encoding we do not support: UNIMPLEMENTED naming those we do.
TEST(GrpcMessageDecoder, CompressedFlagWithAnUnknownEncodingIsUnimplemented) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  decoder.set_encoding("br");
  std::vector<GrpcMessage> out;
  std::string wire = Frame("abc");
  wire[0] = '\x01';
  EXPECT_THAT(decoder.Feed(wire, "response", out),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("'br'"),
                             HasSubstr("identity,deflate,gzip"))));
  // Uncompressed messages of such a stream are fine.
  GrpcMessageDecoder plain(1024, "LIMIT");
  plain.set_encoding("br");
  ASSERT_THAT(plain.Feed(Frame("abc"), "response", out), IsOk());
  EXPECT_THAT(out, ElementsAre("abc"));
}

// Flagged messages come out marked with the stream's encoding; others not.
TEST(GrpcMessageDecoder, FlaggedMessagesCarryTheStreamsEncoding) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  decoder.set_encoding("gzip");
  std::vector<GrpcMessage> out;
  std::string flagged = Frame("zz");
  flagged[0] = '\x01';
  ASSERT_THAT(decoder.Feed(Frame("aa") + flagged, "request", out), IsOk());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].compressed_with, Compression::kIdentity);
  EXPECT_EQ(out[1].compressed_with, Compression::kGzip);
  EXPECT_EQ(out[1].bytes, "zz");
  // The prefix we write says so too.
  EXPECT_EQ(EncodeGrpcPrefix(2, /*compressed=*/true)[0], '\x01');
}

TEST(GrpcMessageDecoder, OtherFlagsAreMalformed) {
  for (int flag : {2, 3, 0x7F, 0x80, 0xFF}) {
    SCOPED_TRACE(flag);
    GrpcMessageDecoder decoder(1024, "LIMIT");
    std::vector<GrpcMessage> out;
    std::string wire = Frame("abc");
    wire[0] = static_cast<char>(flag);
    EXPECT_THAT(decoder.Feed(wire, "request", out),
                StatusIs(absl::StatusCode::kInternal,
                         HasSubstr("malformed gRPC message prefix")));
    EXPECT_THAT(out, IsEmpty());
  }
}

TEST(GrpcMessageDecoder, FlagIsJudgedBeforeTheLength) {
  // A compressed, oversize message: the flag is what is wrong first.
  GrpcMessageDecoder decoder(10, "LIMIT");
  std::vector<GrpcMessage> out;
  std::string prefix = EncodeGrpcPrefix(1000);
  prefix[0] = '\x01';
  EXPECT_THAT(decoder.Feed(prefix, "request", out),
              StatusIs(absl::StatusCode::kInternal));
}

TEST(GrpcMessageDecoder, ErrorIsSticky) {
  GrpcMessageDecoder decoder(10, "LIMIT");
  std::vector<GrpcMessage> out;
  absl::Status first = decoder.Feed(EncodeGrpcPrefix(11), "request", out);
  ASSERT_THAT(first, StatusIs(absl::StatusCode::kResourceExhausted));
  // Valid bytes, empty bytes, another `what`: the same error again.
  EXPECT_EQ(decoder.Feed(Frame("ok"), "request", out), first);
  EXPECT_EQ(decoder.Feed("", "request", out), first);
  EXPECT_EQ(decoder.Feed(Frame("ok"), "response", out), first);
  EXPECT_THAT(out, IsEmpty());
}

TEST(GrpcMessageDecoder, MessagesBeforeABadPrefixAreStillDelivered) {
  GrpcMessageDecoder decoder(1024, "LIMIT");
  std::vector<GrpcMessage> out;
  std::string bad = Frame("zz");
  bad[0] = '\x05';
  EXPECT_THAT(decoder.Feed(Frame("one") + Frame("") + bad + Frame("after"),
                           "request", out),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(out, ElementsAre("one", ""));
}

// ---------------------------------------------------------------------------
// grpc-timeout

TEST(GrpcTimeout, EncodesInTheFinestUnitThatFitsRoundingUp) {
  struct Case {
    Clock::duration d;
    std::string want;
  };
  const Case cases[] = {
      {1ns, "1n"},
      {999ns, "999n"},
      {99'999'999ns, "99999999n"},
      {100'000'000ns, "100000u"},  // 9 digits of n: microseconds
      {100'000'001ns, "100001u"},  // rounded up
      {100ms, "100000u"},
      {1s, "1000000u"},
      {99'999'999us, "99999999u"},
      {100'000'000us, "100000m"},
      {100'000'000us + 1ns, "100001m"},
      {1h, "3600000m"},
      {99'999'999ms, "99999999m"},
      {100'000'000ms, "100000S"},
      {99'999'999s, "99999999S"},
      {100'000'000s, "1666667M"},  // 1666666.67 minutes, rounded up
      {std::chrono::minutes(99'999'999), "99999999M"},
      {std::chrono::minutes(99'999'999) + 1ns, "1666667H"},
      {std::chrono::hours(2'000'000), "2000000H"},
      // Clock::duration::max(): 2562047.79 hours, rounded up.
      {Clock::duration::max(), "2562048H"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    EXPECT_EQ(EncodeGrpcTimeout(c.d), c.want);
  }
}

TEST(GrpcTimeout, NonPositiveEncodesAsOneNanosecond) {
  for (Clock::duration d : {Clock::duration::zero(), Clock::duration(-1),
                            Clock::duration(-5s), Clock::duration::min()}) {
    SCOPED_TRACE(d.count());
    EXPECT_EQ(EncodeGrpcTimeout(d), "1n");
  }
}

TEST(GrpcTimeout, EncodingHasAtMostEightDigits) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    // Spread over every magnitude, from 1 ns to INT64_MAX ns.
    int bits = std::uniform_int_distribution<int>(1, 63)(rng);
    int64_t ns = static_cast<int64_t>(rng() >> (64 - bits));
    if (ns == 0) ns = 1;
    std::string encoded = EncodeGrpcTimeout(Clock::duration(ns));
    SCOPED_TRACE(ns);
    ASSERT_GE(encoded.size(), 2u);
    ASSERT_LE(encoded.size(), 9u);
    ASSERT_EQ(encoded.find_first_not_of("0123456789"), encoded.size() - 1);
  }
}

TEST(GrpcTimeout, ParsesEveryUnit) {
  struct Case {
    std::string value;
    Clock::duration want;
  };
  const Case cases[] = {
      {"100m", 100ms},
      {"99999999n", 99'999'999ns},
      {"1H", 1h},
      {"1n", 1ns},
      {"7u", 7us},
      {"2S", 2s},
      {"3M", 3min},
      {"0S", 0s},
      {"00000001S", 1s},  // eight digits, leading zeros
      {"99999999m", 99'999'999ms},
      {"8784H", std::chrono::hours(8784)},  // 366 days: the cap itself
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    EXPECT_THAT(ParseGrpcTimeout(c.value), Optional(c.want));
  }
}

TEST(GrpcTimeout, LongTimeoutsAreCutTo366Days) {
  const Clock::duration cap = std::chrono::hours(366 * 24);
  for (std::string value :
       {"8785H", "99999999H", "99999999M", "99999999S", "12345678H"}) {
    SCOPED_TRACE(value);
    std::optional<Clock::duration> d = ParseGrpcTimeout(value);
    ASSERT_THAT(d, Optional(cap));
    // The point of the cap: a deadline from it does not overflow.
    EXPECT_GT(Clock::now() + *d, Clock::now());
  }
}

TEST(GrpcTimeout, RejectsMalformedValues) {
  for (std::string_view value : {
           "", "1", "S",
           "123456789S",  // nine digits
           "1x",
           "1s",  // units are case-sensitive
           "1h", "-1S", "+1S", " 1S", "1S ", "1 S", "1SS", "1.5S", "0x1S",
           "1e3m",
           "١S",  // a non-ASCII digit
       }) {
    SCOPED_TRACE(value);
    EXPECT_EQ(ParseGrpcTimeout(value), std::nullopt);
  }
  EXPECT_EQ(ParseGrpcTimeout(std::string_view("1\0S", 3)), std::nullopt);
}

// The duration of one `unit` ('n', 'u', 'm', 'S', 'M' or 'H').
Clock::duration UnitOf(char unit) {
  switch (unit) {
    case 'n':
      return 1ns;
    case 'u':
      return 1us;
    case 'm':
      return 1ms;
    case 'S':
      return 1s;
    case 'M':
      return 1min;
    default:
      return 1h;
  }
}

TEST(GrpcTimeout, RoundTripRoundsUpByLessThanOneUnitOfTheFinestThatFits) {
  std::vector<Clock::duration> durations = {1ns,
                                            999ns,
                                            1us,
                                            1ms,
                                            100ms,
                                            1s,
                                            1500ms,
                                            59s,
                                            1min,
                                            1h,
                                            24h,
                                            99'999'999ns,
                                            100'000'000ns,
                                            100'000'001ns,
                                            123'456'789'012ns,
                                            Clock::duration::max()};
  std::mt19937_64 rng(11);
  for (int i = 0; i < 1000; ++i) {
    int bits = std::uniform_int_distribution<int>(1, 62)(rng);
    durations.push_back(Clock::duration(1 + (rng() >> (64 - bits))));
  }
  constexpr std::string_view kUnits = "numSMH";
  for (Clock::duration d : durations) {
    SCOPED_TRACE(d.count());
    std::string encoded = EncodeGrpcTimeout(d);
    SCOPED_TRACE(encoded);
    std::size_t unit_index = kUnits.find(encoded.back());
    ASSERT_NE(unit_index, std::string_view::npos);
    Clock::duration unit = UnitOf(encoded.back());
    std::optional<Clock::duration> parsed = ParseGrpcTimeout(encoded);
    ASSERT_TRUE(parsed.has_value());
    if (d <= std::chrono::hours(366 * 24)) {
      EXPECT_GE(*parsed, d);
      EXPECT_LT(*parsed - d, unit);
    }
    if (unit_index > 0) {
      // The next finer unit would have needed more than 8 digits.
      Clock::duration finer = UnitOf(kUnits[unit_index - 1]);
      EXPECT_GT(d / finer + (d % finer != Clock::duration::zero() ? 1 : 0),
                99'999'999);
    }
  }
}

TEST(GrpcTimeout, ExactValuesRoundTripExactly) {
  for (Clock::duration d :
       {Clock::duration(1ns), Clock::duration(100ms), Clock::duration(1h),
        Clock::duration(99'999'999ns), Clock::duration(42s)}) {
    SCOPED_TRACE(d.count());
    EXPECT_THAT(ParseGrpcTimeout(EncodeGrpcTimeout(d)), Optional(d));
  }
}

// ---------------------------------------------------------------------------
// grpc-message percent-encoding

TEST(PercentEncoding, EncodesNonPrintableAndPercent) {
  struct Case {
    std::string in;
    std::string want;
  };
  const Case cases[] = {
      {"", ""},
      {"hello world", "hello world"},
      {" !\"#$&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~",
       " !\"#$&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~"},
      {"100%", "100%25"},
      {"%%", "%25%25"},
      {"a\nb", "a%0Ab"},
      {"\t\r", "%09%0D"},
      {std::string("\0", 1), "%00"},
      {"\x1f", "%1F"},
      {"\x7f", "%7F"},
      {"\xff", "%FF"},
      {"caf\xc3\xa9", "caf%C3%A9"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    EXPECT_EQ(PercentEncode(c.in), c.want);
  }
}

TEST(PercentEncoding, EncodedFormIsPrintableAscii) {
  std::string encoded = PercentEncode(AllBytes());
  for (char c : encoded) {
    EXPECT_GE(c, 0x20);
    EXPECT_LE(c, 0x7E);
  }
  // 95 printable bytes, less '%', kept; the other 162 take three bytes.
  EXPECT_EQ(encoded.size(), 94u + 162u * 3u);
}

TEST(PercentEncoding, Decodes) {
  struct Case {
    std::string in;
    std::string want;
  };
  const Case cases[] = {
      {"", ""},
      {"plain text", "plain text"},
      {"%41", "A"},
      {"100%25", "100%"},
      {"caf%C3%A9", "caf\xc3\xa9"},
      {"caf%c3%a9", "caf\xc3\xa9"},  // lower-case hex too
      {"%00", std::string("\0", 1)},
      {"a%0Ab", "a\nb"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    EXPECT_EQ(PercentDecode(c.in), c.want);
  }
}

TEST(PercentEncoding, DecodingKeepsBadSequencesLiterally) {
  struct Case {
    std::string in;
    std::string want;
  };
  const Case cases[] = {
      {"%", "%"},     {"100%", "100%"}, {"%4", "%4"},       {"x%4", "x%4"},
      {"%G1", "%G1"}, {"%1G", "%1G"},   {"%zz%41", "%zzA"}, {"%%41", "%A"},
      {"%%", "%%"},   {"% 41", "% 41"}, {"%-1", "%-1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    EXPECT_EQ(PercentDecode(c.in), c.want);
  }
}

TEST(PercentEncoding, RoundTrips) {
  for (std::string message : {
           std::string(""),
           std::string("deadline of 100 ms passed"),
           std::string("h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xe2\x9c\x93 "
                       "\xf0\x9f\x98\x80"),  // héllo 世界 ✓ 😀
           std::string("50% done\r\n"),
           std::string("%41 is not A"),
           AllBytes(),
       }) {
    SCOPED_TRACE(message);
    EXPECT_EQ(PercentDecode(PercentEncode(message)), message);
  }
}

// ---------------------------------------------------------------------------
// HTTP status <-> gRPC code

TEST(HttpStatusMapping, GrpcCodeFromHttpStatus) {
  using C = absl::StatusCode;
  const std::pair<int, absl::StatusCode> cases[] = {
      {400, C::kInternal},         {401, C::kUnauthenticated},
      {403, C::kPermissionDenied}, {404, C::kUnimplemented},
      {429, C::kUnavailable},      {502, C::kUnavailable},
      {503, C::kUnavailable},      {504, C::kUnavailable},
      {200, C::kUnknown},          {204, C::kUnknown},
      {301, C::kUnknown},          {402, C::kUnknown},
      {405, C::kUnknown},          {418, C::kUnknown},
      {500, C::kUnknown},          {501, C::kUnknown},
      {505, C::kUnknown},          {0, C::kUnknown},
      {-1, C::kUnknown},           {999, C::kUnknown},
  };
  for (const auto& [http, code] : cases) {
    SCOPED_TRACE(http);
    EXPECT_EQ(GrpcCodeFromHttpStatus(http), code);
  }
}

TEST(HttpStatusMapping, HttpStatusFromGrpcCodeForEveryCode) {
  using C = absl::StatusCode;
  const std::pair<absl::StatusCode, int> cases[] = {
      {C::kOk, 200},
      {C::kCancelled, 499},
      {C::kUnknown, 500},
      {C::kInvalidArgument, 400},
      {C::kDeadlineExceeded, 504},
      {C::kNotFound, 404},
      {C::kAlreadyExists, 409},
      {C::kPermissionDenied, 403},
      {C::kResourceExhausted, 429},
      {C::kFailedPrecondition, 400},
      {C::kAborted, 409},
      {C::kOutOfRange, 400},
      {C::kUnimplemented, 501},
      {C::kInternal, 500},
      {C::kUnavailable, 503},
      {C::kDataLoss, 500},
      {C::kUnauthenticated, 401},
  };
  ASSERT_EQ(std::size(cases), 17u);
  for (const auto& [code, http] : cases) {
    SCOPED_TRACE(absl::StatusCodeToString(code));
    EXPECT_EQ(HttpStatusFromGrpcCode(code), http);
  }
  EXPECT_EQ(HttpStatusFromGrpcCode(static_cast<absl::StatusCode>(42)), 500);
}

// ---------------------------------------------------------------------------
// RST_STREAM

TEST(ResetCode, MapsAndNamesEveryHttp2ErrorCode) {
  using C = absl::StatusCode;
  struct Case {
    uint32_t error_code;
    absl::StatusCode code;
    std::string name;
  };
  const Case cases[] = {
      {0x0, C::kInternal, "NO_ERROR (0x0)"},
      {0x1, C::kInternal, "PROTOCOL_ERROR (0x1)"},
      {0x2, C::kInternal, "INTERNAL_ERROR (0x2)"},
      {0x3, C::kInternal, "FLOW_CONTROL_ERROR (0x3)"},
      {0x4, C::kInternal, "SETTINGS_TIMEOUT (0x4)"},
      {0x5, C::kInternal, "STREAM_CLOSED (0x5)"},
      {0x6, C::kInternal, "FRAME_SIZE_ERROR (0x6)"},
      {0x7, C::kUnavailable, "REFUSED_STREAM (0x7)"},
      {0x8, C::kCancelled, "CANCEL (0x8)"},
      {0x9, C::kInternal, "COMPRESSION_ERROR (0x9)"},
      {0xa, C::kInternal, "CONNECT_ERROR (0xa)"},
      {0xb, C::kResourceExhausted, "ENHANCE_YOUR_CALM (0xb)"},
      {0xc, C::kPermissionDenied, "INADEQUATE_SECURITY (0xc)"},
      {0xd, C::kInternal, "HTTP_1_1_REQUIRED (0xd)"},
      {0xe, C::kInternal, "0xe"},
      {0x2a, C::kInternal, "0x2a"},
      {0xffffffff, C::kInternal, "0xffffffff"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(StatusFromResetCode(c.error_code),
                StatusIs(c.code, "stream reset by the peer with HTTP/2 error " +
                                     c.name));
  }
}

// ---------------------------------------------------------------------------
// JSON error bodies

// Parses `json` as a google.protobuf.Struct: proof that it is valid JSON
// (protobuf's parser also insists on valid UTF-8).
google::protobuf::Struct ParseJson(const std::string& json) {
  google::protobuf::Struct parsed;
  auto status = google::protobuf::util::JsonStringToMessage(json, &parsed);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return parsed;
}

// `parsed`'s field `name`, or a failure and a null value.
const google::protobuf::Value& Field(const google::protobuf::Struct& parsed,
                                     const std::string& name) {
  auto it = parsed.fields().find(name);
  if (it == parsed.fields().end()) {
    ADD_FAILURE() << "no field " << name;
    return google::protobuf::Value::default_instance();
  }
  return it->second;
}

TEST(JsonErrorBody, Shape) {
  EXPECT_EQ(JsonErrorBody(absl::NotFoundError("no such key")),
            R"({"code":5,"message":"no such key"})");
  EXPECT_EQ(JsonErrorBody(absl::OkStatus()), R"({"code":0,"message":""})");
  EXPECT_EQ(JsonErrorBody(absl::UnauthenticatedError("x")),
            R"({"code":16,"message":"x"})");
}

TEST(JsonErrorBody, Escapes) {
  struct Case {
    std::string message;
    std::string want_escaped;
  };
  const Case cases[] = {
      {"say \"hi\"", R"(say \"hi\")"},
      {"C:\\path", R"(C:\\path)"},
      {"a\nb\tc\rd", R"(a\u000Ab\u0009c\u000Dd)"},
      {std::string("nul\0!", 5), R"(nul\u0000!)"},
      {"\x1f\x7f", "\\u001F\x7f"},  // DEL needs no escape in JSON
      {"</script>", "</script>"},
      {"caf\xc3\xa9 \xe4\xb8\x96 \xf0\x9f\x98\x80",  // UTF-8 passes through
       "caf\xc3\xa9 \xe4\xb8\x96 \xf0\x9f\x98\x80"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want_escaped);
    std::string body = JsonErrorBody(absl::InternalError(c.message));
    EXPECT_EQ(body, "{\"code\":13,\"message\":\"" + c.want_escaped + "\"}");
    google::protobuf::Struct parsed = ParseJson(body);
    EXPECT_EQ(Field(parsed, "message").string_value(), c.message);
    EXPECT_EQ(Field(parsed, "code").number_value(), 13);
  }
}

TEST(JsonErrorBody, InvalidUtf8BecomesReplacementCharacter) {
  const std::string kReplacement = "\xef\xbf\xbd";  // U+FFFD
  struct Case {
    std::string message;
    std::string want_decoded;
  };
  const Case cases[] = {
      {"\xff", kReplacement},
      {"a\x80z", "a" + kReplacement + "z"},
      {"\xc3", kReplacement},                     // truncated
      {"\xc3(", kReplacement + "("},              // bad continuation
      {"\xc0\xaf", kReplacement + kReplacement},  // overlong '/'
      {"\xe0\x80\xaf", kReplacement + kReplacement + kReplacement},
      {"\xed\xa0\x80", kReplacement + kReplacement + kReplacement},  // D800
      {"\xf4\x90\x80\x80",  // past U+10FFFF
       kReplacement + kReplacement + kReplacement + kReplacement},
      {"\xf0\x9f\x98", kReplacement + kReplacement + kReplacement},
      {"ok \xf4\x8f\xbf\xbf", "ok \xf4\x8f\xbf\xbf"},  // U+10FFFF is valid
      {"\xed\x9f\xbf", "\xed\x9f\xbf"},                // U+D7FF is valid
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(PercentEncode(c.message));
    google::protobuf::Struct parsed =
        ParseJson(JsonErrorBody(absl::UnknownError(c.message)));
    EXPECT_EQ(Field(parsed, "message").string_value(), c.want_decoded);
  }
}

TEST(JsonErrorBody, AnyBytesMakeValidJson) {
  std::string all = AllBytes();
  ParseJson(JsonErrorBody(absl::InternalError(all)));
  std::mt19937 rng(3);
  for (int i = 0; i < 200; ++i) {
    std::string message(std::uniform_int_distribution<int>(0, 12)(rng), ' ');
    for (char& c : message) {
      c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    }
    SCOPED_TRACE(PercentEncode(message));
    ParseJson(JsonErrorBody(absl::InternalError(message)));
  }
}

TEST(JsonErrorBody, CodeForEveryStatusCode) {
  for (int code = 0; code <= 16; ++code) {
    SCOPED_TRACE(code);
    google::protobuf::Struct parsed = ParseJson(
        JsonErrorBody(absl::Status(static_cast<absl::StatusCode>(code), "m")));
    EXPECT_EQ(Field(parsed, "code").number_value(), code);
  }
}

// ---------------------------------------------------------------------------
// Metadata

TEST(Metadata, ValidEntries) {
  const Metadata valid = {
      {"x-user", "ada"},
      {"X-User", "Ada Lovelace"},  // lowercased on the wire
      {"a.b_c-9", ""},
      {"k", " !~ printable ASCII ~! "},
      {"k", "repeated keys are fine"},
      {"x-trace-bin", std::string("\0\xff\n", 3)},
      {"X-Trace-BIN", AllBytes()},
      {"grpc", "not a grpc- prefix"},
      {"x-grpc-thing", "v"},
      {"tea", "v"},
      {"hostname", "v"},
      {"content-type-x", "v"},
  };
  EXPECT_THAT(ValidateMetadata(valid), IsOk());
  EXPECT_THAT(ValidateMetadata({}), IsOk());
}

TEST(Metadata, InvalidKeysAreNamed) {
  const std::string kAllowed =
      "' is not a valid HTTP/2 header name (allowed: a-z 0-9 - _ .)";
  struct Case {
    std::string key;
    std::string shown;
  };
  const Case cases[] = {
      {"Bad Key", "Bad Key"},
      {"", ""},
      {"x:y", "x:y"},
      {"x/y", "x/y"},
      {"x@y", "x@y"},
      {"caf\xc3\xa9", "caf\\xc3\\xa9"},
      {std::string("x\0y", 3), "x\\x00y"},
      {"tab\tkey", "tab\\tkey"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.shown);
    EXPECT_THAT(ValidateMetadata({{"ok", "v"}, {c.key, "v"}}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "metadata key '" + c.shown + kAllowed));
  }
}

TEST(Metadata, ReservedKeysAreRefused) {
  for (std::string key :
       {"grpc-foo", "grpc-timeout", "Grpc-Status", "grpc-", ":path",
        ":authority", "content-type", "Content-Type", "te", "TE", "user-agent",
        "host", "connection", "keep-alive", "proxy-connection",
        "transfer-encoding", "upgrade"}) {
    SCOPED_TRACE(key);
    EXPECT_THAT(ValidateMetadata({{"ok", "v"}, {key, "v"}}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "metadata key '" + key + "' is reserved"));
  }
}

TEST(Metadata, NonBinaryValuesMustBePrintableAscii) {
  for (std::string value :
       {std::string("a\nb"), std::string("\t"), std::string("\x7f"),
        std::string("\x80"), std::string("caf\xc3\xa9"), std::string("\0", 1),
        std::string("\x1f")}) {
    SCOPED_TRACE(PercentEncode(value));
    EXPECT_THAT(
        ValidateMetadata({{"x-ok", "fine"}, {"x-k", value}}),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 "metadata value of 'x-k' has a byte outside printable ASCII; "
                 "use a key ending in -bin for binary values"));
  }
}

TEST(Metadata, FirstBadEntryIsReported) {
  EXPECT_THAT(ValidateMetadata({{"a", "1"}, {"b c", "2"}, {"grpc-x", "3"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'b c'")));
}

TEST(Metadata, IsReservedHeader) {
  for (std::string_view name : {":path",
                                ":method",
                                ":status",
                                ":authority",
                                ":scheme",
                                "grpc-",
                                "grpc-status",
                                "grpc-message",
                                "grpc-timeout",
                                "grpc-encoding",
                                "grpc-status-details-bin",
                                "content-type",
                                "te",
                                "user-agent",
                                "host",
                                "connection",
                                "keep-alive",
                                "proxy-connection",
                                "transfer-encoding",
                                "upgrade"}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(IsReservedHeader(name));
  }
  for (std::string_view name :
       {"", "x-user", "grpc", "grpcfoo", "x-grpc-foo", "tea", "t", "hosts",
        "content-length", "content-type-x", "authorization", "x-request-id",
        "connections"}) {
    SCOPED_TRACE(name);
    EXPECT_FALSE(IsReservedHeader(name));
  }
}

TEST(Metadata, EncodesBinaryValuesAsUnpaddedStandardBase64) {
  struct Case {
    std::string key;
    std::string value;
    std::string want;
  };
  const Case cases[] = {
      {"x-bin", "", ""},
      {"x-bin", "a", "YQ"},
      {"x-bin", "ab", "YWI"},
      {"x-bin", "abc", "YWJj"},
      {"x-bin", "abcd", "YWJjZA"},
      {"x-bin", "\xfb\xff", "+/8"},  // standard alphabet, not web-safe
      {"x-bin", std::string("\0\0\0", 3), "AAAA"},
      {"X-Data-Bin", "a", "YQ"},  // the suffix is case-insensitive
      // Not -bin: the value as it is.
      {"x-user", "ada", "ada"},
      {"x-bin-not", "a", "a"},
      {"bin", "a", "a"},
      {"x-user", "YQ==", "YQ=="},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key + ": " + c.want);
    EXPECT_EQ(EncodeMetadataValue(c.key, c.value), c.want);
  }
}

TEST(Metadata, DecodesPaddedAndUnpaddedBase64) {
  struct Case {
    std::string wire;
    std::string want;
  };
  const Case cases[] = {
      {"", ""},
      {"YQ", "a"},
      {"YQ==", "a"},
      {"YWI", "ab"},
      {"YWI=", "ab"},
      {"YWJj", "abc"},
      {"YWJjZA", "abcd"},
      {"YWJjZA==", "abcd"},
      {"+/8", "\xfb\xff"},
      {"+/8=", "\xfb\xff"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.wire);
    EXPECT_THAT(DecodeMetadataValue("x-bin", c.wire), Optional(c.want));
  }
}

TEST(Metadata, RejectsBadBase64) {
  for (std::string_view wire : {
           "Y",         // a length no encoding has
           "YWJjZ",     // the same, after a full group
           "YQ=",       // padding short of a multiple of 4
           "YQ===",     // too much padding
           "====",      // nothing but padding
           "Y===",      // three '=' in a group
           "Y=Q=",      // padding in the middle
           "YQ==YQ==",  // two padded values run together
           "YWJj=",     // padding after a full group
           "-_8",       // web-safe alphabet
           "YQ ==",     // whitespace, which absl::Base64Unescape would skip
           " YQ",
           "YQ\n",
           "Y\tQ",
           "!!!!",
           "YQ,YQ",
       }) {
    SCOPED_TRACE(wire);
    EXPECT_EQ(DecodeMetadataValue("x-bin", wire), std::nullopt);
  }
}

TEST(Metadata, NonBinaryValuesDecodeAsTheyAre) {
  for (std::string_view wire : {"", "ada", "YQ==", "not base64!", " x "}) {
    SCOPED_TRACE(wire);
    EXPECT_THAT(DecodeMetadataValue("x-user", wire),
                Optional(std::string(wire)));
  }
}

TEST(Metadata, BinaryValuesRoundTrip) {
  std::vector<std::string> values = {"", AllBytes()};
  std::mt19937 rng(5);
  for (int len = 0; len <= 12; ++len) {
    std::string v(len, '\0');
    for (char& c : v) {
      c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    }
    values.push_back(v);
  }
  for (const std::string& value : values) {
    SCOPED_TRACE(value.size());
    std::string wire = EncodeMetadataValue("x-data-bin", value);
    EXPECT_EQ(wire.find('='), std::string::npos);
    // What goes on the wire is a valid non-binary value.
    EXPECT_THAT(ValidateMetadata({{"x-data", wire}}), IsOk());
    EXPECT_THAT(DecodeMetadataValue("x-data-bin", wire), Optional(value));
    // A sender that pads is understood too.
    std::string padded = wire + std::string((4 - wire.size() % 4) % 4, '=');
    EXPECT_THAT(DecodeMetadataValue("x-data-bin", padded), Optional(value));
  }
}

}  // namespace
}  // namespace dynrpc::internal::http
