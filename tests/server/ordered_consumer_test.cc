#include "worker/ordered_consumer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
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

// The items [0, count) in order: what a consumer that took `count` items has seen.
std::vector<std::size_t> FirstItems(std::size_t count) {
  std::vector<std::size_t> items(count);
  for (std::size_t i = 0; i < count; ++i) items[i] = i;
  return items;
}

TEST(OrderedConsumer, StopsWhereTheConsumerDeclinesAndReportsIt) {
  OrderedConsumer consumer;
  Seen seen;
  consumer.Begin(100, [&](std::size_t i) { return i != 37 && seen.Add(i); });
  consumer.Publish(100);
  // Finish once the consumer is at item 37 (in its chunk, or done with it): before that, the
  // producer would take over wherever the consumer was.
  ASSERT_TRUE(Eventually([&] { return seen.count == 37; }));
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
  std::atomic<bool> at_bad_item = false;
  consumer.Begin(10, [&](std::size_t i) -> bool {
    if (i == 4) {
      at_bad_item = true;
      throw std::runtime_error("item 4 is bad");
    }
    return true;
  });
  consumer.Publish(10);
  ASSERT_TRUE(Eventually([&] { return at_bad_item.load(); }));
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
  const std::size_t taken = consumer.Finish();
  EXPECT_LE(taken, 5u);
  EXPECT_EQ(seen.items, FirstItems(taken));
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
  const std::size_t taken = consumer.Finish();
  EXPECT_LE(taken, 3u);
  EXPECT_EQ(next.items, FirstItems(taken));
}

TEST(OrderedConsumer, OneBatchAtATime) {
  OrderedConsumer consumer;
  consumer.Begin(1, [](std::size_t) { return true; });
  EXPECT_THROW(consumer.Begin(1, [](std::size_t) { return true; }), std::logic_error);
  consumer.Publish(1);
  EXPECT_LE(consumer.Finish(), 1u);
  EXPECT_THROW(consumer.Finish(), std::logic_error);
}

TEST(OrderedConsumer, FinishReturnsWhatTheConsumerTookInOrderAndTheRestIsTheProducers) {
  OrderedConsumer consumer;
  constexpr std::size_t kItems = 64;
  for (int batch = 0; batch < 200; ++batch) {
    Seen seen;
    consumer.Begin(kItems, [&](std::size_t i) { return seen.Add(i); });
    for (std::size_t ready = 16; ready <= kItems; ready += 16) consumer.Publish(ready);
    const std::size_t taken = consumer.Finish();
    ASSERT_LE(taken, kItems);
    ASSERT_EQ(seen.items, FirstItems(taken)) << "batch " << batch;
    if (taken > 0) {
      ASSERT_NE(seen.thread, std::this_thread::get_id());
    }
    // Finished: the consumer takes nothing more of the batch.
    std::this_thread::sleep_for(1ms);
    ASSERT_EQ(seen.count, taken) << "batch " << batch;
  }
}

TEST(OrderedConsumer, FinishWaitsForTheChunkInProgressAndStartsNoOther) {
  // The consumer is held inside its chunk [0, 5) while [5, 10) is published: Finish waits for the
  // chunk, then the rest is the producer's. Whether Finish is reached before the chunk ends is up
  // to the scheduler (50 ms is given): a few attempts, of which one must see it.
  bool producer_took_the_rest = false;
  for (int attempt = 0; attempt < 20 && !producer_took_the_rest; ++attempt) {
    OrderedConsumer consumer;
    Seen seen;
    std::promise<void> inside;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    consumer.Begin(10, [&](std::size_t i) {
      if (i == 4) {
        inside.set_value();
        released.wait();
      }
      return seen.Add(i);
    });
    consumer.Publish(5);
    inside.get_future().wait();
    consumer.Publish(10);
    auto finished = std::async(std::launch::async, [&] { return consumer.Finish(); });
    EXPECT_EQ(finished.wait_for(50ms), std::future_status::timeout)
        << "Finish returned while the consumer was inside a chunk";
    release.set_value();
    const std::size_t taken = finished.get();
    ASSERT_TRUE(taken == 5 || taken == 10) << taken;
    EXPECT_EQ(seen.items, FirstItems(taken));
    producer_took_the_rest = taken == 5;
  }
  EXPECT_TRUE(producer_took_the_rest);
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
