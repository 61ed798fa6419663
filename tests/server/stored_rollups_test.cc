// Rollups: the stored blocks of every level against what they summarise, which coarser blocks are
// stored (the complete ones), and the upgrades of databases that earlier versions wrote.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "server/rollup_expectations.h"
#include "server/store_fixtures.h"
#include "store/migrations.h"
#include "store/rollup_rows.h"
#include "store/store.h"
#include "support/records.h"

namespace lossguard::store {
namespace {

using lossguard::testing::MakeRecord;

class StoredRollupsTest : public lossguard::testing::EngineTest {};

// Rollups written before the learning rate was kept in them (schema v8) get it from their steps
// when the database is upgraded: every level answers as the brute force does.
TEST_P(StoredRollupsTest, RollupsOfAVersion8DatabaseGetTheLearningRateFromTheirSteps) {
  std::mt19937_64 rng(8);
  std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>> truth;  // rank -> step -> record
  {
    auto store = Open();
    for (std::int64_t step = 0; step < 9000; step += 100) {
      std::vector<wire::StepRecord> batch;
      for (std::int64_t s = step; s < step + 100; ++s) {
        for (std::int64_t rank : {0, 1}) {
          auto r = MakeRecord("old-lr", s, 3.0, rank, 2);
          r.lr = RandomLearningRate(rng);
          batch.push_back(r);
          truth[rank][s] = r;
        }
      }
      store->Ingest(batch);
    }
  }
  {
    auto db = Connect();
    Statement levels(*db, "SELECT COUNT(DISTINCT width) FROM step_rollups");
    ASSERT_TRUE(levels.Step());
    ASSERT_GE(levels.Int(0), 3) << "blocks of 16, 256 and 4096 steps are rolled up";
    levels.Reset();
    // The schema as version 8 left it: no learning rate in the rollups.
    db->Exec(
        "ALTER TABLE step_rollups DROP COLUMN lr_min; ALTER TABLE step_rollups DROP COLUMN lr_max; "
        "ALTER TABLE step_rollups DROP COLUMN lr_nan; DELETE FROM schema_version WHERE version >= "
        "9; DELETE FROM schema_compatibility WHERE version >= 9");
  }
  auto store = Open();
  EXPECT_EQ(store->SchemaVersion(), BuiltinMigrations(GetParam()).back().version);
  for (const auto& [from, to, max_buckets] :
       std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>>{
           {0, INT64_MAX, 2}, {0, INT64_MAX, 30}, {100, 8000, 500}, {0, 8999, 9000}}) {
    const std::string what = "from=" + std::to_string(from) + " to=" + std::to_string(to) +
                             " buckets=" + std::to_string(max_buckets);
    ExpectAnswersAsBruteForce(*store, "old-lr", truth, from, to, std::nullopt, max_buckets, what);
  }
}

// What the table holds, whatever path wrote it: every block of a coarser level is exactly its
// stored children merged, and every level-1 block that is not pending is exactly its steps. Checked
// after batches as trainers send them (in order, one rank lagging) and after resumed runs re-send
// steps whose blocks are rolled up already.
TEST_P(StoredRollupsTest, EveryStoredBlockIsWhatItSummarisesAfterEveryKindOfBatch) {
  auto opened = Open(StoreOptions{Durability::kNormal, 2});
  Store& store = *opened;
  std::unique_ptr<Database> peek = Connect();
  std::mt19937_64 rng(2718);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  constexpr std::int64_t kRanks = 4, kSteps = 6000, kLag = 9;
  std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>> truth;  // rank -> step -> record
  auto record = [&](std::int64_t step, std::int64_t rank) {
    auto r = MakeRecord("blocks", step, 3.0 + unit(rng), rank, kRanks);
    if (unit(rng) < 0.003) r.loss = kNaN;
    if (unit(rng) < 0.6) r.grad_norm = unit(rng) < 0.003 ? kInf : unit(rng) * 5;
    r.tokens = static_cast<std::int64_t>(unit(rng) * 4096);
    r.lr = RandomLearningRate(rng);
    // Stretches with and without a reference loss: blocks whose minimum is NULL beside others.
    if ((step / 40) % 2 == 0) r.ref_loss = 3.0 + unit(rng);
    return r;
  };
  std::set<std::int64_t> widths_seen;
  auto check = [&](const std::string& when) {
    using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t>;  // rank, level, bucket
    std::map<Key, BlockStats> stored;
    Statement rows(
        *peek, std::string("SELECT ") + kRollupColumns + ", rank, width, bucket FROM step_rollups");
    while (rows.Step()) {
      const auto width = rows.Int(kRollupColumnCount + 1);
      const auto level =
          std::find(kRollupWidths.begin(), kRollupWidths.end(), width) - kRollupWidths.begin();
      ASSERT_LT(level, kLevels) << when << ": a block of width " << width;
      stored[{rows.Int(kRollupColumnCount), level, rows.Int(kRollupColumnCount + 2)}] =
          RollupRowToBlock(rows);
      widths_seen.insert(width);
    }
    std::set<std::int64_t> pending;
    Statement marks(*peek, "SELECT bucket FROM rollup_pending");
    while (marks.Step()) pending.insert(marks.Int(0));
    std::map<Key, BlockStats> expected;
    for (const auto& [rank, steps] : truth) {
      for (const auto& [step, r] : steps) {
        const std::int64_t bucket = step / kRollupWidths[1];
        if (!pending.contains(bucket)) {
          expected[{rank, 1, bucket}].Merge(OneStep(r));
        }
      }
    }
    // Each coarser level from the stored level below: every complete block with a child exists,
    // and holds exactly its children merged; no block still filling is stored.
    std::int64_t newest = 0;
    for (const auto& [rank, steps] : truth) newest = std::max(newest, steps.rbegin()->first);
    const std::int64_t settled = SettledBuckets(newest);
    for (int level = 2; level < kLevels; ++level) {
      std::map<Key, BlockStats> merged;
      for (const auto& [key, block] : stored) {
        const auto [rank, child_level, bucket] = key;
        if (child_level == level - 1) merged[{rank, level, bucket / kFanOut}].Merge(block);
      }
      for (const auto& [key, block] : merged) {
        const auto [rank, at, bucket] = key;
        const std::string what = when + ": rank " + std::to_string(rank) + " level " +
                                 std::to_string(level) + " bucket " + std::to_string(bucket);
        auto it = stored.find(key);
        if (bucket >= CompleteBlocksBelow(level, settled)) {
          EXPECT_EQ(it, stored.end()) << what << " is stored before it is complete";
          continue;
        }
        ASSERT_NE(it, stored.end()) << what << " (missing)";
        ExpectBlock(it->second, block, what + " against its children");
      }
      for (const auto& [key, block] : stored) {
        if (std::get<1>(key) == level) {
          EXPECT_TRUE(merged.contains(key)) << when << ": a block without children";
        }
      }
    }
    for (const auto& [key, block] : expected) {
      const auto [rank, level, bucket] = key;
      const std::string what = when + ": rank " + std::to_string(rank) + " level-1 bucket " +
                               std::to_string(bucket) + " against its steps";
      auto it = stored.find(key);
      ASSERT_NE(it, stored.end()) << what << " (missing)";
      ExpectBlock(it->second, block, what);
    }
    for (const auto& [key, block] : stored) {
      if (std::get<1>(key) == 1 && !pending.contains(std::get<2>(key))) {
        EXPECT_TRUE(expected.contains(key)) << when << ": a level-1 block without steps";
      }
    }
  };
  std::int64_t next = 0, batches = 0;
  while (next < kSteps + kLag) {
    // Mostly a few steps at a time, as a trainer reports; sometimes a backlog of hundreds.
    const std::int64_t count =
        1 + static_cast<std::int64_t>(rng() % 3 == 0 ? rng() % 700 : rng() % 24);
    std::vector<wire::StepRecord> batch;
    for (std::int64_t step = next; step < next + count; ++step) {
      for (std::int64_t rank = 0; rank < kRanks; ++rank) {
        const std::int64_t s = rank == kRanks - 1 ? step - kLag : step;
        if (s >= 0 && s < kSteps) batch.push_back(record(s, rank));
      }
    }
    next += count;
    if (++batches % 4 == 0) {
      // Resumed from a checkpoint: the last few hundred steps again, with other values.
      const std::int64_t back = std::min<std::int64_t>(next, 1 + rng() % 400);
      for (std::int64_t s = next - back; s < next && s < kSteps; ++s) {
        batch.push_back(record(s, static_cast<std::int64_t>(rng() % (kRanks - 1))));
      }
    }
    store.Ingest(batch);
    for (const auto& r : batch) truth[r.rank][r.step] = r;
    check("after batch " + std::to_string(batches));
    if (::testing::Test::HasFailure()) return;
  }
  // 6,000 steps complete blocks of 4,096 but none of 65,536 (the test below has one).
  EXPECT_EQ(widths_seen, (std::set<std::int64_t>{16, 256, 4096}));
}

// A coarser block is stored the moment its last level-1 block settles, not before, up to the
// coarsest level; a query reads the level below until then and answers the same either way.
TEST_P(StoredRollupsTest, ACoarserBlockIsStoredOnceItsLastChildSettles) {
  auto store = Open();
  std::unique_ptr<Database> peek = Connect();
  std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>> truth;  // rank 0 only
  // The first step at which the level-4 block 0 (65,536 steps) is complete: SettledBuckets 4,096.
  constexpr std::int64_t kCompletingStep = (kRollupWidths[4] / kRollupWidths[1] + 1) * 16;
  auto ingest = [&](std::int64_t from, std::int64_t to) {
    std::vector<wire::StepRecord> batch;
    for (std::int64_t step = from; step < to; ++step) {
      auto r = MakeRecord("long", step, 3.0 + static_cast<double>(step % 97) / 97);
      if (step == 40'000) r.loss = 1e6;  // a spike deep inside the block
      truth[0][step] = r;
      batch.push_back(r);
      if (batch.size() == 4096 || step + 1 == to) {
        store->Ingest(batch);
        batch.clear();
      }
    }
  };
  auto coarsest = [&] {
    Statement rows(*peek,
                   std::string("SELECT ") + kRollupColumns +
                       " FROM step_rollups WHERE width = " + std::to_string(kRollupWidths[4]));
    std::vector<BlockStats> out;
    while (rows.Step()) out.push_back(RollupRowToBlock(rows));
    return out;
  };
  auto answers_as_brute_force = [&](const std::string& when) {
    for (std::int64_t buckets : {2, 3, 40}) {
      ExpectAnswersAsBruteForce(*store, "long", truth, 0, INT64_MAX, 0, buckets,
                                when + ", " + std::to_string(buckets) + " buckets");
    }
  };
  ingest(0, kCompletingStep);
  EXPECT_TRUE(coarsest().empty()) << "stored while step " << kCompletingStep - 1 << " is newest";
  answers_as_brute_force("before the block is complete");
  ingest(kCompletingStep, kCompletingStep + 1);
  const std::vector<BlockStats> stored = coarsest();
  ASSERT_EQ(stored.size(), 1u);
  ExpectBlock(stored[0], Expected(truth[0], 0, kRollupWidths[4] - 1, kRollupWidths[4]).at(0),
              "the level-4 block against its steps");
  answers_as_brute_force("after");
}

// A rank's level-1 rows are written a group of kDueGroup blocks at a time (one page written for
// them, not one per block); until their group is due the blocks are pending, and queries read them
// from their steps.
TEST_P(StoredRollupsTest, LevelOneBlocksAreWrittenAGroupAtATime) {
  auto store = Open();
  std::unique_ptr<Database> peek = Connect();
  std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>> truth;  // rank -> step -> record
  auto level_one = [&] {                                                   // rank -> stored buckets
    Statement rows(*peek, "SELECT rank, bucket FROM step_rollups WHERE width = " +
                              std::to_string(kRollupWidths[1]) + " ORDER BY rank, bucket");
    std::map<std::int64_t, std::vector<std::int64_t>> out;
    while (rows.Step()) out[rows.Int(0)].push_back(rows.Int(1));
    return out;
  };
  // The first step whose DueBuckets is a whole group: until then nothing is due.
  const std::int64_t group_due_at = kRollupWidths[1] * (kDueGroup + 1);
  ASSERT_EQ(DueBuckets(group_due_at - 1), 0);
  ASSERT_EQ(DueBuckets(group_due_at), kDueGroup);
  for (std::int64_t step = 0; step <= group_due_at; ++step) {
    std::vector<wire::StepRecord> batch;  // one step of 3 ranks a batch, as a job's ranks report
    for (std::int64_t rank = 0; rank < 3; ++rank) {
      auto r =
          MakeRecord("grouped", step, 3.0 + static_cast<double>((step * 7 + rank) % 11), rank, 3);
      truth[rank][step] = r;
      batch.push_back(r);
    }
    store->Ingest(batch);
    if (step < group_due_at) {
      ASSERT_TRUE(level_one().empty()) << "written at step " << step;
    }
    if (step == group_due_at - 1 || step == 2 * kRollupWidths[1]) {
      ExpectAnswersAsBruteForce(*store, "grouped", truth, 0, INT64_MAX, std::nullopt, 7,
                                "pending at step " + std::to_string(step));
    }
  }
  std::vector<std::int64_t> group(static_cast<std::size_t>(kDueGroup));
  for (std::size_t i = 0; i < group.size(); ++i) group[i] = static_cast<std::int64_t>(i);
  EXPECT_EQ(level_one(), (std::map<std::int64_t, std::vector<std::int64_t>>{
                             {0, group}, {1, group}, {2, group}}));
  for (std::int64_t buckets : {2, 7, 100}) {
    ExpectAnswersAsBruteForce(*store, "grouped", truth, 0, INT64_MAX, std::nullopt, buckets,
                              "after, " + std::to_string(buckets) + " buckets");
  }
}

// A run that stopped has its last blocks refreshed once they are stale: nothing is pending any
// more, but the coarser block they fill is not complete, so a query reads it from the level below.
TEST_P(StoredRollupsTest, AStoppedRunsLastBlocksAreReadFromTheLevelBelowOnceRefreshed) {
  auto store = Open();
  std::unique_ptr<Database> peek = Connect();
  std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>> truth;  // rank 0 only
  std::vector<wire::StepRecord> batch;
  // Steps 0..511: SettledBuckets 30, so the level-2 block 1 (level-1 blocks 16..31) never
  // completes.
  for (std::int64_t step = 0; step < 512; ++step) {
    truth[0][step] = MakeRecord("stopped", step, 3.0 + static_cast<double>(step % 7));
    batch.push_back(truth[0][step]);
  }
  store->Ingest(batch);
  auto pending_marks = [&] {
    Statement count(*peek, "SELECT COUNT(*) FROM rollup_pending");
    count.Step();
    return count.Int(0);
  };
  ASSERT_GT(pending_marks(), 0);
  // As if the marks were older than the stale limit: another run's batch refreshes them.
  peek->Exec("UPDATE rollup_pending SET since = 0");
  store->Ingest({MakeRecord("other", 0)});
  ASSERT_EQ(pending_marks(), 1) << "only the other run's block is left pending";
  Statement level_two(*peek, "SELECT bucket FROM step_rollups WHERE width = 256");
  std::vector<std::int64_t> stored;
  while (level_two.Step()) stored.push_back(level_two.Int(0));
  EXPECT_EQ(stored, std::vector<std::int64_t>{0}) << "the level-2 block 1 is not complete";
  for (std::int64_t buckets : {2, 3, 33}) {
    ExpectAnswersAsBruteForce(*store, "stopped", truth, 0, INT64_MAX, 0, buckets,
                              std::to_string(buckets) + " buckets");
  }
}

// A database that servers of schema v9 wrote holds coarser blocks still filling (they merged every
// level-1 block into its ancestors at once): the upgrade deletes those, keeps the complete ones,
// and the answers stay exact.
TEST_P(StoredRollupsTest, AnUpgradeKeepsOnlyTheCompleteCoarserBlocks) {
  std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>> truth;  // rank -> step -> record
  // SettledBuckets 311: level-2 blocks 0..18 and level-3 block 0 complete.
  constexpr std::int64_t kSteps = 5000;
  {
    auto store = Open();
    std::vector<wire::StepRecord> batch;
    for (std::int64_t step = 0; step < kSteps; ++step) {
      for (std::int64_t rank : {0, 1}) {
        auto r = MakeRecord("upgraded", step, 3.0 + static_cast<double>((step * 7 + rank) % 13),
                            rank, 2);
        truth[rank][step] = r;
        batch.push_back(r);
      }
    }
    store->Ingest(batch);
  }
  const auto coarser_rows = [&](Database& db) {
    std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t>> out;  // width, rank, bucket
    Statement rows(db, "SELECT width, rank, bucket FROM step_rollups WHERE width > 16");
    while (rows.Step()) out.insert({rows.Int(0), rows.Int(1), rows.Int(2)});
    return out;
  };
  std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t>> complete;
  {
    auto db = Connect();
    complete = coarser_rows(*db);
    ASSERT_EQ(complete.size(), 2u * (19 + 1)) << "level-2 blocks 0..18, level-3 block 0";
    // What a v9 server left besides: a block still filling at each coarser level.
    for (const auto& [width, bucket] : {std::pair{256, 19}, {4096, 1}, {65536, 0}}) {
      db->Exec(std::string("INSERT INTO step_rollups (run_id, rank, width, bucket, ") +
               kRollupColumns + ") SELECT run_id, rank, " + std::to_string(width) + ", " +
               std::to_string(bucket) + ", " + kRollupColumns +
               " FROM step_rollups WHERE width = 256 AND bucket = 0");
    }
    db->Exec("DELETE FROM schema_version WHERE version = 10");
    db->Exec("DELETE FROM schema_compatibility WHERE version = 10");
    ASSERT_EQ(coarser_rows(*db).size(), complete.size() + 6);
  }
  auto store = Open();
  EXPECT_EQ(store->SchemaVersion(), BuiltinMigrations(GetParam()).back().version);
  {
    auto db = Connect();
    EXPECT_EQ(coarser_rows(*db), complete);
  }
  for (std::int64_t buckets : {2, 20, 400}) {
    ExpectAnswersAsBruteForce(*store, "upgraded", truth, 0, INT64_MAX, std::nullopt, buckets,
                              std::to_string(buckets) + " buckets");
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, StoredRollupsTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

}  // namespace
}  // namespace lossguard::store
