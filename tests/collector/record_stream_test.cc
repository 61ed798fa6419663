// RecordStream against the real lossguard-server binary over loopback: live delivery, a server
// that is down and comes back, a trainer restart with a spool, overflow without a spool, refusals.
#include "lossguard/collector/record_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "collector/record_stream_support.h"
#include "lossguard/client/http_client.h"
#include "lossguard/client/url.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::collector {
namespace record_stream_test {

using lossguard::testing::MakeRecord;
using lossguard::testing::ServerProcess;
using lossguard::testing::TempDir;
using ::testing::HasSubstr;

// What a guard needs: records sent as they come (not after flush_interval) and the run's verdicts
// from each acknowledgement.
TEST(RecordStream, SendsPromptlyAndKeepsTheRunsLatestVerdicts) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  RecordStream stream(RecordStreamOptions()
                          .server_url(server.url())
                          .send_promptly(true)
                          .flush_interval(std::chrono::minutes(10)));
  EXPECT_FALSE(stream.Verdicts("g"));
  ASSERT_TRUE(stream.Submit(MakeRecord("g", 0)));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (stream.verdict_generation() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_GT(stream.verdict_generation(), 0u)
      << "delivered long before the flush interval of 10 minutes, without Flush";
  EXPECT_TRUE(stream.Verdicts("g")->open.empty());
  const std::uint64_t before = stream.verdict_generation();
  ASSERT_TRUE(stream.Submit(MakeRecord("g", 1, std::nan(""))));
  ASSERT_TRUE(stream.Flush(std::chrono::seconds(20)));
  EXPECT_GT(stream.verdict_generation(), before);
  std::optional<client::RunVerdicts> verdicts = stream.Verdicts("g");
  ASSERT_TRUE(verdicts);
  EXPECT_EQ(verdicts->through_step, 1);
  ASSERT_EQ(verdicts->open.size(), 1u);
  EXPECT_EQ(verdicts->open[0].kind, "nonfinite");
  EXPECT_FALSE(stream.Verdicts("other"));
}

// A record submitted while the sender decides to sleep must wake it: otherwise it waits for
// flush_interval (10 minutes here). A fresh stream's first Submit races the sender's first wait;
// repeated, the race is met often enough to fail when the wake-up can be lost.
TEST(RecordStream, ARecordSubmittedAsTheSenderGoesToSleepIsSentPromptly) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  constexpr int kStreams = 150;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int late = 0, started = 0;
  for (; started < kStreams && std::chrono::steady_clock::now() < give_up; ++started) {
    RecordStream stream(RecordStreamOptions()
                            .server_url(server.url())
                            .send_promptly(true)
                            .flush_interval(std::chrono::minutes(10)));
    ASSERT_TRUE(stream.Submit(MakeRecord("race", started)));
    if (!Eventually([&] { return stream.verdict_generation() > 0; }, std::chrono::seconds(10)))
      ++late;
  }
  EXPECT_EQ(late, 0) << "of " << started << " streams, each waiting 10 s at most";
  // A late stream's record goes at its close: nothing is lost either way.
  EXPECT_EQ(RunSummary(server.url(), "race")["run"]["records"], started);
}

TEST(RecordStream, DeliversEverythingToALiveServer) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  Warnings warnings;
  RecordStream stream(FastRetries(server.url(), warnings));
  for (int step = 0; step < 2500; ++step) ASSERT_TRUE(stream.Submit(MakeRecord("live", step)));
  ASSERT_TRUE(stream.Flush(std::chrono::seconds(20))) << warnings.All();
  StreamStats stats = stream.stats();
  EXPECT_EQ(stats.submitted, 2500u);
  EXPECT_EQ(stats.delivered, 2500u);
  EXPECT_EQ(stats.dropped + stats.rejected + stats.spooled, 0u);
  EXPECT_EQ(RunSummary(server.url(), "live")["run"]["records"], 2500);
  EXPECT_EQ(warnings.All(), "");
}

