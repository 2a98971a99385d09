#include "dynrpc/message_buffers.h"

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"

namespace dynrpc::internal {
namespace {

constexpr std::size_t kMiB = 1024 * 1024;

// Empties the process's cache: every cached buffer fits 64 KiB, so each
// take removes (and frees) one while there are any.
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

TEST(MessageBuffersTest, KeepsAtMost64MiBPerProcess) {
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

TEST(MessageBuffersTest, KeepsAtMostFourBuffers) {
  Drain();
  std::vector<std::string> buffers;
  std::set<const char*> kept;
  for (int i = 0; i < 5; ++i) buffers.push_back(TakeMessageBuffer(kMiB));
  for (int i = 0; i < 4; ++i) kept.insert(buffers[i].data());
  for (std::string& b : buffers) RecycleMessageBuffer(std::move(b));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(kept.count(TakeMessageBuffer(kMiB).data()), 1u) << i;
  }
  // The fifth was freed: nothing is left to take.
  std::string out;
  EXPECT_FALSE(TakeRecycledForOverwrite(kMiB, out));
}

// A buffer freed on one thread serves the next large message on another: a
// request's buffer, parsed on the connection's thread, is the one its
// response is serialized into wherever the handler resumed.
TEST(MessageBuffersTest, BuffersAreSharedByThreads) {
  Drain();
  std::string a = TakeMessageBuffer(kMiB);
  const char* memory = a.data();
  RecycleMessageBuffer(std::move(a));
  const char* other = nullptr;
  std::thread([&] {
    std::string b = TakeMessageBuffer(kMiB);
    other = b.data();
    RecycleMessageBuffer(std::move(b));
  }).join();
  EXPECT_EQ(other, memory);
}

// A buffer taken for overwrite keeps the memory and the length it was
// recycled with: nothing is zeroed up to that length, so bytes written
// before are still there (a fresh take would have zero-filled them).
TEST(MessageBuffersTest, TakeForOverwriteKeepsTheRecycledBytes) {
  Drain();
  std::string a(kMiB, 'x');
  const char* memory = a.data();
  RecycleMessageBuffer(std::move(a));
  std::string out = "untouched";
  ASSERT_TRUE(TakeRecycledForOverwrite(kMiB / 2, out));
  EXPECT_EQ(out.data(), memory);
  ASSERT_EQ(out.size(), kMiB / 2);
  EXPECT_EQ(out, std::string(kMiB / 2, 'x'));
  // Nothing fits now: `out` is left alone.
  std::string other = "untouched";
  EXPECT_FALSE(TakeRecycledForOverwrite(kMiB, other));
  EXPECT_EQ(other, "untouched");
}

TEST(MessageBuffersTest, SmallMessagesAreNeverTakenForOverwrite) {
  Drain();
  RecycleMessageBuffer(std::string(kMiB, 'x'));
  std::string out;
  EXPECT_FALSE(TakeRecycledForOverwrite(1000, out));
  EXPECT_TRUE(out.empty());
}

// SerializeToBuffer writes a message in place into a recycled buffer, and
// the bytes are exactly protobuf's.
TEST(MessageBuffersTest, SerializesInPlaceIntoARecycledBuffer) {
  Drain();
  google::protobuf::StringValue message;
  message.set_value(std::string(200 * 1024, 'v'));
  RecycleMessageBuffer(std::string(kMiB, 'x'));
  std::string out;
  ASSERT_TRUE(SerializeToBuffer(message, out));
  EXPECT_EQ(out, message.SerializeAsString());
  EXPECT_GE(out.capacity(), kMiB);  // the recycled one
}

// A buffer lent to a read that expects a large message counts against the
// cache's bound of four until the loan ends: given back (or dropped) it is
// cached again; kept, its place is free.
TEST(MessageBuffersTest, ALentBufferCountsAgainstTheBoundUntilTheLoanEnds) {
  Drain();
  std::vector<std::string> made;
  for (int i = 0; i < 6; ++i) made.push_back(TakeMessageBuffer(kMiB));
  for (int i = 0; i < 4; ++i) RecycleMessageBuffer(std::move(made[i]));
  const char* lent_memory = nullptr;
  {
    LentBuffer lent;
    ASSERT_TRUE(lent.Borrow(kMiB / 2));
    EXPECT_TRUE(lent.lent());
    EXPECT_EQ(lent.size(), kMiB / 2);
    lent_memory = lent.data();
    EXPECT_FALSE(lent.Borrow(kMiB)) << "one loan at a time";
    // Three cached and one lent: a fifth buffer is not kept.
    const char* fifth = made[4].data();
    RecycleMessageBuffer(std::move(made[4]));
    std::vector<std::string> taken(4);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(TakeRecycledForOverwrite(kMiB, taken[i])) << i;
      EXPECT_NE(taken[i].data(), fifth);
    }
    EXPECT_FALSE(TakeRecycledForOverwrite(kMiB, taken[3]));
    for (std::string& b : taken) RecycleMessageBuffer(std::move(b));
  }  // dropped while lent: given back
  std::vector<std::string> taken(4);
  bool lent_came_back = false;
  for (std::string& b : taken) {
    ASSERT_TRUE(TakeRecycledForOverwrite(kMiB, b));
    lent_came_back = lent_came_back || b.data() == lent_memory;
  }
  EXPECT_TRUE(lent_came_back);
  for (std::string& b : taken) RecycleMessageBuffer(std::move(b));

  // Kept: the buffer is the borrower's and a new one takes its place.
  LentBuffer kept;
  ASSERT_TRUE(kept.Borrow(kMiB));
  std::string message = kept.Keep();
  EXPECT_FALSE(kept.lent());
  EXPECT_EQ(message.size(), kMiB);
  const char* sixth = made[5].data();
  RecycleMessageBuffer(std::move(made[5]));
  bool sixth_kept = false;
  for (int i = 0; i < 4; ++i) {
    std::string b;
    ASSERT_TRUE(TakeRecycledForOverwrite(kMiB, b)) << i;
    sixth_kept = sixth_kept || b.data() == sixth;
    taken[i] = std::move(b);
  }
  EXPECT_TRUE(sixth_kept);
}

}  // namespace
}  // namespace dynrpc::internal
