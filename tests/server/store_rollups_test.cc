// Rollups: the downsampled answers against brute force on each engine, and the stored blocks of
// every level against what they summarise, while blocks are pending and after.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "server/store_fixtures.h"
#include "store/migrations.h"
#include "store/rollup.h"
#include "store/rollup_rows.h"
#include "store/store.h"
#include "support/records.h"

namespace lossguard::store {
namespace {

using lossguard::testing::MakeRecord;

class StoreRollupTest : public lossguard::testing::EngineTest {};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A learning rate as trainers send it: mostly a schedule's value, sometimes absent, rarely a
// blow-up to a huge, infinite or NaN value.
std::optional<double> RandomLearningRate(std::mt19937_64& rng) {
  const double roll = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (roll < 0.2) return std::nullopt;
  if (roll < 0.201) return kNaN;
  if (roll < 0.202) return kInf;
  if (roll < 0.204) return 10.0;
  return 1e-4 * (1.0 + roll);
}

// Brute force: what one step contributes to its bucket, from the record itself.
BlockStats OneStep(const wire::StepRecord& r) {
  BlockStats one;
  one.first_step = one.last_step = r.step;
  one.n = 1;
  one.loss.Add(r.loss);
  one.ref_loss.Add(r.ref_loss);
  one.grad_norm.Add(r.grad_norm);
  if (r.tokens) one.tokens.Add(static_cast<double>(*r.tokens));
  one.lr.Add(r.lr);
  return one;
}

// Brute force: what every output bucket must hold, from the records themselves.
std::map<std::int64_t, BlockStats> Expected(const std::map<std::int64_t, wire::StepRecord>& steps,
                                            std::int64_t from, std::int64_t to,
                                            std::int64_t width) {
  std::map<std::int64_t, BlockStats> out;
  for (auto it = steps.lower_bound(from); it != steps.end() && it->first <= to; ++it) {
    out[it->first / width].Merge(OneStep(it->second));
  }
  return out;
}

void ExpectSame(const SeriesStats& actual, const SeriesStats& expected, const std::string& what) {
  EXPECT_EQ(actual.min, expected.min) << what;
  EXPECT_EQ(actual.max, expected.max) << what;
  EXPECT_EQ(actual.nan, expected.nan) << what;
}

void ExpectBlock(const BlockStats& actual, const BlockStats& want, const std::string& what) {
  EXPECT_EQ(actual.first_step, want.first_step) << what;
  EXPECT_EQ(actual.last_step, want.last_step) << what;
  EXPECT_EQ(actual.n, want.n) << what;
  ExpectSame(actual.loss, want.loss, what + " loss");
  ExpectSame(actual.ref_loss, want.ref_loss, what + " ref_loss");
  ExpectSame(actual.grad_norm, want.grad_norm, what + " grad_norm");
  ExpectSame(actual.tokens, want.tokens, what + " tokens");
  ExpectSame(actual.lr, want.lr, what + " lr");
}

// The buckets a query returned against the brute-force expectation, bucket by bucket.
void ExpectBuckets(const std::vector<BlockStats>& buckets,
                   const std::map<std::int64_t, BlockStats>& expected, const std::string& what) {
  ASSERT_EQ(buckets.size(), expected.size()) << what;
  auto it = expected.begin();
  for (const BlockStats& bucket : buckets) ExpectBlock(bucket, (it++)->second, what);
}

TEST_P(StoreRollupTest, DownsamplingMatchesBruteForceIncludingSpikesNansAndReplacements) {
  auto opened = Open(StoreOptions{Durability::kNormal, 2});
  Store& store = *opened;
  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::map<std::int64_t, wire::StepRecord> truth;
  auto random_record = [&](std::int64_t step) {
    auto r = MakeRecord("big", step, 3.0 + unit(rng));
    double roll = unit(rng);
    if (roll < 0.001) r.loss = kNaN;
    if (roll > 0.999) r.loss = 1e6;  // a spike
    if (unit(rng) < 0.7) r.grad_norm = unit(rng) < 0.002 ? kInf : unit(rng) * 5;
    if (unit(rng) < 0.5) r.ref_loss = 3.0;
    r.tokens = static_cast<std::int64_t>(unit(rng) * 4096);
    r.lr = RandomLearningRate(rng);
    return r;
  };
  // 140,000 steps with gaps, sent in shuffled batches of varied size, then a tenth replaced.
  std::vector<wire::StepRecord> records;
  for (std::int64_t step = 0; step < 140'000; ++step) {
    if (step % 977 < 3) continue;
    records.push_back(random_record(step));
  }
  std::shuffle(records.begin(), records.end(), rng);
  for (std::size_t i = 0; i < records.size();) {
    std::size_t n = std::min<std::size_t>(records.size() - i, 1 + rng() % 5000);
    std::vector<wire::StepRecord> batch(records.begin() + i, records.begin() + i + n);
    store.Ingest(batch);
    for (const auto& r : batch) truth[r.step] = r;
    i += n;
  }
  std::vector<wire::StepRecord> replacements;
  for (const auto& [step, r] : truth) {
    if (unit(rng) < 0.1) replacements.push_back(random_record(step));
  }
  replacements.push_back(MakeRecord("big", 70'001, -1e9));  // replace into a low, new extreme
  store.Ingest(replacements);
  for (const auto& r : replacements) truth[r.step] = r;

  struct Query {
    std::int64_t from, to, max_buckets;
  };
  std::vector<Query> queries = {{0, INT64_MAX, 1000},   {0, 139'999, 50},    {12'345, 98'765, 700},
                                {70'000, 70'010, 1000}, {65'530, 65'545, 4}, {1'000, 200'000, 31}};
  for (int i = 0; i < 20; ++i) {
    std::int64_t a = rng() % 140'000, b = rng() % 140'000;
    queries.push_back(
        {std::min(a, b), std::max(a, b), 2 + static_cast<std::int64_t>(rng() % 3000)});
  }
  for (const Query& q : queries) {
    std::string what = "from=" + std::to_string(q.from) + " to=" + std::to_string(q.to) +
                       " buckets=" + std::to_string(q.max_buckets);
    auto series = store.runs().Downsampled("big", q.from, q.to, 0, q.max_buckets);
    ASSERT_TRUE(series.has_value());
    ASSERT_EQ(series->ranks.size(), 1u) << what;
    const auto& buckets = series->ranks[0].buckets;
    EXPECT_LE(static_cast<std::int64_t>(buckets.size()), q.max_buckets) << what;
    ExpectBuckets(buckets, Expected(truth, q.from, q.to, series->bucket_width), what);
  }
}

// Rollups are written a step block behind the steps (migration 003): answers must be complete and
// exact while blocks are pending, for one rank and for all, with lagging ranks and replacements.
TEST_P(StoreRollupTest, DownsamplingOfManyRanksIsExactWhileRollupsArePendingAndAfter) {
  auto opened = Open(StoreOptions{Durability::kNormal, 2});
  Store& store = *opened;
  std::unique_ptr<Database> peek = Connect();
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  constexpr std::int64_t kRanks = 8, kSteps = 2000;
  std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>> truth;  // rank -> step -> record
  auto record = [&](std::int64_t step, std::int64_t rank) {
    auto r = MakeRecord("wide", step, 3.0 + unit(rng), rank, kRanks);
    if (unit(rng) < 0.002) r.loss = kNaN;
    if (unit(rng) < 0.002) r.loss = 1e6;
    if (unit(rng) < 0.6) r.grad_norm = unit(rng) * 5;
    r.tokens = static_cast<std::int64_t>(unit(rng) * 4096);
    r.lr = RandomLearningRate(rng);
    return r;
  };
  auto check = [&](const std::string& when) {
    std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>> queries = {
        {0, INT64_MAX, 1000}, {0, INT64_MAX, 40}, {1000, 1999, 7}};
    for (int i = 0; i < 6; ++i) {
      std::int64_t a = rng() % kSteps, b = rng() % kSteps;
      queries.emplace_back(std::min(a, b), std::max(a, b), 2 + rng() % 600);
    }
    for (const auto& [from, to, max_buckets] : queries) {
      for (std::optional<std::int64_t> only :
           {std::optional<std::int64_t>{}, std::optional<std::int64_t>{5}}) {
        std::string what = when + " from=" + std::to_string(from) + " to=" + std::to_string(to) +
                           " buckets=" + std::to_string(max_buckets) +
                           (only ? " rank=5" : " all ranks");
        auto series = store.runs().Downsampled("wide", from, to, only, max_buckets);
        ASSERT_TRUE(series.has_value());
        std::size_t nonempty = 0;
        for (const auto& [rank, steps] : truth) {
          if (only && rank != *only) continue;
          if (!Expected(steps, from, to, series->bucket_width).empty()) ++nonempty;
        }
        ASSERT_EQ(series->ranks.size(), nonempty) << what;
        for (const auto& rank : series->ranks) {
          ExpectBuckets(rank.buckets, Expected(truth[rank.rank], from, to, series->bucket_width),
                        what + " rank " + std::to_string(rank.rank));
        }
      }
    }
  };
  auto pending = [&] {
    Statement count(*peek, "SELECT COUNT(*) FROM rollup_pending");
    count.Step();
    return count.Int(0);
  };
  // One step of every rank per batch, as a job reports; rank 3 lags 40 steps behind the others.
  std::int64_t checks_with_pending = 0;
  for (std::int64_t step = 0; step < kSteps + 40; ++step) {
    std::vector<wire::StepRecord> batch;
    for (std::int64_t rank = 0; rank < kRanks; ++rank) {
      std::int64_t s = rank == 3 ? step - 40 : step;
      if (s < 0 || s >= kSteps) continue;
      batch.push_back(record(s, rank));
    }
    if (step % 97 == 50) batch.push_back(record(step / 2, 6));  // a resumed rank re-sends: replaced
    store.Ingest(batch);
    for (const auto& r : batch) truth[r.rank][r.step] = r;
    if (step % 500 == 499) {
      ASSERT_GT(pending(), 0) << "the check must see pending blocks";
      ++checks_with_pending;
      check("mid-run at step " + std::to_string(step));
    }
  }
  EXPECT_EQ(checks_with_pending, 4);
  check("at the end");
}

// Rollups written before the learning rate was kept in them (schema v8) get it from their steps
// when the database is upgraded: every level answers as the brute force does.
TEST_P(StoreRollupTest, RollupsOfAVersion8DatabaseGetTheLearningRateFromTheirSteps) {
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
        "ALTER TABLE step_rollups DROP COLUMN lr_nan; DELETE FROM schema_version WHERE version = "
        "9; DELETE FROM schema_compatibility WHERE version = 9");
  }
  auto store = Open();
  EXPECT_EQ(store->SchemaVersion(), BuiltinMigrations(GetParam()).back().version);
  for (const auto& [from, to, max_buckets] :
       std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>>{
           {0, INT64_MAX, 2}, {0, INT64_MAX, 30}, {100, 8000, 500}, {0, 8999, 9000}}) {
    const std::string what = "from=" + std::to_string(from) + " to=" + std::to_string(to) +
                             " buckets=" + std::to_string(max_buckets);
    auto series = store->runs().Downsampled("old-lr", from, to, std::nullopt, max_buckets);
    ASSERT_TRUE(series.has_value());
    ASSERT_EQ(series->ranks.size(), 2u) << what;
    for (const auto& rank : series->ranks) {
      ExpectBuckets(rank.buckets, Expected(truth[rank.rank], from, to, series->bucket_width),
                    what + " rank " + std::to_string(rank.rank));
    }
  }
}

// What the table holds, whatever path wrote it: every block of a coarser level is exactly its
// stored children merged, and every level-1 block that is not pending is exactly its steps. Checked
// after batches as trainers send them (in order, one rank lagging) and after resumed runs re-send
// steps whose blocks are rolled up already.
TEST_P(StoreRollupTest, EveryStoredBlockIsWhatItSummarisesAfterEveryKindOfBatch) {
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
    // Each coarser level from the stored level below: every block with a child exists, and holds
    // exactly its children merged.
    for (std::int64_t level = 2; level < kLevels; ++level) {
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
  EXPECT_EQ(widths_seen, (std::set<std::int64_t>{16, 256, 4096, 65536}));
}

INSTANTIATE_TEST_SUITE_P(Engines, StoreRollupTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

}  // namespace
}  // namespace lossguard::store