TEST(RecordStream, ConcurrentProducersLoseNothing) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  Warnings warnings;
  RecordStreamOptions options = FastRetries(server.url(), warnings);
  options.queue_capacity(64);  // small, so producers and the sender contend on a wrapping ring
  RecordStream stream(options);
  constexpr int kThreads = 4, kPerThread = 2000;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // A full ring refuses rather than blocks; a producer that must not lose data retries.
        while (
            !stream.Submit(MakeRecord("threads", static_cast<std::int64_t>(t) * kPerThread + i))) {
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& producer : producers) producer.join();
  ASSERT_TRUE(stream.Flush(std::chrono::seconds(30))) << warnings.All();
  StreamStats stats = stream.stats();
  EXPECT_EQ(stats.delivered, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(stats.submitted - stats.dropped, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(RunSummary(server.url(), "threads")["run"]["records"], kThreads * kPerThread);
}

TEST(RecordStream, SpoolsWhileTheServerIsDownThenReplaysInOrderExactlyOnce) {
  TempDir dir;
  std::uint16_t port = 0;
  std::string url = DeadServer(dir, port);
  Warnings warnings;
  RecordStreamOptions options = FastRetries(url, warnings);
  options.spool_path(dir.File("spool/records.ndjson").string());
  RecordStream stream(options);

  for (int step = 0; step < 1500; ++step)
    ASSERT_TRUE(stream.Submit(MakeRecord("outage", step, 1.0)));
  ASSERT_TRUE(Eventually([&] { return stream.stats().spooled == 1500; }, kWait))
      << stream.stats().spooled;
  EXPECT_FALSE(stream.Flush(std::chrono::milliseconds(100))) << "nothing can be delivered yet";
  EXPECT_THAT(warnings.All(), HasSubstr("cannot deliver records"));
  EXPECT_GT(stream.stats().failed_requests, 0u);

  ServerProcess server({.db = dir.File("db"), .listen = "127.0.0.1:" + std::to_string(port)});
  // Submitted after the outage: must land after the spooled version of the same step.
  ASSERT_TRUE(stream.Submit(MakeRecord("outage", 7, 9.0)));
  ASSERT_TRUE(stream.Flush(std::chrono::seconds(30))) << warnings.All();
  EXPECT_EQ(RunSummary(server.url(), "outage")["run"]["records"], 1500);
  client::HttpClient client(server.url());
  auto step7 = nlohmann::json::parse(client.Get("/api/v1/runs/outage/steps?from=7&to=7").body);
  EXPECT_EQ(step7["steps"][0]["loss"], 9.0) << "the spool is replayed before newer records";
  EXPECT_EQ(stream.stats().delivered, 1501u);
  EXPECT_EQ(stream.stats().dropped, 0u);
}

TEST(RecordStream, ATrainerRestartReplaysWhatTheLastOneSpooled) {
  TempDir dir;
  std::uint16_t port = 0;
  std::string url = DeadServer(dir, port);
  Warnings warnings;
  RecordStreamOptions options = FastRetries(url, warnings);
  options.spool_path(dir.File("records.ndjson").string());
  {
    RecordStream first(options);
    for (int step = 0; step < 300; ++step) first.Submit(MakeRecord("restart", step));
  }  // the destructor tries for drain_timeout, then leaves the records in the spool
  ServerProcess server({.db = dir.File("db"), .listen = "127.0.0.1:" + std::to_string(port)});
  RecordStream second(options);
  ASSERT_TRUE(second.Flush(std::chrono::seconds(30))) << warnings.All();
  EXPECT_EQ(second.stats().delivered, 300u);
  EXPECT_EQ(RunSummary(server.url(), "restart")["run"]["records"], 300);
  EXPECT_THAT(warnings.All(), ::testing::Not(HasSubstr("dropped")));
}

TEST(RecordStream, WithoutASpoolOverflowIsCountedAndWarnedNotSilent) {
  TempDir dir;
  std::uint16_t port = 0;
  Warnings warnings;
  RecordStreamOptions options = FastRetries(DeadServer(dir, port), warnings);
  options.queue_capacity(50);
  RecordStream stream(options);
  int refused = 0;
  for (int step = 0; step < 500; ++step)
    refused += stream.Submit(MakeRecord("overflow", step)) ? 0 : 1;
  ASSERT_TRUE(Eventually([&] { return stream.stats().dropped >= 400; }, kWait))
      << stream.stats().dropped;
  StreamStats stats = stream.stats();
  EXPECT_EQ(stats.submitted, 500u);
  EXPECT_EQ(stats.delivered, 0u);
  EXPECT_LE(stats.dropped, 450u) << "at most queue_capacity records are kept, no more are lost";
  EXPECT_GT(refused, 0) << "Submit says when the queue is full";
  EXPECT_THAT(warnings.All(), HasSubstr("dropping records"));
}

TEST(RecordStream, AnInvalidRecordIsRejectedAloneAndTheRestDelivered) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  Warnings warnings;
  RecordStream stream(FastRetries(server.url(), warnings));
  for (int step = 0; step < 10; ++step) {
    wire::StepRecord record = MakeRecord("bad", step);
    if (step == 4) record.ga_steps = 0;  // a trainer bug
    stream.Submit(record);
  }
  ASSERT_TRUE(stream.Flush(std::chrono::seconds(20)));
  EXPECT_EQ(stream.stats().rejected, 1u);
  EXPECT_EQ(stream.stats().delivered, 9u);
  EXPECT_EQ(RunSummary(server.url(), "bad")["run"]["records"], 9);
  EXPECT_THAT(warnings.All(), HasSubstr("ga_steps must be >= 1, but got 0"));
}

