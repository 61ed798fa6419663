// The data steps of built-in migrations (Migration::data): conversions SQL cannot express.
#include <spdlog/spdlog.h>

#include <array>
#include <optional>

#include "lossguard/wire/record_codec.h"
#include "store/migrations.h"
#include "store/step_row.h"

namespace lossguard::store {

namespace {
constexpr std::int64_t kReadRows = 5000;
constexpr std::size_t kInsertRows = 250;
constexpr int kInsertColumns = 3 + kStepValueColumnCount + 2;

std::string InsertSql(std::size_t rows) {
  return std::string("INSERT INTO steps (run_id, step, rank, ") + kStepValueColumns +
         ", version, received_at) VALUES " + SqlValuesRows(rows, kInsertColumns);
}

struct OldRow {
  std::int64_t run_id, step, rank, version;
  double received_at;
  wire::StepRecord record;
};

void InsertRows(Database& db, const std::vector<OldRow>& rows, std::size_t begin, std::size_t end) {
  Statement insert(db, InsertSql(end - begin));
  int parameter = 1;
  for (std::size_t i = begin; i < end; ++i) {
    const OldRow& row = rows[i];
    insert.Bind(parameter, row.run_id).Bind(parameter + 1, row.step).Bind(parameter + 2, row.rank);
    BindStepValues(insert, parameter + 3, row.record, EncodeStepValues(row.record));
    parameter += 3 + kStepValueColumnCount;
    insert.Bind(parameter, row.version).BindNumber(parameter + 1, row.received_at);
    parameter += 2;
  }
  insert.Step();
}
}  // namespace

// v7: every row of steps_v6 (run_id, step, rank, record JSON, version, received_at) into the typed
// steps table, in key order and in chunks (a PostgreSQL result is held in memory whole), then
// steps_v6 dropped.
void RewriteStepRowsV7(Database& db) {
  const std::string columns =
      "SELECT run_id, step, rank, record, version, received_at FROM steps_v6";
  const std::string order = " ORDER BY run_id, step, rank LIMIT " + std::to_string(kReadRows);
  Statement first(db, columns + order);
  Statement next(db, columns + " WHERE (run_id, step, rank) > (?1, ?2, ?3)" + order);
  std::optional<std::array<std::int64_t, 3>> after;
  std::int64_t converted = 0;
  while (true) {
    Statement& chunk = after ? next : first;
    chunk.Reset();
    if (after) chunk.Bind(1, (*after)[0]).Bind(2, (*after)[1]).Bind(3, (*after)[2]);
    std::vector<OldRow> rows;
    while (chunk.Step()) {
      OldRow row{
          chunk.Int(0), chunk.Int(1), chunk.Int(2), chunk.Int(4), chunk.Number(5).value_or(0), {}};
      auto parsed = wire::ParseRecordText(chunk.Text(3), 0);
      if (!parsed) {
        throw StorageError("the stored record of run id " + std::to_string(row.run_id) + " step " +
                           std::to_string(row.step) + " rank " + std::to_string(row.rank) +
                           " does not parse: " + parsed.error().message);
      }
      row.record = std::move(parsed).value();
      rows.push_back(std::move(row));
    }
    chunk.Reset();
    if (rows.empty()) break;
    for (std::size_t begin = 0; begin < rows.size(); begin += kInsertRows)
      InsertRows(db, rows, begin, std::min(rows.size(), begin + kInsertRows));
    converted += static_cast<std::int64_t>(rows.size());
    if (converted % 1'000'000 < kReadRows) {
      spdlog::info("{}: migration 7: {} step rows converted", db.name(), converted);
    }
    after = {rows.back().run_id, rows.back().step, rows.back().rank};
  }
  db.Exec("DROP TABLE steps_v6");
  // The old table's pages (two thirds of the file) go back to the file system at once where the
  // file allows it (created since auto_vacuum = INCREMENTAL was set, issue 15): about 7 s for 1M
  // rows. PostgreSQL removes a dropped table's files itself.
  if (db.backend() == Backend::kSqlite) {
    Statement mode(db, "PRAGMA auto_vacuum");
    if (mode.Step() && mode.Int(0) == 2) {
      mode.Reset();
      db.Exec("PRAGMA incremental_vacuum");
    }
  }
}

}  // namespace lossguard::store
