#include "worker/ordered_consumer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/eventually.h"

namespace lossguard::worker {
namespace {

using namespace std::chrono_literals;

using lossguard::testing::Eventually;

// What a batch's consumer saw, from its own thread.
struct Seen {
  std::mutex mutex;
  std::vector<std::size_t> items;
  std::thread::id thread;
  std::atomic<std::size_t> count = 0;
  bool Add(std::size_t i) {
    std::lock_guard lock(mutex);
    items.push_back(i);
    thread = std::this_thread::get_id();
    ++count;
    return true;
  }
};

TEST(OrderedConsumer, ConsumesEachPublishedItemInOrderWhileTheProducerGoesOn) {
  OrderedConsumer consumer;
  Seen seen;
  constexpr std::size_t kItems = 1000;
  consumer.Begin(kItems, [&](std::size_t i) { return seen.Add(i); });
  for (std::size_t ready = 10; ready <= kItems; ready += 10) {
    consumer.Publish(ready);
    // The consumer takes items before the producer is done: it catches up with every chunk (a
    // consumer that waited for Finish would never get here).
    ASSERT_TRUE(Eventually([&] { return seen.count == ready; })) << "stuck at " << seen.count;
  }
  EXPECT_EQ(consumer.Finish(), kItems);
  std::vector<std::size_t> expected(kItems);
  for (std::size_t i = 0; i < kItems; ++i) expected[i] = i;
  EXPECT_EQ(seen.items, expected);
  EXPECT_NE(seen.thread, std::this_thread::get_id());
}

TEST(OrderedConsumer, StopsWhereTheConsumerDeclinesAndReportsIt) {
  OrderedConsumer consumer;
  Seen seen;
  consumer.Begin(100, [&](std::size_t i) { return i != 37 && seen.Add(i); });
  consumer.Publish(100);
  EXPECT_EQ(consumer.Finish(), 37u);  // the producer's thread goes on from item 37
  EXPECT_EQ(seen.items.size(), 37u);
  EXPECT_EQ(seen.items.back(), 36u);
}

TEST(OrderedConsumer, AnEmptyBatchEndsAtOnce) {
  OrderedConsumer consumer;
  consumer.Begin(0, [](std::size_t) -> bool { throw std::logic_error("nothing to consume"); });
  consumer.Publish(0);
  EXPECT_EQ(consumer.Finish(), 0u);
}

TEST(OrderedConsumer, TheConsumersErrorReachesFinishAndTheNextBatchRuns) {
  OrderedConsumer consumer;
  consumer.Begin(10, [](std::size_t i) -> bool {
    if (i == 4) throw std::runtime_error("item 4 is bad");
    return true;
  });
  consumer.Publish(10);
  EXPECT_THROW(
      {
        try {
          consumer.Finish();
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "item 4 is bad");
          throw;
        }
      },
      std::runtime_error);
  Seen seen;
  consumer.Begin(5, [&](std::size_t i) { return seen.Add(i); });
  consumer.Publish(5);
  EXPECT_EQ(consumer.Finish(), 5u);
}

TEST(OrderedConsumer, CancelStopsABatchWhoseProducerFailedAndNothingUnpublishedIsConsumed) {
  OrderedConsumer consumer;
  Seen seen;
  consumer.Begin(100, [&](std::size_t i) { return seen.Add(i); });
  consumer.Publish(20);
  consumer.Cancel();  // would wait forever if the consumer waited for the other 80
  EXPECT_LE(seen.count, 20u);
  EXPECT_FALSE(consumer.busy());
  consumer.Cancel();  // nothing in progress: a no-op

  Seen next;
  consumer.Begin(3, [&](std::size_t i) { return next.Add(i); });
  consumer.Publish(3);
  EXPECT_EQ(consumer.Finish(), 3u);
  EXPECT_EQ(next.items, (std::vector<std::size_t>{0, 1, 2}));
}

TEST(OrderedConsumer, OneBatchAtATime) {
  OrderedConsumer consumer;
  consumer.Begin(1, [](std::size_t) { return true; });
  EXPECT_THROW(consumer.Begin(1, [](std::size_t) { return true; }), std::logic_error);
  consumer.Publish(1);
  EXPECT_EQ(consumer.Finish(), 1u);
  EXPECT_THROW(consumer.Finish(), std::logic_error);
}

TEST(OrderedConsumer, DestroyedMidBatchStopsAndJoins) {
  std::atomic<std::size_t> consumed = 0;
  {
    OrderedConsumer consumer;
    consumer.Begin(50, [&](std::size_t) { return ++consumed, true; });
    consumer.Publish(10);
  }
  EXPECT_LE(consumed, 10u);
}

}  // namespace
}  // namespace lossguard::worker
