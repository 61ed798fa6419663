// The data steps of built-in migrations (Migration::data): conversions SQL cannot express.
#include <spdlog/spdlog.h>

#include <array>
#include <cmath>
#include <optional>

#include "lossguard/wire/record_codec.h"
#include "store/migrations.h"
#include "store/step_row.h"

namespace lossguard::store {

namespace {
constexpr std::int64_t kReadRows = 5000;
constexpr std::size_t kInsertRows = 250;

// The steps table as migration 7 made it. A migration writes the schema of its version whatever
// the current row code is (step_row.h, which follows the latest schema): a column added later
// would otherwise be bound here, against a table that does not have it yet, and break upgrades
// from v6.
constexpr const char* kV7ValueColumns =
    "loss, grad_norm, ref_loss, tokens, world_size, ga_steps, micro_batch_size, vocab_size, lr, "
    "nonfinite_grads, time, micro, rest";
constexpr int kV7ValueColumnCount = 13;
constexpr int kInsertColumns = 3 + kV7ValueColumnCount + 2;

std::string InsertSql(std::size_t rows) {
  return std::string("INSERT INTO steps (run_id, step, rank, ") + kV7ValueColumns +
         ", version, received_at) VALUES " + SqlValuesRows(rows, kInsertColumns);
}

// A number as a v7 column holds it: -0.0 as 0, its exact value in `rest`.
std::optional<double> V7Number(std::optional<double> value, std::string_view field,
                               nlohmann::json& rest) {
  if (value && *value == 0) {
    if (std::signbit(*value)) rest[std::string(field)] = *value;
    return 0.0;
  }
  return value;
}

// Binds a record's v7 value columns from parameter `first` on. The micro-batches use
// EncodeMicroBatches: its format byte versions the encoding, and every reader keeps reading the
// formats rows hold.
void BindV7Values(Statement& insert, int first, const wire::StepRecord& r) {
  nlohmann::json rest = r.extra.is_object() ? r.extra : nlohmann::json::object();
  insert.BindNumber(first, V7Number(r.loss, "loss", rest))
      .BindNumber(first + 1, V7Number(r.grad_norm, "grad_norm", rest))
      .BindNumber(first + 2, V7Number(r.ref_loss, "ref_loss", rest))
      .Bind(first + 3, r.tokens)
      .Bind(first + 4, r.world_size)
      .Bind(first + 5, r.ga_steps)
      .Bind(first + 6, r.micro_batch_size)
      .Bind(first + 7, r.vocab_size)
      .BindNumber(first + 8, V7Number(r.lr, "lr", rest))
      .Bind(first + 9, r.nonfinite_grads)
      .BindNumber(first + 10, V7Number(r.time, "time", rest));
  if (r.micro.empty()) {
    insert.BindNull(first + 11);
  } else {
    insert.BindBinary(first + 11, EncodeMicroBatches(r.micro));
  }
  if (rest.empty()) {
    insert.BindNull(first + 12);
  } else {
    insert.Bind(first + 12, rest.dump());
  }
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
    BindV7Values(insert, parameter + 3, row.record);
    parameter += 3 + kV7ValueColumnCount;
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
  // file allows it (one created with auto_vacuum = INCREMENTAL): about 7 s for 1M rows. PostgreSQL
  // removes a dropped table's files itself.
  if (db.backend() == Backend::kSqlite) {
    Statement mode(db, "PRAGMA auto_vacuum");
    if (mode.Step() && mode.Int(0) == 2) {
      mode.Reset();
      db.Exec("PRAGMA incremental_vacuum");
    }
  }
}

}  // namespace lossguard::store
