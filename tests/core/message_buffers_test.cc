#include "dynrpc/message_buffers.h"

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace dynrpc::internal {
namespace {

constexpr std::size_t kMiB = 1024 * 1024;

// Empties this thread's cache: every cached buffer fits 64 KiB, so each take
// removes (and frees) one while there are any.
void Drain() {
  for (int i = 0; i < 8; ++i) TakeMessageBuffer(64 * 1024);
}

TEST(MessageBuffersTest, ReusesARecycledLargeBuffer) {
  Drain();
  std::string a = TakeMessageBuffer(kMiB);
  EXPECT_TRUE(a.empty());
  ASSERT_GE(a.capacity(), kMiB);
  a.assign(kMiB, 'x');
  const char* memory = a.data();
  RecycleMessageBuffer(std::move(a));
  std::string b = TakeMessageBuffer(kMiB / 2);
  EXPECT_EQ(b.data(), memory);
  EXPECT_TRUE(b.empty());
}

TEST(MessageBuffersTest, SmallBuffersAreNotKept) {
  Drain();
  std::string a(1000, 'x');
  RecycleMessageBuffer(std::move(a));
  std::string b = TakeMessageBuffer(100);
  EXPECT_EQ(b.capacity(), std::string().capacity());
}

TEST(MessageBuffersTest, PicksTheSmallestBufferThatFits) {
  Drain();
  std::string big = TakeMessageBuffer(8 * kMiB);
  std::string small = TakeMessageBuffer(kMiB);
  const char* small_memory = small.data();
  const char* big_memory = big.data();
  RecycleMessageBuffer(std::move(big));
  RecycleMessageBuffer(std::move(small));
  EXPECT_EQ(TakeMessageBuffer(512 * 1024).data(), small_memory);
  EXPECT_EQ(TakeMessageBuffer(2 * kMiB).data(), big_memory);
}

TEST(MessageBuffersTest, KeepsAtMost64MiBPerThread) {
  Drain();
  std::string first = TakeMessageBuffer(40 * kMiB);
  std::string second = TakeMessageBuffer(40 * kMiB);
  const char* first_memory = first.data();
  RecycleMessageBuffer(std::move(first));
  RecycleMessageBuffer(std::move(second));  // would pass 64 MiB: dropped
  std::string reused = TakeMessageBuffer(64 * 1024);
  EXPECT_EQ(reused.data(), first_memory);
  // The second was freed, not kept: the next take is a new small buffer.
  std::string next = TakeMessageBuffer(64 * 1024);
  EXPECT_LT(next.capacity(), kMiB);
}

TEST(MessageBuffersTest, BuffersStayOnTheirThread) {
  Drain();
  std::string a = TakeMessageBuffer(kMiB);
  const char* memory = a.data();
  RecycleMessageBuffer(std::move(a));
  const char* other = nullptr;
  std::thread([&] {
    std::string b = TakeMessageBuffer(kMiB);
    other = b.data();
    // Keep it alive past the comparison's allocation on this thread.
    RecycleMessageBuffer(std::move(b));
  }).join();
  EXPECT_NE(other, memory);
  EXPECT_EQ(TakeMessageBuffer(kMiB).data(), memory);
}

}  // namespace
}  // namespace dynrpc::internal
