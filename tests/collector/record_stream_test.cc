// RecordStream against the real lossguard-server binary over loopback: live delivery, a server
// that is down and comes back, a trainer restart with a spool, overflow without a spool, refusals.
#include "lossguard/collector/record_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "e2e/server_process.h"
#include "lossguard/wire/http_client.h"
#include "lossguard/wire/url.h"
#include "server/test_db.h"

namespace lossguard::collector {
namespace {

using lossguard::testing::ServerProcess;
using lossguard::testing::TempDir;
using ::testing::HasSubstr;

wire::StepRecord Record(const std::string& run, std::int64_t step, double loss = 2.0) {
  wire::StepRecord r;
  r.run = run;
  r.step = step;
  r.ga_steps = 8;
  r.micro_batch_size = 1;
  r.loss = loss;
  r.tokens = 1000;
  return r;
}

nlohmann::json RunSummary(const std::string& url, const std::string& run) {
  wire::HttpClient client(url);
  return nlohmann::json::parse(client.Get("/api/v1/runs/" + run).body);
}

// Collects warnings so tests can check that nothing is lost silently.
struct Warnings {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> Sink() {
    return [this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
  }
  std::string All() {
    std::lock_guard lock(mutex);
    std::string out;
    for (const auto& line : lines) out += line + "\n";
    return out;
  }
};

// A loopback port with nothing listening: a server's, after it stopped.
std::string DeadServer(const TempDir& dir, std::uint16_t& port) {
  ServerProcess server({.db = dir.File("probe.db")});
  std::string url = server.url();
  port = wire::ParseHttpUrl(url).value().endpoint.port;
  server.Stop(SIGTERM, std::chrono::seconds(10));
  return url;
}

RecordStreamOptions FastRetries(const std::string& url, Warnings& warnings) {
  RecordStreamOptions options;
  options.server_url = url;
  options.batch_size = 100;
  options.flush_interval = std::chrono::milliseconds(20);
  options.initial_backoff = std::chrono::milliseconds(20);
  options.max_backoff = std::chrono::milliseconds(100);
  options.drain_timeout = std::chrono::milliseconds(500);
  options.warn = warnings.Sink();
  return options;
}

template <typename Predicate>
bool WaitFor(Predicate predicate, std::chrono::seconds limit = std::chrono::seconds(15)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TEST(RecordStream, DeliversEverythingToALiveServer) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  Warnings warnings;
  RecordStream stream(FastRetries(server.url(), warnings));
  for (int step = 0; step < 2500; ++step) ASSERT_TRUE(stream.Submit(Record("live", step)));
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
  options.queue_capacity = 64;  // small, so producers and the sender contend on a wrapping ring
  RecordStream stream(options);
  constexpr int kThreads = 4, kPerThread = 2000;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // A full ring refuses rather than blocks; a producer that must not lose data retries.
        while (!stream.Submit(Record("threads", static_cast<std::int64_t>(t) * kPerThread + i))) {
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
  options.spool_path = dir.File("spool/records.ndjson").string();
  RecordStream stream(options);

  for (int step = 0; step < 1500; ++step) ASSERT_TRUE(stream.Submit(Record("outage", step, 1.0)));
  ASSERT_TRUE(WaitFor([&] { return stream.stats().spooled == 1500; })) << stream.stats().spooled;
  EXPECT_FALSE(stream.Flush(std::chrono::milliseconds(100))) << "nothing can be delivered yet";
  EXPECT_THAT(warnings.All(), HasSubstr("cannot deliver records"));
  EXPECT_GT(stream.stats().failed_requests, 0u);

  ServerProcess server({.db = dir.File("db"), .listen = "127.0.0.1:" + std::to_string(port)});
  // Submitted after the outage: must land after the spooled version of the same step.
  ASSERT_TRUE(stream.Submit(Record("outage", 7, 9.0)));
  ASSERT_TRUE(stream.Flush(std::chrono::seconds(30))) << warnings.All();
  EXPECT_EQ(RunSummary(server.url(), "outage")["run"]["records"], 1500);
  wire::HttpClient client(server.url());
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
  options.spool_path = dir.File("records.ndjson").string();
  {
    RecordStream first(options);
    for (int step = 0; step < 300; ++step) first.Submit(Record("restart", step));
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
  options.queue_capacity = 50;
  RecordStream stream(options);
  int refused = 0;
  for (int step = 0; step < 500; ++step) refused += stream.Submit(Record("overflow", step)) ? 0 : 1;
  ASSERT_TRUE(WaitFor([&] { return stream.stats().dropped >= 400; })) << stream.stats().dropped;
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
    wire::StepRecord record = Record("bad", step);
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
    options.flush_interval = std::chrono::seconds(60);  // only the destructor will send
    options.batch_size = 1000;
    RecordStream stream(options);
    for (int step = 0; step < 250; ++step) stream.Submit(Record("drain", step));
  }
  EXPECT_EQ(RunSummary(server.url(), "drain")["run"]["records"], 250);
}

TEST(RecordStream, BadOptionsAreRefused) {
  RecordStreamOptions options;
  options.server_url = "ftp://nowhere";
  EXPECT_THROW(RecordStream stream(options), std::invalid_argument);
  options.server_url = "http://127.0.0.1:1";
  options.batch_size = 0;
  EXPECT_THROW(RecordStream stream(options), std::invalid_argument);
}

}  // namespace
}  // namespace lossguard::collector
