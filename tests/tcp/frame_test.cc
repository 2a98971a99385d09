#include "tcp/frame.h"

#include <algorithm>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace dynrpc::internal::tcp {
namespace {

using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::HasSubstr;

TEST(Frame, RequestRoundTrip) {
  RequestHead head;
  head.method = "/helloworld.Greeter/SayHello";
  head.timeout_us = 1'500'000;
  head.metadata = {{"x-request-id", "abc"}, {"k", ""}, {"k", "v2"}};
  absl::StatusOr<std::string> prefix = EncodeRequestPrefix(42, head, 1234);
  ASSERT_THAT(prefix, IsOk());

  absl::StatusOr<FrameHeader> header = DecodeFrameHeader(
      std::string_view(*prefix).substr(0, kFrameHeaderSize));
  ASSERT_THAT(header, IsOk());
  EXPECT_EQ(header->type, FrameType::kRequest);
  EXPECT_EQ(header->call_id, 42u);
  EXPECT_EQ(header->payload_len, 1234u);
  ASSERT_EQ(header->head_len, prefix->size() - kFrameHeaderSize);

  absl::StatusOr<RequestHead> decoded =
      DecodeRequestHead(std::string_view(*prefix).substr(kFrameHeaderSize));
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->method, head.method);
  EXPECT_EQ(decoded->timeout_us, head.timeout_us);
  EXPECT_EQ(decoded->metadata, head.metadata);
}

TEST(Frame, ResponseRoundTripForEveryCode) {
  for (int code = 0; code <= 16; ++code) {
    SCOPED_TRACE(code);
    ResponseHead head;
    head.code = static_cast<absl::StatusCode>(code);
    head.message = "why " + std::to_string(code);
    head.metadata = {{"trailer", "t"}};
    absl::StatusOr<std::string> prefix = EncodeResponsePrefix(7, head, 0);
    ASSERT_THAT(prefix, IsOk());
    absl::StatusOr<FrameHeader> header = DecodeFrameHeader(
        std::string_view(*prefix).substr(0, kFrameHeaderSize));
    ASSERT_THAT(header, IsOk());
    EXPECT_EQ(header->type, FrameType::kResponse);
    absl::StatusOr<ResponseHead> decoded = DecodeResponseHead(
        std::string_view(*prefix).substr(kFrameHeaderSize));
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(decoded->code, head.code);
    EXPECT_EQ(decoded->message, head.message);
    EXPECT_EQ(decoded->metadata, head.metadata);
  }
}

TEST(Frame, CancelAndSetCallId) {
  std::string cancel = EncodeCancel(9);
  ASSERT_EQ(cancel.size(), kFrameHeaderSize);
  SetCallId(cancel, 0x0102030405060708ull);
  absl::StatusOr<FrameHeader> header = DecodeFrameHeader(cancel);
  ASSERT_THAT(header, IsOk());
  EXPECT_EQ(header->type, FrameType::kCancel);
  EXPECT_EQ(header->call_id, 0x0102030405060708ull);
  EXPECT_EQ(header->head_len, 0u);
  EXPECT_EQ(header->payload_len, 0u);
}

// A compressed payload says its algorithm in the frame's flags.
TEST(Frame, CompressionTravelsInTheFlags) {
  for (Compression c :
       {Compression::kIdentity, Compression::kDeflate, Compression::kGzip}) {
    absl::StatusOr<FrameHeader> h =
        DecodeFrameHeader(EncodeMessagePrefix(7, 10, CompressionFlag(c)));
    ASSERT_THAT(h, IsOk());
    EXPECT_EQ(CompressionOf(h->flags), c);
  }
  EXPECT_EQ(CompressionFlag(Compression::kIdentity), 0);
}

TEST(Frame, MalformedHeadersAreInternalErrors) {
  std::string good = EncodeCancel(1);
  struct Case {
    std::string name;
    std::string bytes;
    std::string why;
  };
  std::string bad_magic = good;
  bad_magic[0] = 'G';  // e.g. an HTTP request line
  std::string bad_type = good;
  bad_type[1] = 10;
  std::string zero_type = good;
  zero_type[1] = 0;
  std::string bad_flags = good;
  bad_flags[2] = '\x80';  // flag bits nobody defined
  std::string both = EncodeMessagePrefix(1, 0, kFlagDeflate | kFlagGzip);
  for (const Case& c : std::vector<Case>{
           {"short", good.substr(0, 19), "header of 19 bytes"},
           {"bad magic", bad_magic, "bad magic byte"},
           {"unknown type", bad_type, "unknown frame type 10"},
           {"type zero", zero_type, "unknown frame type 0"},
           {"flags", bad_flags, "unknown flags"},
           {"two compressions", both, "a payload flagged both deflate and gzip"},
       }) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(DecodeFrameHeader(c.bytes),
                StatusIs(absl::StatusCode::kInternal,
                         HasSubstr("malformed frame: " + c.why)));
  }
}

