#include "store/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <latch>
#include <limits>
#include <map>
#include <random>
#include <thread>
#include <tuple>

#include "server/store_fixtures.h"
#include "store/migrations.h"
#include "store/sqlite.h"
#include "support/postgres_server.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::store {

namespace store_test {

using lossguard::testing::MakeRecord;
using lossguard::testing::PostgresServer;
using lossguard::testing::TempDir;
using ::testing::HasSubstr;

// The store's contract, on each engine: every test of this suite runs on SQLite and on a real
// PostgreSQL server.
class StoreTest : public lossguard::testing::EngineTest {};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

StepQuery Range(std::int64_t from, std::int64_t to) {
  StepQuery query;
  query.from = from;
  query.to = to;
  return query;
}

// A slowly falling loss, as a healthy run's.
std::vector<wire::StepRecord> Steps(const std::string& run, std::int64_t first,
                                    std::int64_t count) {
  return lossguard::testing::MakeSteps(run, first, count, 10.0, -0.001);
}

TEST_P(StoreTest, IngestCountsNewDuplicateAndReplaced) {
  auto opened = Open();
  Store& store = *opened;
  IngestResult first = store.Ingest(Steps("r", 0, 100));
  EXPECT_EQ(first.accepted, 100);
  EXPECT_EQ(first.duplicates, 0);
  EXPECT_EQ(first.replaced, 0);

  IngestResult again = store.Ingest(Steps("r", 0, 100));  // a client retry
  EXPECT_EQ(again.accepted, 100);
  EXPECT_EQ(again.duplicates, 100);
  EXPECT_EQ(again.replaced, 0);

  std::vector<wire::StepRecord> resumed = Steps("r", 90, 20);  // resumed from a checkpoint
  for (auto& r : resumed) r.loss += 1;
  IngestResult third = store.Ingest(resumed);
  EXPECT_EQ(third.accepted, 20);
  EXPECT_EQ(third.duplicates, 0);
  EXPECT_EQ(third.replaced, 10);

  auto run = store.runs().Get("r");
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->records, 110);
  EXPECT_EQ(run->latest["step"], 109);
  auto page = store.runs().Steps("r", Range(95, 95));
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(page->records[0])["loss"], 10.0 - 0.095 + 1);
}

TEST_P(StoreTest, SameKeyTwiceInOneBatchIsAppliedInOrder) {
  auto opened = Open();
  Store& store = *opened;
  auto a = MakeRecord("r", 1, 1.0);
  auto b = MakeRecord("r", 1, 2.0);
  IngestResult result = store.Ingest({a, b, b});
  EXPECT_EQ(result.accepted, 3);
  EXPECT_EQ(result.replaced, 1);
  EXPECT_EQ(result.duplicates, 1);
  auto page = store.runs().Steps("r", StepQuery{});
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(page->records[0])["loss"], 2.0);
}

TEST_P(StoreTest, NonFiniteValuesAndUnknownFieldsSurviveStorage) {
  auto opened = Open();
  Store& store = *opened;
  auto r = MakeRecord("r", 0, kNaN);
  r.grad_norm = kInf;
  r.ref_loss = -kInf;
  r.lr = kNaN;
  r.micro = {wire::MicroBatch{kNaN, 3, kInf}};
  r.extra = {{"note", "kept"}, {"nested", {{"a", 1}}}};
  store.Ingest({r});
  auto page = store.runs().Steps("r", StepQuery{});
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0], wire::CanonicalJson(r));

  // Re-sending the NaN record is a duplicate: NaN compares equal to itself in canonical form.
  EXPECT_EQ(store.Ingest({r}).duplicates, 1);

  auto series = store.runs().Downsampled("r", 0, 10, std::nullopt, 100);
  ASSERT_EQ(series->ranks.size(), 1u);
  const BlockStats& bucket = series->ranks[0].buckets.at(0);
  EXPECT_EQ(bucket.loss.nan, 1);
  EXPECT_FALSE(bucket.loss.min.has_value());
  EXPECT_EQ(*bucket.grad_norm.max, kInf);
  EXPECT_EQ(*bucket.ref_loss.min, -kInf);
}

