// The analyzers inside Store::Ingest: a batch's records are judged in record order, whether the
// analysis thread or the writer's thread feeds them, and however the records are batched.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "server/store_fixtures.h"
#include "store/store.h"
#include "support/records.h"

namespace lossguard::store {
namespace store_analysis_test {

using lossguard::testing::MakeRecord;

class StoreAnalysisTest : public lossguard::testing::EngineTest {};

// Steps [from, to) of `run`: a loss at `level` with a NaN at `nan_at` (none when negative).
std::vector<wire::StepRecord> Steps(const std::string& run, std::int64_t from, std::int64_t to,
                                    std::int64_t nan_at, double level) {
  std::vector<wire::StepRecord> out;
  for (std::int64_t step = from; step < to; ++step) {
    wire::StepRecord r = MakeRecord(run, step, step == nan_at ? std::nan("") : level);
    r.grad_norm = 1.0 + 0.05 * static_cast<double>(step % 5);
    out.push_back(r);
  }
  return out;
}

std::vector<wire::StepRecord> Concat(std::vector<wire::StepRecord> a,
                                     const std::vector<wire::StepRecord>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Every alert of the store, in an order and form that compare across stores.
std::vector<std::string> Episodes(Store& store) {
  std::vector<std::string> out;
  for (const Alert& a : store.alerts().List({})) {
    out.push_back(a.run + " " + std::string(analyzers::KindName(a.kind)) + " " +
                  std::string(analyzers::SeverityName(a.severity)) + " " +
                  std::string(analyzers::AlertStateName(a.state)) + " " +
                  std::to_string(a.first_step) + "-" + std::to_string(a.last_step) + " attempt " +
                  std::to_string(a.evidence.value("attempt", 0)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// One batch: another run's new records (fed by the analysis thread as they are stored), then a
// resumed run's re-sent steps (a replaced step already judged rewinds its run, which reads the
// database: the writer's thread takes over there).
TEST_P(StoreAnalysisTest, ABatchOfNewRecordsThenReplacedOnesIsJudgedInRecordOrder) {
  auto store = Open();
  store->Ingest(Steps("resumed", 0, 200, /*nan_at=*/185, 2.0));
  const IngestResult mixed = store->Ingest(
      Concat(Steps("fresh", 0, 100, /*nan_at=*/95, 3.0), Steps("resumed", 170, 200, 185, 2.1)));
  EXPECT_EQ(mixed.replaced, 29);
  EXPECT_EQ(mixed.duplicates, 1);  // the NaN step is the same record again
  EXPECT_THAT(Episodes(*store),
              ::testing::ElementsAre("fresh nonfinite critical open 95-95 attempt 0",
                                     "resumed nonfinite critical open 185-185 attempt 1",
                                     "resumed nonfinite critical resolved 185-185 attempt 0"));
}

// The same records, in one batch or one record at a time, leave the same episodes: how a batch is
// split between the two threads changes nothing.
TEST_P(StoreAnalysisTest, EpisodesDoNotDependOnHowRecordsAreBatched) {
  std::vector<wire::StepRecord> records = Steps("a", 0, 300, 120, 2.0);
  records = Concat(records, Steps("b", 0, 150, 60, 2.5));
  for (wire::StepRecord& r : records) {
    if (r.run == "a" && r.step >= 200 && r.step < 210) r.loss = 40.0;  // a burst of loss
    if (r.run == "b" && r.step % 40 == 7) r.grad_norm = 900.0;         // gradient spikes
  }
  records = Concat(records, Steps("a", 250, 320, 260, 2.05));  // a resumes from step 250
  records = Concat(records, Steps("b", 150, 200, -1, 2.5));

  auto whole = Open();
  whole->Ingest(records);
  const std::vector<std::string> expected = Episodes(*whole);
  EXPECT_GE(expected.size(), 4u) << ::testing::PrintToString(expected);
  whole.reset();

  Store one_at_a_time(AnotherLocation());
  for (const wire::StepRecord& record : records) one_at_a_time.Ingest({record});
  EXPECT_EQ(Episodes(one_at_a_time), expected);

  Store in_uneven_batches(AnotherLocation());
  for (std::size_t begin = 0, size = 1; begin < records.size(); begin += size, size = size * 3 % 97)
    in_uneven_batches.Ingest(std::vector<wire::StepRecord>(
        records.begin() + static_cast<std::ptrdiff_t>(begin),
        records.begin() + static_cast<std::ptrdiff_t>(std::min(records.size(), begin + size))));
  EXPECT_EQ(Episodes(in_uneven_batches), expected);
}

INSTANTIATE_TEST_SUITE_P(Engines, StoreAnalysisTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

}  // namespace store_analysis_test
}  // namespace lossguard::store