TEST(RecordStream, TheDestructorDeliversWhatIsQueued) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  Warnings warnings;
  {
    RecordStreamOptions options = FastRetries(server.url(), warnings);
    options.flush_interval(std::chrono::seconds(60));  // only the destructor will send
    options.batch_size(1000);
    RecordStream stream(options);
    for (int step = 0; step < 250; ++step) stream.Submit(MakeRecord("drain", step));
  }
  EXPECT_EQ(RunSummary(server.url(), "drain")["run"]["records"], 250);
}

// Flush counts records: it returns true only when every record submitted before it was settled.
// The old Flush trusted an idle flag the sender computed before taking the lock; a Submit landing
// between that computation and the store left the flag saying "idle", and a Flush during the next
// cycle (the record taken from the ring, not delivered yet) returned true. The hook makes that
// interleaving happen every time: a Submit as one cycle ends, a Flush as the next one ends.
TEST(RecordStream, FlushNeverReturnsWhileASubmittedRecordIsUndelivered) {
  TempDir dir;
  std::uint16_t port = 0;
  Warnings warnings;
  RecordStreamOptions options = FastRetries(DeadServer(dir, port), warnings);
  RecordStream* stream = nullptr;
  std::atomic<int> phase{0};  // 0 idle, 1 submit at the next cycle end, 2 flush at the next one
  std::atomic<int> flushed_early{-1};
  options.before_publish([&] {
    if (phase == 1) {
      stream->Submit(MakeRecord("window", 1));
      phase = 2;
    } else if (phase == 2) {
      // The record is out of the ring, its POST failed (the server is down): nothing delivered.
      flushed_early = stream->Flush(std::chrono::milliseconds(0)) ? 1 : 0;
      phase = 3;
    }
  });
  RecordStream local(options);
  stream = &local;
  ASSERT_TRUE(local.Flush(std::chrono::seconds(5))) << "nothing submitted yet";
  phase = 1;
  ASSERT_TRUE(Eventually([&] { return phase == 3; }, kWait));
  EXPECT_EQ(flushed_early, 0) << "Flush said everything was delivered while nothing was";
  EXPECT_EQ(local.stats().delivered, 0u);
  EXPECT_FALSE(local.Flush(std::chrono::milliseconds(100)));
}

// The same without a hook, under load: a trainer thread submits while another flushes in a loop.
TEST(RecordStream, FlushWaitsForEveryRecordSubmittedBeforeItWhileOthersSubmit) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  Warnings warnings;
  RecordStreamOptions options = FastRetries(server.url(), warnings);
  options.batch_size(1);  // one POST per record: many sender cycles, many windows
  RecordStream stream(options);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> accepted{0};  // counted after Submit returned: before any Flush below
  std::thread trainer([&] {
    for (int step = 0; step < 20'000 && !done; ++step) {
      if (stream.Submit(MakeRecord("interleaved", step))) ++accepted;
      // Well below what one sender delivers even under a sanitizer, so that flushes complete.
      std::this_thread::sleep_for(std::chrono::microseconds(step % 7 == 0 ? 5000 : 1500));
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  int flushes = 0, early = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::uint64_t before = accepted.load();
    ASSERT_TRUE(stream.Flush(std::chrono::seconds(10))) << warnings.All();
    ++flushes;
    if (stream.stats().delivered < before) ++early;
  }
  done = true;
  trainer.join();
  EXPECT_GE(flushes, 10) << "the loop ran";
  EXPECT_EQ(early, 0) << "Flush returned before the records submitted before it were delivered, in "
                      << early << " of " << flushes << " flushes";
  EXPECT_EQ(stream.stats().dropped + stream.stats().rejected, 0u);
}

TEST(RecordStream, BadOptionsAreRefused) {
  RecordStreamOptions options;
  options.server_url("ftp://nowhere");
  EXPECT_THROW(RecordStream stream(options), std::invalid_argument);
  options.server_url("http://127.0.0.1:1");
  options.batch_size(0);
  EXPECT_THROW(RecordStream stream(options), std::invalid_argument);
}

}  // namespace record_stream_test
}  // namespace lossguard::collector