TEST_P(StoreTest, FailedBatchStoresNothingAndLeavesTheStoreUsable) {
  Open();  // creates the schema
  // A real failure of the database in the middle of a batch: a trigger that aborts on step 50.
  if (GetParam() == Backend::kSqlite) {
    Connect()->Exec(
        "CREATE TRIGGER fail_at_50 BEFORE INSERT ON steps WHEN NEW.step = 50 BEGIN SELECT "
        "RAISE(ABORT, 'injected failure'); END");
  } else {
    Connect()->Exec(
        "CREATE FUNCTION fail_at_50() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.step = "
        "50 THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$; CREATE TRIGGER "
        "fail_at_50 BEFORE INSERT ON steps FOR EACH ROW EXECUTE FUNCTION fail_at_50()");
  }
  auto opened = Open();
  Store& store = *opened;
  store.Ingest(Steps("kept", 0, 10));
  EXPECT_THAT([&] { store.Ingest(Steps("new-run", 0, 100)); },
              ::testing::ThrowsMessage<StorageError>(HasSubstr("injected failure")));
  EXPECT_FALSE(store.runs().Get("new-run").has_value())
      << "the run created inside the failed batch must be rolled back";
  EXPECT_EQ(store.runs().List({}).runs.size(), 1u);

  // The next batch for the same run must not reuse the rolled-back run id.
  EXPECT_EQ(store.Ingest(Steps("new-run", 0, 50)).accepted, 50);
  auto run = store.runs().Get("new-run");
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->records, 50);
  EXPECT_EQ(store.runs().Steps("new-run", StepQuery{})->records.size(), 50u);
}

TEST_P(StoreTest, PagesThroughRanksWithAContinuation) {
  auto opened = Open();
  Store& store = *opened;
  std::vector<wire::StepRecord> records;
  for (int step = 0; step < 5; ++step) {
    for (int rank = 0; rank < 3; ++rank) records.push_back(MakeRecord("ddp", step, 1.0, rank, 3));
  }
  store.Ingest(records);
  std::vector<std::pair<std::int64_t, std::int64_t>> seen;
  StepQuery query;
  query.limit = 4;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = store.runs().Steps("ddp", query);
    for (const std::string& text : page->records) {
      auto json = nlohmann::json::parse(text);
      seen.emplace_back(json["step"], json["rank"]);
    }
    if (!page->next) break;
    query.from = page->next->from;
    query.from_rank = page->next->from_rank;
  }
  ASSERT_EQ(seen.size(), 15u);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    std::pair<std::int64_t, std::int64_t> expected(i / 3, i % 3);
    EXPECT_EQ(seen[i], expected);
  }
  query = StepQuery{};
  query.rank = 2;
  EXPECT_EQ(store.runs().Steps("ddp", query)->records.size(), 5u);
  EXPECT_FALSE(store.runs().Steps("missing", StepQuery{}).has_value());
}

TEST_P(StoreTest, RunSummaryAndAlerts) {
  StoreOptions manual_alerts;  // the alerts here are inserted by hand
  manual_alerts.analysis.enabled = false;
  auto opened = Open(manual_alerts);
  Store& store = *opened;
  auto first = MakeRecord("r", 7, 3.0);
  first.vocab_size = 32000;
  store.Ingest({first, MakeRecord("r", 9, 2.0, 1, 2), MakeRecord("r", 9, 2.5, 0, 2),
                MakeRecord("b", 1, 1.0)});
  auto runs = store.runs().List({}).runs;
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].name, "b");
  const RunSummary& r = runs[1];
  EXPECT_EQ(r.first_step, 7);
  EXPECT_EQ(r.latest["step"], 9);
  EXPECT_EQ(r.latest["rank"], 0) << "the latest record is the lowest rank at the highest step";
  EXPECT_EQ(r.latest["world_size"], 2);

  Alert alert = lossguard::testing::MakeAlert("r", analyzers::Kind::kLossScaleMismatch,
                                              analyzers::Severity::kCritical,
                                              "loss is 8.0x the token-normalised loss");
  alert.first_step = 7;
  alert.last_step = 9;
  alert.evidence = {{"factor", 8.0}, {"explained_by", "ga_steps"}};
  std::int64_t id = store.alerts().Insert(alert);
  alert.kind = analyzers::Kind::kConfigChange;
  alert.severity = analyzers::Severity::kInfo;
  alert.state = analyzers::AlertState::kResolved;
  store.alerts().Insert(alert);
  EXPECT_THROW(
      [&] {
        alert.run = "no-such-run";
        store.alerts().Insert(alert);
      }(),
      StorageError);

  EXPECT_EQ(store.runs().Get("r")->open_alerts[analyzers::Severity::kCritical], 1);
  EXPECT_EQ(store.runs().Get("r")->open_alerts[analyzers::Severity::kInfo], 0)
      << "resolved alerts are not open";
  EXPECT_EQ(store.alerts().List({}).size(), 2u);
  AlertFilter open;
  open.state = analyzers::AlertState::kOpen;
  auto open_alerts = store.alerts().List(open);
  ASSERT_EQ(open_alerts.size(), 1u);
  EXPECT_EQ(open_alerts[0].evidence["explained_by"], "ga_steps");
  AlertFilter by_kind;
  by_kind.kind = analyzers::Kind::kConfigChange;
  by_kind.run = "r";
  EXPECT_EQ(store.alerts().List(by_kind).size(), 1u);
  by_kind.run = "b";
  EXPECT_TRUE(store.alerts().List(by_kind).empty());

  auto acked = store.alerts().Ack(id);
  ASSERT_TRUE(acked.has_value());
  ASSERT_TRUE(acked->acked_at.has_value());
  auto again = store.alerts().Ack(id);
  EXPECT_EQ(*again->acked_at, *acked->acked_at) << "the first acknowledgement time is kept";
  EXPECT_FALSE(store.alerts().Ack(9999).has_value());
}

