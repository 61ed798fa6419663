#include "store/step_writes.h"

#include "store/postgres_step_writes.h"

namespace lossguard::store {

namespace {

// Parameters: ?1 run_id, ?2 step, ?3 rank, then the value columns, then received_at.
constexpr int kFirstValue = 4;

const std::string& InsertStepSql() {
  static const std::string sql = [] {
    const auto values = static_cast<int>(StepValueColumns().size());
    return "INSERT INTO steps (run_id, step, rank, " + StepValueColumnNames() +
           ", received_at) VALUES " + SqlValuesRows(1, kFirstValue + values) +
           " ON CONFLICT DO NOTHING";
  }();
  return sql;
}

const std::string& StoredStepSql() {
  static const std::string sql = "SELECT " + StepValueColumnNames() +
                                 " FROM steps WHERE run_id = ?1 AND step = ?2 AND rank = ?3";
  return sql;
}

const std::string& ReplaceStepSql() {
  static const std::string sql = [] {
    std::string set;
    int parameter = kFirstValue;
    for (const StepValueColumn& column : StepValueColumns()) {
      set += std::string(column.name) + " = ?" + std::to_string(parameter++) + ", ";
    }
    return "UPDATE steps SET " + set + "received_at = ?" + std::to_string(parameter) +
           ", version = version + 1 WHERE run_id = ?1 AND step = ?2 AND rank = ?3";
  }();
  return sql;
}

// New keys (the common case) cost one statement; an existing key is read back and rewritten only
// if it holds another record.
class RowByRowStepWrites final : public StepWrites {
 public:
  explicit RowByRowStepWrites(Database& db) : db_(db) {}

  void Write(const std::vector<std::int64_t>& run_ids, const std::vector<wire::StepRecord>& records,
             const std::vector<EncodedStepValues>& encoded, double now,
             std::span<Analysis::Stored> how, const StoredThrough& stored_through) override {
    CachedStatement insert(db_, InsertStepSql());
    for (std::size_t i = 0; i < records.size(); ++i) {
      how[i] = Store(insert, run_ids[i], records[i], encoded[i], now);
      if ((i + 1) % kReportEvery == 0) stored_through(i + 1);
    }
    stored_through(records.size());
  }

 private:
  // Four reports a 1,000-row batch: the analyzers start early, and a server whose cores are busy
  // anyway (HTTP parsing) pays few thread wake-ups (every 64 rows cost it about a tenth of its
  // throughput in scale_bench at world size 1; every 256, nothing measurable).
  static constexpr std::size_t kReportEvery = 256;

  Analysis::Stored Store(Statement& insert, std::int64_t run_id, const wire::StepRecord& record,
                         const EncodedStepValues& encoded, double now) {
    Bind(insert, run_id, record, encoded, now);
    insert.Step();
    if (db_.Changes() == 1) return Analysis::Stored::kNew;
    {
      CachedStatement stored(db_, StoredStepSql());
      stored.Bind(1, run_id).Bind(2, record.step).Bind(3, record.rank);
      if (stored.Step() && StoredRowHolds(stored, 0, record)) return Analysis::Stored::kDuplicate;
    }
    CachedStatement replace(db_, ReplaceStepSql());
    Bind(replace, run_id, record, encoded, now);
    replace.Step();
    return Analysis::Stored::kReplaced;
  }

  static void Bind(Statement& statement, std::int64_t run_id, const wire::StepRecord& r,
                   const EncodedStepValues& encoded, double now) {
    statement.Reset();
    statement.Bind(1, run_id).Bind(2, r.step).Bind(3, r.rank);
    BindStepValues(statement, kFirstValue, r, encoded);
    statement.BindNumber(kFirstValue + static_cast<int>(StepValueColumns().size()), now);
  }

  Database& db_;
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
