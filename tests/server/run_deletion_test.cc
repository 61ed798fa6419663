// Deleting runs in the store, on each engine: gone from every query at once, the name free for a
// new run at once (also for a second store on the database that had the old run cached), the rows
// purged chunk by chunk, and runs past retention found.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/store_fixtures.h"
#include "store/database.h"
#include "store/store.h"
#include "support/records.h"

namespace lossguard::store {
namespace run_deletion_test {

using lossguard::testing::MakeRecord;

std::vector<wire::StepRecord> Steps(const std::string& run, std::int64_t first, std::int64_t count,
                                    std::int64_t world_size = 1) {
  return lossguard::testing::MakeSteps(run, first, count, 2.0, 0.001, world_size);
}

std::int64_t Count(Database& db, const std::string& sql) {
  Statement count(db, sql);
  if (!count.Step()) throw std::runtime_error("no row from " + sql);
  return count.Int(0);
}

class RunDeletionTest : public lossguard::testing::EngineTest {};

TEST_P(RunDeletionTest, ADeletedRunIsGoneAtOnceAndItsNameStartsAfresh) {
  auto store = Open();
  // A GA bug (loss 8x ref_loss) so that the run has an alert to delete with it.
  std::vector<wire::StepRecord> buggy = Steps("doomed", 0, 60);
  for (wire::StepRecord& r : buggy) r.ref_loss = r.loss / 8;
  store->Ingest(buggy);
  store->Ingest(Steps("kept", 0, 10));
  ASSERT_FALSE(store->alerts().List({}).empty()) << "the GA bug opens an alert";

  EXPECT_EQ(store->deletion().Delete("doomed"), 60);
  EXPECT_FALSE(store->runs().Get("doomed").has_value());
  EXPECT_FALSE(store->runs().Steps("doomed", {}).has_value());
  std::vector<std::string> names;
  for (const RunSummary& run : store->runs().List({}).runs) names.push_back(run.name);
  EXPECT_THAT(names, ::testing::ElementsAre("kept"));
  EXPECT_EQ(store->runs().Active(0, 100).runs.size(), 1u);
  AlertFilter doomed;
  doomed.run = "doomed";
  EXPECT_TRUE(store->alerts().List(doomed).empty());
  EXPECT_TRUE(store->alerts().List({}).empty()) << "the alerts went with the run";
  EXPECT_FALSE(store->deletion().Delete("doomed").has_value()) << "nothing left to delete";
  EXPECT_FALSE(store->deletion().Delete("never-was").has_value());

  // The trainer sends again under the same name: a new run with only the new records, judged
  // afresh (its records replace nothing of the old run).
  const IngestResult again = store->Ingest(Steps("doomed", 0, 5));
  EXPECT_EQ(again.duplicates + again.replaced, 0);
  ASSERT_TRUE(store->runs().Get("doomed").has_value());
  EXPECT_EQ(store->runs().Get("doomed")->records, 5);
  EXPECT_EQ(store->runs().Get("doomed")->first_step, 0);
}

TEST_P(RunDeletionTest, PurgingGoesInBoundedChunksUntilNothingIsLeft) {
  auto store = Open();
  store->Ingest(Steps("big", 0, 500, /*world_size=*/4));  // 2000 records, rollups of 4 ranks
  store->Ingest(Steps("small", 0, 3));
  auto db = Connect();
  const std::int64_t rollups = Count(*db, "SELECT COUNT(*) FROM step_rollups");
  ASSERT_GT(rollups, 0);
  ASSERT_TRUE(store->deletion().Delete("big").has_value());
  EXPECT_EQ(Count(*db, "SELECT COUNT(*) FROM steps"), 2003) << "purged later, not in the delete";

  std::int64_t calls = 0, removed = 0;
  while (std::int64_t chunk = store->deletion().PurgeDeleted(300)) {
    // A chunk ends at a whole step: up to 300 rows plus the rest of the last step's ranks.
    EXPECT_LE(chunk, 300 + 4) << "call " << calls;
    removed += chunk;
    ASSERT_LT(++calls, 100) << "the purge does not end";
  }
  EXPECT_GE(calls, 2000 / 300) << "many small transactions, not one large one";
  EXPECT_EQ(Count(*db, "SELECT COUNT(*) FROM steps"), 3) << "only the other run's";
  EXPECT_EQ(Count(*db, "SELECT COUNT(*) FROM runs"), 1) << "the deleted run's row went last";
  EXPECT_EQ(removed, 2000 + rollups - Count(*db, "SELECT COUNT(*) FROM step_rollups") + 1);
  EXPECT_EQ(store->deletion().PurgeDeleted(300), 0);
  EXPECT_EQ(store->runs().Get("small")->records, 3);
}

TEST_P(RunDeletionTest, AnotherStoreThatCachedTheDeletedRunWritesToTheNewOne) {
  // Two stores on one database: two servers on PostgreSQL, or two processes on one SQLite file.
  auto one = Open();
  auto other = Open();
  one->Ingest(Steps("shared", 0, 10));
  other->Ingest(Steps("shared", 10, 10));  // `other` now knows the run's id
  ASSERT_EQ(one->runs().Get("shared")->records, 20);
  ASSERT_TRUE(one->deletion().Delete("shared").has_value());
  other->Ingest(Steps("shared", 20, 7));
  ASSERT_TRUE(one->runs().Get("shared").has_value());
  EXPECT_EQ(one->runs().Get("shared")->records, 7) << "not written into the deleted run";
  EXPECT_EQ(one->runs().Get("shared")->first_step, 20);
  while (one->deletion().PurgeDeleted(1000) > 0) {
  }
  EXPECT_EQ(other->runs().Get("shared")->records, 7) << "the purge left the new run alone";
}

TEST_P(RunDeletionTest, RunsPastRetentionAreFoundLeastRecentFirst) {
  auto store = Open();
  store->Ingest(Steps("first", 0, 3));
  store->Ingest(Steps("second", 0, 3));
  const double after_both = 1e12;
  EXPECT_THAT(store->deletion().InactiveSince(after_both, 10),
              ::testing::ElementsAre("first", "second"));
  EXPECT_THAT(store->deletion().InactiveSince(after_both, 1), ::testing::ElementsAre("first"));
  EXPECT_TRUE(store->deletion().InactiveSince(0, 10).empty());
  store->deletion().Delete("first");
  EXPECT_THAT(store->deletion().InactiveSince(after_both, 10), ::testing::ElementsAre("second"))
      << "a deleted run is not deleted again";
}

TEST(SqliteRunDeletion, ANewDatabaseGivesThePagesOfPurgedRunsBack) {
  lossguard::testing::TempDir dir;
  const auto path = dir.File("db");
  std::uintmax_t full = 0;
  {
    Store store(path);
    for (int i = 0; i < 10; ++i) store.Ingest(Steps("big", i * 1000, 1000));
  }
  {
    Store store(path);
    full = std::filesystem::file_size(path);
    ASSERT_TRUE(store.deletion().Delete("big").has_value());
    while (store.deletion().PurgeDeleted(5000) > 0) {
    }
  }
  const std::uintmax_t after = std::filesystem::file_size(path);
  EXPECT_LT(after, full / 4) << "full " << full << " bytes, after the purge " << after;
}

INSTANTIATE_TEST_SUITE_P(Engines, RunDeletionTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

}  // namespace run_deletion_test
}  // namespace lossguard::store
