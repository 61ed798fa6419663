// Step rows without their JSON text (schema v7): every record comes back exactly as its canonical
// JSON, on both engines, through ingest, the queries, the analyzers' reads and the v6 -> v7
// migration of a database written by an older server.
#include "store/step_row.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "lossguard/wire/record_codec.h"
#include "server/store_fixtures.h"
#include "store/migrations.h"
#include "support/records.h"

namespace lossguard::store {
namespace step_row_test {

using lossguard::testing::MakeRecord;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Records of every shape a row must hold: nothing optional, everything, the extremes of each
// bound, non-finite values and negative zeros in every number field and inside micro-batches,
// unknown fields of every JSON type (1.0 and 1 are different texts).
std::vector<wire::StepRecord> EveryShape(const std::string& run) {
  std::vector<wire::StepRecord> out;
  out.push_back(MakeRecord(run, 0, 2.5));

  wire::StepRecord full = MakeRecord(run, 1, 3.25, 3, 8);
  full.ga_steps = wire::kMaxSize;
  full.micro_batch_size = 1;
  full.grad_norm = 1e300;
  full.tokens = wire::kMaxCount;
  full.vocab_size = 128256;
  full.lr = 3e-4;
  full.ref_loss = 0.1 + 0.2;  // a double whose shortest text has 17 digits
  full.nonfinite_grads = 0;
  full.time = 1764000000.123456;
  full.micro = {wire::MicroBatch{1.5, 0, std::nullopt}, wire::MicroBatch{kNaN, 7, kInf},
                wire::MicroBatch{-0.0, wire::kMaxCount, -0.0}, wire::MicroBatch{2, 300, 600.0}};
  full.extra = {{"float_one", 1.0},        {"int_one", 1},
                {"negative", -7},          {"big", 18446744073709551615u},
                {"text", "naïve ✓"},       {"null", nullptr},
                {"list", {1, "two", 3.5}}, {"nested", {{"a", {{"b", false}}}}}};
  out.push_back(full);

  wire::StepRecord non_finite = MakeRecord(run, 2, kNaN);
  non_finite.grad_norm = kInf;
  non_finite.ref_loss = -kInf;
  non_finite.lr = kNaN;
  non_finite.nonfinite_grads = wire::kMaxCount;
  out.push_back(non_finite);

  wire::StepRecord zeros = MakeRecord(run, 3, -0.0);
  zeros.grad_norm = -0.0;
  zeros.ref_loss = -0.0;
  zeros.lr = -0.0;
  zeros.time = -0.0;
  zeros.tokens = 0;
  zeros.extra = {{"loss_scale", -0.0}};
  out.push_back(zeros);

  wire::StepRecord positive_zeros = zeros;
  positive_zeros.step = 4;
  positive_zeros.loss = 0.0;
  positive_zeros.grad_norm = 0.0;
  positive_zeros.extra = nlohmann::json::object();
  out.push_back(positive_zeros);
  return out;
}

class StepRowTest : public lossguard::testing::EngineTest {};

TEST_P(StepRowTest, EveryShapeOfRecordComesBackAsItsCanonicalJson) {
  auto store = Open();
  const std::vector<wire::StepRecord> records = EveryShape("shapes");
  EXPECT_EQ(store->Ingest(records).accepted, static_cast<std::int64_t>(records.size()));

  auto page = store->runs().Steps("shapes", StepQuery{});
  ASSERT_EQ(page->records.size(), records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(page->records[i], wire::CanonicalJson(records[i])) << "record " << i;
  }
  EXPECT_EQ(store->runs().Get("shapes")->latest, wire::ToJson(records.back()));

  // Identical records are duplicates; a sign of zero, a micro-batch or an unknown field that
  // differs makes a different record.
  IngestResult again = store->Ingest(records);
  EXPECT_EQ(again.duplicates, static_cast<std::int64_t>(records.size()));
  std::vector<wire::StepRecord> changed = {records[3], records[4], records[1], records[1]};
  changed[0].loss = 0.0;
  changed[1].loss = -0.0;
  changed[2].micro[2].loss_sum = 0.0;
  changed[3].micro[2].loss_sum = -0.0;
  changed[3].extra["text"] = "naïve ✗";
  IngestResult replaced = store->Ingest(changed);
  EXPECT_EQ(replaced.replaced, 4);
  EXPECT_EQ(replaced.duplicates, 0);
  page = store->runs().Steps("shapes", StepQuery{});
  EXPECT_EQ(page->records[1], wire::CanonicalJson(changed[3]));
  EXPECT_EQ(page->records[3], wire::CanonicalJson(changed[0]));
  EXPECT_EQ(page->records[4], wire::CanonicalJson(changed[1]));

  // A replacement without the optional fields the stored row has (a batch that sends none of them)
  // leaves none of them behind.
  wire::StepRecord bare = MakeRecord("shapes", 2, 1.0);
  EXPECT_EQ(store->Ingest({bare}).replaced, 1);
  EXPECT_EQ(store->runs().Steps("shapes", StepQuery{})->records[2], wire::CanonicalJson(bare));
  wire::StepRecord bare_full = MakeRecord("shapes", 1, 1.0, 3, 8);
  EXPECT_EQ(store->Ingest({bare_full}).replaced, 1);
  EXPECT_EQ(store->runs().Steps("shapes", StepQuery{})->records[1], wire::CanonicalJson(bare_full));
  EXPECT_EQ(store->Ingest({changed[3]}).replaced, 1);

  // A store opened again (a restart) reads the rows the same way, the analyzers' reads included.
  store.reset();
  store = Open();
  EXPECT_EQ(store->Ingest({changed[3]}).duplicates, 1);
  EXPECT_EQ(store->runs().Steps("shapes", StepQuery{})->records[1],
            wire::CanonicalJson(changed[3]));
}

// A database written by a v6 server (each row's canonical JSON in `record`) is converted by the
// v7 migration: every answer is the one v6 gave, and re-sent records are still duplicates.
TEST_P(StepRowTest, AVersion6DatabaseIsConvertedWithEveryRecordExact) {
  const std::vector<wire::StepRecord> shapes = EveryShape("old");
  std::vector<wire::StepRecord> records;
  for (int copy = 0; copy < 2100; ++copy) {  // more than one chunk of the conversion (5,000 rows)
    for (wire::StepRecord record : shapes) {
      record.step += 10 * copy;
      records.push_back(record);
    }
  }
  {
    auto db = Connect();
    // As the store makes a new SQLite file: the migration then gives the old rows' pages back.
    if (GetParam() == Backend::kSqlite) db->Exec("PRAGMA auto_vacuum = INCREMENTAL");
    const auto& all = BuiltinMigrations(GetParam());
    ASSERT_EQ(ApplyMigrations(*db, std::vector<Migration>(all.begin(), all.begin() + 6)), 6);
    Transaction transaction(*db);
    Statement run(*db,
                  "INSERT INTO runs (id, name, first_seen, last_seen, record_count, "
                  "judged_through) VALUES (5, 'old', 1, 2, ?, NULL)");
    run.Bind(1, static_cast<std::int64_t>(records.size())).Step();
    Statement step(*db,
                   "INSERT INTO steps (run_id, step, rank, loss, grad_norm, ref_loss, tokens, "
                   "record, version, received_at) VALUES (5, ?, ?, ?, ?, ?, ?, ?, ?, 1.5)");
    for (const wire::StepRecord& r : records) {
      step.Reset();
      step.Bind(1, r.step).Bind(2, r.rank).BindNumber(3, r.loss).BindNumber(4, r.grad_norm);
      step.BindNumber(5, r.ref_loss).Bind(6, r.tokens).Bind(7, wire::CanonicalJson(r));
      step.Bind(8, r.step % 3).Step();
    }
    transaction.Commit();
  }

  // The analyzers on: the re-sent batch below resumes the run from the converted rows.
  auto store = Open();
  EXPECT_EQ(store->SchemaVersion(), BuiltinMigrations(GetParam()).back().version);
  StepQuery everything;
  everything.limit = 100000;
  auto page = store->runs().Steps("old", everything);
  ASSERT_EQ(page->records.size(), records.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (page->records[i] != wire::CanonicalJson(records[i])) ++differing;
  }
  EXPECT_EQ(differing, 0u) << "first: " << page->records[0];
  EXPECT_EQ(store->runs().Get("old")->records, static_cast<std::int64_t>(records.size()));
  EXPECT_EQ(store->Ingest(records).duplicates, static_cast<std::int64_t>(records.size()));
  EXPECT_FALSE(Connect()->HasTable("steps_v6"));
  if (GetParam() == Backend::kSqlite) {
    auto db = Connect();
    Statement free_pages(*db, "PRAGMA freelist_count");
    ASSERT_TRUE(free_pages.Step());
    EXPECT_LT(free_pages.Int(0), 10) << "the old table's pages are given back to the file system";
  }

  auto version = Connect();
  Statement kept(*version, "SELECT version FROM steps WHERE run_id = 5 AND step = 2");
  ASSERT_TRUE(kept.Step());
  EXPECT_EQ(kept.Int(0), 2) << "a row's replacement count is kept";
}

INSTANTIATE_TEST_SUITE_P(Engines, StepRowTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

TEST(MicroBatchEncoding, RoundTripsExactlyAndRefusesWhatItDidNotWrite) {
  const double from_float32 = static_cast<float>(2.3456);  // what a float32 trainer sends
  const std::vector<wire::MicroBatch> micro = {{-0.0, 0, std::nullopt},
                                               {kNaN, wire::kMaxCount, -kInf},
                                               {5e-324, 127, 128.0},
                                               {0.1, 128, from_float32},
                                               {from_float32, 300, 1e300}};
  const std::string bytes = EncodeMicroBatches(micro);
  // format; then flags + loss + tokens varint (+ loss_sum): float32 values take 4 bytes, others 8.
  EXPECT_EQ(bytes.size(), 1 + (1 + 4 + 1) + (1 + 4 + 8 + 4) + (1 + 8 + 1 + 4) + (1 + 8 + 2 + 4) +
                              (1 + 4 + 2 + 8));
  auto decoded = DecodeMicroBatches(bytes);
  ASSERT_TRUE(decoded);
  wire::StepRecord a = MakeRecord("m", 0, 1), b = a;
  a.micro = micro;
  b.micro = *decoded;
  EXPECT_EQ(wire::CanonicalJson(b), wire::CanonicalJson(a));
  EXPECT_TRUE(std::signbit(b.micro[0].loss));
  EXPECT_EQ(b.micro[3].loss, 0.1);
  EXPECT_EQ(*b.micro[3].loss_sum, from_float32);

  EXPECT_FALSE(DecodeMicroBatches(""));
  EXPECT_FALSE(DecodeMicroBatches(std::string(1, '\2') + bytes.substr(1))) << "another format";
  EXPECT_FALSE(DecodeMicroBatches(bytes.substr(0, bytes.size() - 1))) << "cut short";
  std::string bad_flags = bytes;
  bad_flags[1] = '\x08';
  EXPECT_FALSE(DecodeMicroBatches(bad_flags)) << "a flag it does not know";
  bad_flags[1] = '\x06';
  EXPECT_FALSE(DecodeMicroBatches(bad_flags)) << "a float32 loss_sum without a loss_sum";
}

}  // namespace step_row_test
}  // namespace lossguard::store
