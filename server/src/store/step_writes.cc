#include "store/step_writes.h"

#include "store/postgres_step_writes.h"

namespace lossguard::store {

namespace {

// New keys (the common case) cost one statement; an existing key is then updated only if the record
// differs, so the changed-row count tells new, replaced and duplicate apart.
constexpr const char* kInsertStep = R"sql(
INSERT INTO steps (run_id, step, rank, loss, grad_norm, ref_loss, tokens, record, received_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING)sql";
constexpr const char* kReplaceStep = R"sql(
UPDATE steps SET loss = ?4, grad_norm = ?5, ref_loss = ?6, tokens = ?7, record = ?8, received_at = ?9,
                 version = version + 1
WHERE run_id = ?1 AND step = ?2 AND rank = ?3 AND record <> ?8)sql";

// A statement per row: in process, SQLite's statements cost microseconds.
class RowByRowStepWrites final : public StepWrites {
 public:
  explicit RowByRowStepWrites(Database& db)
      : db_(db), insert_(db, kInsertStep), replace_(db, kReplaceStep) {}

  std::vector<Analysis::Stored> Write(const std::vector<std::int64_t>& run_ids,
                                      const std::vector<wire::StepRecord>& records,
                                      const std::vector<std::string>& canonical,
                                      double now) override {
    std::vector<Analysis::Stored> out;
    out.reserve(records.size());
    for (std::size_t i = 0; i < records.size(); ++i) {
      Bind(insert_, run_ids[i], records[i], canonical[i], now);
      insert_.Step();
      if (db_.Changes() == 1) {
        out.push_back(Analysis::Stored::kNew);
        continue;
      }
      Bind(replace_, run_ids[i], records[i], canonical[i], now);
      replace_.Step();
      out.push_back(db_.Changes() == 0 ? Analysis::Stored::kDuplicate
                                       : Analysis::Stored::kReplaced);
    }
    insert_.Reset();
    replace_.Reset();
    return out;
  }

 private:
  static void Bind(Statement& statement, std::int64_t run_id, const wire::StepRecord& r,
                   const std::string& canonical, double now) {
    statement.Reset();
    statement.Bind(1, run_id).Bind(2, r.step).Bind(3, r.rank).BindNumber(4, r.loss);
    statement.BindNumber(5, r.grad_norm).BindNumber(6, r.ref_loss).Bind(7, r.tokens);
    statement.Bind(8, canonical).BindNumber(9, now);
  }

  Database& db_;
  Statement insert_, replace_;
};

}  // namespace

std::unique_ptr<StepWrites> MakeStepWrites(Database& db) {
  if (db.backend() == Backend::kPostgres) return MakePostgresStepWrites(db);
  return std::make_unique<RowByRowStepWrites>(db);
}

}  // namespace lossguard::store