TEST(Frame, EveryTruncationOfAHeadIsRejected) {
  RequestHead request;
  request.method = "/a.B/C";
  request.metadata = {{"key", "value"}};
  std::string req = *EncodeRequestPrefix(1, request, 0);
  std::string_view req_head = std::string_view(req).substr(kFrameHeaderSize);
  for (size_t n = 0; n < req_head.size(); ++n) {
    SCOPED_TRACE(n);
    EXPECT_THAT(DecodeRequestHead(req_head.substr(0, n)),
                StatusIs(absl::StatusCode::kInternal,
                         HasSubstr("truncated request head")));
  }
  ResponseHead response;
  response.code = absl::StatusCode::kNotFound;
  response.message = "gone";
  response.metadata = {{"key", "value"}};
  std::string resp = *EncodeResponsePrefix(1, response, 0);
  std::string_view resp_head = std::string_view(resp).substr(kFrameHeaderSize);
  for (size_t n = 0; n < resp_head.size(); ++n) {
    SCOPED_TRACE(n);
    EXPECT_THAT(DecodeResponseHead(resp_head.substr(0, n)),
                StatusIs(absl::StatusCode::kInternal,
                         HasSubstr("truncated response head")));
  }
}

TEST(Frame, TrailingBytesAndUnknownCodesAreRejected) {
  RequestHead request;
  request.method = "/a.B/C";
  std::string req = *EncodeRequestPrefix(1, request, 0) + "x";
  EXPECT_THAT(DecodeRequestHead(std::string_view(req).substr(kFrameHeaderSize)),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("trailing")));

  ResponseHead response;
  std::string resp = *EncodeResponsePrefix(1, response, 0);
  resp[kFrameHeaderSize + 3] = 17;  // status code 17 does not exist
  EXPECT_THAT(
      DecodeResponseHead(std::string_view(resp).substr(kFrameHeaderSize)),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("unknown status code")));
}

TEST(Frame, LengthFieldsClaimingMoreThanPresentDoNotAllocate) {
  // A metadata value claiming 4 GiB inside a 20-byte head: rejected as
  // truncated without reserving the claimed size.
  RequestHead request;
  request.method = "/a.B/C";
  request.metadata = {{"k", "v"}};
  std::string req = *EncodeRequestPrefix(1, request, 0);
  std::string head(std::string_view(req).substr(kFrameHeaderSize));
  size_t value_len_at = head.size() - 1 - 4;
  head[value_len_at] = head[value_len_at + 1] = head[value_len_at + 2] =
      head[value_len_at + 3] = '\xff';
  EXPECT_THAT(DecodeRequestHead(head),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("truncated")));
}

TEST(Frame, OversizedHeadIsRefusedBySender) {
  RequestHead request;
  request.method = "/a.B/C";
  request.metadata = {{"big", std::string(kMaxHeadSize, 'x')}};
  EXPECT_THAT(EncodeRequestPrefix(1, request, 0),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("exceeds the limit of 65536 bytes")));
}

// Mutated frames (flipped bytes, truncations, junk appended) either decode
// or fail with INTERNAL; under ASan this also proves no read goes out of
// bounds. Seeded, so a failure reproduces.
TEST(Frame, MutatedFramesDecodeOrFailCleanly) {
  RequestHead request;
  request.method = "/pkg.Service/Method";
  request.timeout_us = 12345;
  request.metadata = {{"a", "b"}, {"traceparent", "00-abc-def-01"}};
  ResponseHead response;
  response.code = absl::StatusCode::kAborted;
  response.message = "stopped";
  response.metadata = {{"t", "v"}};
  const std::string seeds[] = {*EncodeRequestPrefix(1, request, 0),
                               *EncodeResponsePrefix(2, response, 0),
                               EncodeCancel(3)};
  std::mt19937 rng(20261127);
  int decoded = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string frame = seeds[i % 3];
    int edits = 1 + rng() % 4;
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 3) {
        case 0:
          frame[rng() % frame.size()] = static_cast<char>(rng());
          break;
        case 1:
          frame.resize(rng() % (frame.size() + 1));
          break;
        case 2:
          frame.append(rng() % 8, static_cast<char>(rng()));
          break;
      }
      if (frame.empty()) frame = seeds[0];
    }
    std::string_view view(frame);
    absl::StatusOr<FrameHeader> header =
        DecodeFrameHeader(view.substr(0, kFrameHeaderSize));
    if (!header.ok()) {
      ASSERT_EQ(header.status().code(), absl::StatusCode::kInternal);
      ++rejected;
      continue;
    }
    std::string_view head = view.substr(std::min(view.size(), kFrameHeaderSize));
    absl::Status status =
        header->type == FrameType::kRequest
            ? DecodeRequestHead(head).status()
            : DecodeResponseHead(head).status();
    if (status.ok()) {
      ++decoded;
    } else {
      ASSERT_EQ(status.code(), absl::StatusCode::kInternal) << status;
      ++rejected;
    }
  }
  // Both outcomes were exercised.
  EXPECT_GT(decoded, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace dynrpc::internal::tcp
