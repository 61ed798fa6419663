// Rollups: the downsampled answers against brute force on each engine, while blocks are pending
// and after.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "server/rollup_expectations.h"
#include "server/store_fixtures.h"
#include "store/store.h"
#include "support/records.h"

namespace lossguard::store {
namespace {

using lossguard::testing::MakeRecord;

class StoreRollupTest : public lossguard::testing::EngineTest {};

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

// Rollups are written a step block behind the steps: answers must be complete and
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
        ExpectAnswersAsBruteForce(store, "wide", truth, from, to, only, max_buckets, what);
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

INSTANTIATE_TEST_SUITE_P(Engines, StoreRollupTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

}  // namespace
}  // namespace lossguard::store