// Writers on several threads (the server's write pool) and readers on others (its HTTP threads) on
// one Store: every batch is all-or-nothing to every reader, and nothing is lost. Run under
// ThreadSanitizer in CI (scripts/sanitize.sh).
TEST_P(StoreTest, ConcurrentWritersAndReadersSeeWholeBatchesOnly) {
  auto opened = Open({.durability = Durability::kNormal});
  Store& store = *opened;
  constexpr int kWriters = 2, kReaders = 2, kBatches = 40, kBatchSize = 25;
  std::atomic<int> writers_done{0};
  std::atomic<int> torn{0}, reads{0};
  // The writers start once every reader has read once: on a busy machine they could otherwise
  // finish their 80 small batches before a reader is scheduled, and nothing would overlap.
  std::latch readers_reading(kReaders);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      readers_reading.wait();
      const std::string run = "writer-" + std::to_string(w);
      for (int b = 0; b < kBatches; ++b) store.Ingest(Steps(run, b * kBatchSize, kBatchSize));
      ++writers_done;
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&] {
      // Bounded: at most 100,000 reads, and never past the writers' end.
      for (int i = 0; i < 100'000 && writers_done < kWriters; ++i) {
        for (const RunSummary& run : store.runs().List({}).runs) {
          if (run.records % kBatchSize != 0) ++torn;
        }
        if (auto series = store.runs().Downsampled("writer-0", 0, INT64_MAX, 0, 50)) {
          std::int64_t counted = 0;
          for (const auto& rank : series->ranks) {
            for (const BlockStats& bucket : rank.buckets) counted += bucket.n;
          }
          if (counted % kBatchSize != 0) ++torn;
        }
        store.alerts().List({});
        ++reads;
        if (i == 0) readers_reading.count_down();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(torn, 0) << "a reader saw part of a batch";
  EXPECT_GT(reads, 0);
  for (int w = 0; w < kWriters; ++w) {
    EXPECT_EQ(store.runs().Get("writer-" + std::to_string(w))->records, kBatches * kBatchSize);
  }
}

TEST(SqliteStore, ReopenAfterUncleanExitKeepsCommittedBatches) {
  TempDir dir;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // No destructors, no checkpoint: the WAL is left as a crash would leave it.
    Store* store = new Store(dir.File("db"));
    store->Ingest(Steps("crash", 0, 500));
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(std::filesystem::exists(dir.File("db-wal")));
  Store store(dir.File("db"));
  EXPECT_EQ(store.runs().Get("crash")->records, 500);
  EXPECT_EQ(store.runs().Steps("crash", StepQuery{})->records.size(), 500u);
  EXPECT_EQ(store.Ingest(Steps("crash", 0, 500)).duplicates, 500);
}

TEST_P(StoreTest, RefusesADatabaseThatIsNotALossguardOne) {
  Connect()->Exec("CREATE TABLE customers (id INTEGER)");
  EXPECT_THAT([&] { Open(); },
              ::testing::ThrowsMessage<StorageError>(HasSubstr("is not a lossguard database")));
  EXPECT_EQ(Connect()->AnyTable(), "customers") << "and it is left as it was";
}

TEST(SqliteStore, RefusesAFileThatIsNotALossguardDatabase) {
  TempDir dir;
  {
    SqliteDatabase other(dir.File("other.db"), false, true);
    other.Exec("CREATE TABLE customers (id INTEGER)");
  }
  EXPECT_THAT([&] { Store store(dir.File("other.db")); },
              ::testing::ThrowsMessage<StorageError>(HasSubstr("is not a lossguard database")));
  {
    std::ofstream garbage(dir.File("garbage.db"));
    garbage << std::string(8192, 'x');
  }
  EXPECT_THROW(Store(dir.File("garbage.db")), SqliteError);
  EXPECT_THAT([&] { Store store(dir.File("no/such/dir/db")); },
              ::testing::ThrowsMessage<SqliteError>(HasSubstr("no/such/dir/db")));
}

INSTANTIATE_TEST_SUITE_P(Engines, StoreTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

}  // namespace store_test
}  // namespace lossguard::store
