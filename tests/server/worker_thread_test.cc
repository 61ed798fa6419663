#include "worker/worker_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "support/eventually.h"

namespace lossguard::worker {
namespace {

using namespace std::chrono_literals;

using lossguard::testing::Eventually;

TEST(WorkerThread, StopEndsALongWaitAndTheLoop) {
  WorkerThread thread;
  std::atomic<int> rounds = 0;
  thread.Start([&] {
    do ++rounds;
    while (thread.Wait(1h));
  });
  ASSERT_TRUE(Eventually([&] { return rounds == 1; }));
  thread.Stop();  // would hang for an hour if Wait() ignored it
  EXPECT_EQ(rounds, 1);
  EXPECT_TRUE(thread.stopping());
  thread.Stop();  // idempotent
}

TEST(WorkerThread, KickWakesTheWaitOnceAndIsNotLost) {
  WorkerThread thread;
  std::atomic<int> rounds = 0;
  thread.Kick();  // before the body waits: its first Wait returns at once
  thread.Start([&] {
    do ++rounds;
    while (thread.Wait(1h));
  });
  ASSERT_TRUE(Eventually([&] { return rounds == 2; }));
  thread.Kick();
  ASSERT_TRUE(Eventually([&] { return rounds == 3; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(rounds, 3) << "a kick wakes one wait, not every later one";
}

TEST(WorkerThread, WaitTimesOutAndAfterStopReturnsFalseAtOnce) {
  WorkerThread thread;
  std::atomic<int> timed_out = 0;
  std::atomic<bool> after_stop = true;
  thread.Start([&] {
    if (thread.Wait(1ms)) ++timed_out;
    while (!thread.stopping()) std::this_thread::sleep_for(1ms);
    after_stop = thread.Wait(1h);
  });
  ASSERT_TRUE(Eventually([&] { return timed_out == 1; }));
  thread.Stop();
  EXPECT_FALSE(after_stop);
}

TEST(WorkerThread, StartsOnce) {
  WorkerThread thread;
  thread.Start([&] { thread.Wait(1h); });
  EXPECT_THROW(thread.Start([] {}), std::logic_error);
}

}  // namespace
}  // namespace lossguard::worker
