// RecordStream when its spool fails under it (removed, or on a full disk), against the real
// lossguard-server binary over loopback: the trainer never stops, and the stats say what was lost.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "collector/record_stream_support.h"
#include "lossguard/collector/record_stream.h"
#include "support/records.h"
#include "support/tiny_file_system.h"

namespace lossguard::collector {
namespace record_stream_test {

using lossguard::testing::MakeRecord;
using lossguard::testing::TinyFileSystem;
using ::testing::HasSubstr;

// A spool whose directory disappears mid-run (a cleanup job, an unmounted volume): the trainer goes
// on, what was in the spool file is counted as lost, and the spool is recreated for what follows.
TEST(RecordStream, ASpoolRemovedWhileTrainingCostsOnlyWhatItHeld) {
  TempDir dir;
  std::uint16_t port = 0;
  std::string url = DeadServer(dir, port);
  Warnings warnings;
  RecordStreamOptions options = FastRetries(url, warnings);
  options.spool_path(dir.File("spool/records.ndjson").string());
  options.spool_retry_interval(std::chrono::milliseconds(50));
  RecordStream stream(options);
  for (int step = 0; step < 300; ++step) ASSERT_TRUE(stream.Submit(MakeRecord("removed", step)));
  ASSERT_TRUE(Eventually([&] { return stream.stats().spooled == 300; }, kWait)) << warnings.All();

  std::filesystem::remove_all(dir.File("spool"));
  for (int step = 300; step < 500; ++step) ASSERT_TRUE(stream.Submit(MakeRecord("removed", step)));
  ASSERT_TRUE(Eventually([&] { return stream.stats().dropped == 300; }, kWait))
      << stream.stats().dropped << "\n"
      << warnings.All();
  ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(options.spool_path()); }, kWait));

  ServerProcess server({.db = dir.File("db"), .listen = "127.0.0.1:" + std::to_string(port)});
  ASSERT_TRUE(stream.Flush(std::chrono::seconds(30))) << warnings.All();
  StreamStats stats = stream.stats();
  EXPECT_EQ(stats.delivered, 200u);
  EXPECT_EQ(stats.dropped, 300u) << "exactly what the removed file held";
  EXPECT_GE(stats.spool_errors, 1u);
  EXPECT_EQ(RunSummary(server.url(), "removed")["run"]["records"], 200);
  EXPECT_THAT(warnings.All(), HasSubstr("the spool failed"));
  EXPECT_THAT(warnings.All(),
              HasSubstr("dropped 300 records: they were in a spool file that is gone"));
}

// The spool's file system fills up while the server is down: Append fails with ENOSPC on every
// cycle. Training goes on (this process is the trainer), records are held in memory up to
// queue_capacity, the rest counted as dropped; once there is space and a server, the rest arrives.
TEST(RecordStream, AFullSpoolDiskNeverStopsTheTrainerAndTheStatsSayWhatWasLost) {
  TempDir dir;
  TinyFileSystem disk(dir.File("disk"), "1m");
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root";
  std::uint16_t port = 0;
  std::string url = DeadServer(dir, port);
  Warnings warnings;
  RecordStreamOptions options = FastRetries(url, warnings);
  options.spool_path((dir.File("disk") / "spool" / "records.ndjson").string());
  options.spool_retry_interval(std::chrono::milliseconds(50));
  options.queue_capacity(512);
  RecordStream stream(options);
  disk.Fill();

  constexpr int kSteps = 5000;
  for (int step = 0; step < kSteps; ++step) {
    while (!stream.Submit(MakeRecord("full", step))) std::this_thread::yield();
    if (step % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(Eventually([&] { return stream.stats().spool_errors > 0; }, kWait)) << warnings.All();
  ASSERT_TRUE(Eventually(
      [&] {
        StreamStats s = stream.stats();
        return s.dropped + s.spooled >= kSteps - 2 * options.queue_capacity();
      },
      kWait))
      << warnings.All();
  EXPECT_GT(stream.stats().dropped, 0u) << "a 1 MB disk that is full cannot hold them all";

  disk.Free();  // the spool is retried every 50 ms and works again: memory goes to it
  ASSERT_TRUE(Eventually(
      [&] { return warnings.All().find("is usable again") != std::string::npos; }, kWait))
      << warnings.All();
  ServerProcess server({.db = dir.File("db"), .listen = "127.0.0.1:" + std::to_string(port)});
  ASSERT_TRUE(stream.Flush(std::chrono::seconds(30))) << warnings.All();
  StreamStats stats = stream.stats();
  EXPECT_GE(stats.delivered, options.queue_capacity()) << "what was held in memory arrives";
  EXPECT_EQ(stats.delivered + stats.dropped, stats.submitted)
      << "every record is either delivered or counted as lost";
  EXPECT_EQ(RunSummary(server.url(), "full")["run"]["records"].get<std::uint64_t>(),
            stats.delivered);
  const std::string all = warnings.All();
  EXPECT_THAT(all, HasSubstr("No space left on device"));
  EXPECT_LT(std::count(all.begin(), all.end(), '\n'), 40) << "warnings are rate-limited:\n" << all;
}

}  // namespace record_stream_test
}  // namespace lossguard::collector
