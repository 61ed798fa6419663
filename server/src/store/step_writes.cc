#include "store/step_writes.h"

#include "store/postgres_step_writes.h"

namespace lossguard::store {

namespace {

std::string InsertStepSql() {
  return std::string("INSERT INTO steps (run_id, step, rank, ") + kStepValueColumns +
         ", received_at) VALUES " + SqlValuesRows(1, 3 + kStepValueColumnCount + 1) +
         " ON CONFLICT DO NOTHING";
}

// New keys (the common case) cost one statement; an existing key is read back and rewritten only
// if it holds another record.
class RowByRowStepWrites final : public StepWrites {
 public:
  explicit RowByRowStepWrites(Database& db)
      : db_(db),
        insert_(db, InsertStepSql()),
        stored_(db, std::string("SELECT ") + kStepValueColumns +
                        " FROM steps WHERE run_id = ?1 AND step = ?2 AND rank = ?3"),
        replace_(db,
                 "UPDATE steps SET loss = ?4, grad_norm = ?5, ref_loss = ?6, tokens = ?7, "
                 "world_size = ?8, ga_steps = ?9, micro_batch_size = ?10, vocab_size = ?11, "
                 "lr = ?12, nonfinite_grads = ?13, time = ?14, micro = ?15, rest = ?16, "
                 "received_at = ?17, version = version + 1 "
                 "WHERE run_id = ?1 AND step = ?2 AND rank = ?3") {}

  std::vector<Analysis::Stored> Write(const std::vector<std::int64_t>& run_ids,
                                      const std::vector<wire::StepRecord>& records,
                                      const std::vector<EncodedStepValues>& encoded,
                                      double now) override {
    std::vector<Analysis::Stored> out;
    out.reserve(records.size());
    for (std::size_t i = 0; i < records.size(); ++i) {
      Bind(insert_, run_ids[i], records[i], encoded[i], now);
      insert_.Step();
      if (db_.Changes() == 1) {
        out.push_back(Analysis::Stored::kNew);
        continue;
      }
      stored_.Reset();
      stored_.Bind(1, run_ids[i]).Bind(2, records[i].step).Bind(3, records[i].rank);
      const bool same = stored_.Step() && StoredRowHolds(stored_, 0, records[i]);
      stored_.Reset();
      if (same) {
        out.push_back(Analysis::Stored::kDuplicate);
        continue;
      }
      Bind(replace_, run_ids[i], records[i], encoded[i], now);
      replace_.Step();
      out.push_back(Analysis::Stored::kReplaced);
    }
    insert_.Reset();
    replace_.Reset();
    return out;
  }

 private:
  static void Bind(Statement& statement, std::int64_t run_id, const wire::StepRecord& r,
                   const EncodedStepValues& encoded, double now) {
    statement.Reset();
    statement.Bind(1, run_id).Bind(2, r.step).Bind(3, r.rank);
    BindStepValues(statement, 4, r, encoded);
    statement.BindNumber(4 + kStepValueColumnCount, now);
  }

  Database& db_;
  Statement insert_, stored_, replace_;
};

}  // namespace

bool StoredRowHolds(const Statement& row, int first, const wire::StepRecord& record) {
  // Two records are the same record exactly when their canonical JSON texts are equal.
  return wire::CanonicalJson(ReadStepValues(row, first, record.run, record.step, record.rank)) ==
         wire::CanonicalJson(record);
}

std::unique_ptr<StepWrites> MakeStepWrites(Database& db) {
  if (db.backend() == Backend::kPostgres) return MakePostgresStepWrites(db);
  return std::make_unique<RowByRowStepWrites>(db);
}

}  // namespace lossguard::store
