#include "core/compression.h"

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

// The largest single allocation while `g_tracking` is set: what proves that
// inflating a bomb never allocates its inflated size.
namespace {
std::atomic<bool> g_tracking{false};
std::atomic<std::size_t> g_largest{0};
}  // namespace

// GCC sees free() of what operator new returned, not knowing that this is
// the replacement pair that makes them match.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t size) {
  if (g_tracking.load(std::memory_order_relaxed)) {
    std::size_t seen = g_largest.load(std::memory_order_relaxed);
    while (size > seen && !g_largest.compare_exchange_weak(seen, size)) {
    }
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace dynrpc::internal {
namespace {

using ::dynrpc::testing::IsOk;
using ::dynrpc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Text(std::size_t bytes) {
  std::string text;
  while (text.size() < bytes) text += "the quick brown fox jumps over a dog. ";
  text.resize(bytes);
  return text;
}

std::string Random(std::size_t bytes) {
  std::mt19937 gen(42);
  std::string out(bytes, '\0');
  for (char& c : out) c = static_cast<char>(gen());
  return out;
}

TEST(CompressionTest, NamesAreGrpcs) {
  EXPECT_EQ(CompressionName(Compression::kIdentity), "identity");
  EXPECT_EQ(CompressionName(Compression::kDeflate), "deflate");
  EXPECT_EQ(CompressionName(Compression::kGzip), "gzip");
  EXPECT_EQ(ParseCompression("gzip"), Compression::kGzip);
  EXPECT_EQ(ParseCompression("deflate"), Compression::kDeflate);
  EXPECT_EQ(ParseCompression("identity"), Compression::kIdentity);
  EXPECT_EQ(ParseCompression("br"), std::nullopt);
  EXPECT_EQ(ParseCompression("GZIP"), std::nullopt);  // header values are exact
}

TEST(CompressionTest, AcceptEncodingIsParsedLeniently) {
  EXPECT_EQ(ParseAcceptEncoding(kAcceptEncoding), kAllCompressions);
  EXPECT_EQ(ParseAcceptEncoding(" gzip , br"),
            Bit(Compression::kIdentity) | Bit(Compression::kGzip));
  // Identity is always accepted.
  EXPECT_EQ(ParseAcceptEncoding(""), Bit(Compression::kIdentity));
}

TEST(CompressionTest, RoundTripsBothAlgorithms) {
  for (Compression c : {Compression::kDeflate, Compression::kGzip}) {
    SCOPED_TRACE(CompressionName(c));
    const std::string text = Text(100'000);
    std::optional<std::string> compressed = MaybeCompress(c, text, 0);
    ASSERT_TRUE(compressed.has_value());
    EXPECT_LT(compressed->size(), text.size() / 10);
    absl::StatusOr<std::string> inflated =
        Decompress(c, *compressed, text.size(), "request");
    ASSERT_THAT(inflated, IsOk());
    EXPECT_EQ(*inflated, text);
  }
}

// The formats are the standard ones: gzip's magic bytes, zlib's header.
TEST(CompressionTest, FormatsAreGzipAndZlib) {
  std::optional<std::string> gzip =
      MaybeCompress(Compression::kGzip, Text(2000), 0);
  ASSERT_TRUE(gzip.has_value());
  EXPECT_EQ(static_cast<uint8_t>((*gzip)[0]), 0x1f);
  EXPECT_EQ(static_cast<uint8_t>((*gzip)[1]), 0x8b);
  std::optional<std::string> zlib =
      MaybeCompress(Compression::kDeflate, Text(2000), 0);
  ASSERT_TRUE(zlib.has_value());
  EXPECT_EQ(static_cast<uint8_t>((*zlib)[0]) & 0x0f, 8);  // CM = deflate
  EXPECT_EQ(((static_cast<uint8_t>((*zlib)[0]) << 8) |
             static_cast<uint8_t>((*zlib)[1])) % 31,
            0);
}

TEST(CompressionTest, SmallIncompressibleAndIdentityStayAsTheyAre) {
  EXPECT_EQ(MaybeCompress(Compression::kGzip, Text(1023), 1024), std::nullopt);
  EXPECT_NE(MaybeCompress(Compression::kGzip, Text(1024), 1024), std::nullopt);
  EXPECT_EQ(MaybeCompress(Compression::kIdentity, Text(5000), 0),
            std::nullopt);
  EXPECT_EQ(MaybeCompress(Compression::kGzip, "", 0), std::nullopt);
  // Random bytes do not shrink: sent as they are.
  EXPECT_EQ(MaybeCompress(Compression::kGzip, Random(4096), 0), std::nullopt);
}

TEST(CompressionTest, ExactlyTheLimitInflates) {
  const std::string text = Text(70'000);
  std::optional<std::string> compressed =
      MaybeCompress(Compression::kGzip, text, 0);
  ASSERT_TRUE(compressed.has_value());
  EXPECT_THAT(Decompress(Compression::kGzip, *compressed, 70'000, "request"),
              IsOk());
  EXPECT_THAT(Decompress(Compression::kGzip, *compressed, 69'999, "request"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("limit of 69999 bytes")));
}

// 256 MiB of zeros compress to about 256 KiB: refused against a 1 MiB
// limit, without ever allocating much more than the limit.
TEST(CompressionTest, AnInflationBombIsRefusedWithinTheLimit) {
  for (Compression c : {Compression::kDeflate, Compression::kGzip}) {
    SCOPED_TRACE(CompressionName(c));
    std::string bomb;
    {
      const std::string zeros(256u << 20, '\0');
      bomb = *MaybeCompress(c, zeros, 0);
    }
    ASSERT_LT(bomb.size(), 1u << 20);
    g_largest = 0;
    g_tracking = true;
    absl::StatusOr<std::string> inflated =
        Decompress(c, bomb, 1u << 20, "request");
    g_tracking = false;
    EXPECT_THAT(inflated,
                StatusIs(absl::StatusCode::kResourceExhausted,
                         AllOf(HasSubstr("request message"),
                               HasSubstr("inflates past the message size "
                                         "limit of 1048576 bytes"))));
    // The limit, one byte that proves it passed, a string's terminator.
    EXPECT_LE(g_largest.load(), (1u << 20) + 2);
  }
}

TEST(CompressionTest, CorruptTruncatedOrTrailingDataIsInternal) {
  const std::string text = Text(10'000);
  std::string good = *MaybeCompress(Compression::kGzip, text, 0);
  std::string corrupt = good;
  corrupt[good.size() / 2] ^= 0x5a;
  corrupt[good.size() / 2 + 1] ^= 0xa5;
  EXPECT_THAT(Decompress(Compression::kGzip, corrupt, 1 << 20, "response"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("response")));
  EXPECT_THAT(Decompress(Compression::kGzip, good.substr(0, good.size() / 2),
                         1 << 20, "response"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("truncated")));
  EXPECT_THAT(Decompress(Compression::kGzip, good + "xyz", 1 << 20, "response"),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("3 bytes after its end")));
  // Not gzip at all; and deflate data read as gzip.
  EXPECT_THAT(Decompress(Compression::kGzip, "plain text", 1 << 20, "request"),
              StatusIs(absl::StatusCode::kInternal));
  std::string deflate = *MaybeCompress(Compression::kDeflate, text, 0);
  EXPECT_THAT(Decompress(Compression::kGzip, deflate, 1 << 20, "request"),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(Decompress(Compression::kGzip, "", 1 << 20, "request"),
              StatusIs(absl::StatusCode::kInternal));
}

TEST(CompressionTest, InflateInPlaceLeavesIdentityAlone) {
  std::string message = "as it is";
  EXPECT_THAT(InflateInPlace(Compression::kIdentity, message, 1, "request"),
              IsOk());
  EXPECT_EQ(message, "as it is");
  std::string compressed = *MaybeCompress(Compression::kDeflate, Text(3000), 0);
  EXPECT_THAT(InflateInPlace(Compression::kDeflate, compressed, 3000, "request"),
              IsOk());
  EXPECT_EQ(compressed, Text(3000));
}

}  // namespace
}  // namespace dynrpc::internal
