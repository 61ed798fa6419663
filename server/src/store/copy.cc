#include "store/copy.h"

#include <map>
#include <memory>
#include <optional>
#include <variant>

#include "store/migrations.h"
#include "store/postgres.h"
#include "store/sqlite.h"
#include "store/step_row.h"
#include "store/store.h"

namespace lossguard::store {

namespace {

struct Column {
  std::string name;
  ColumnType type;
};
struct Table {
  const char* name;
  std::vector<Column> columns;
  std::size_t key_columns;  // the first ones: the primary key, the copy's order
  bool identity = false;    // PostgreSQL: the id column's sequence follows the copied ids
};

Column I(const char* name) { return {name, ColumnType::kInt}; }
Column N(const char* name) { return {name, ColumnType::kNumber}; }
Column T(const char* name) { return {name, ColumnType::kText}; }

// The steps table: its key, the value columns of step_row.h, its bookkeeping.
std::vector<Column> StepColumns() {
  std::vector<Column> columns = {I("run_id"), I("step"), I("rank")};
  for (const StepValueColumn& column : StepValueColumns()) {
    columns.push_back({std::string(column.name), column.type});
  }
  columns.push_back(I("version"));
  columns.push_back(N("received_at"));
  return columns;
}

// Every table of schema version 10 (see schema/migrations), parents first, except the notification
// outbox: its deliveries are addressed to the source server's webhooks, and copying is done with
// the source stopped, once its outbox has drained (lossguard_notifications_pending at 0).
const std::vector<Table>& Tables() {
  static const std::vector<Table> tables = {
      {"runs",
       {I("id"), T("name"), N("first_seen"), N("last_seen"), I("record_count"), I("judged_through"),
        I("attempt"), I("revision")},
       1,
       true},
      {"steps", StepColumns(), 3},
      {"step_rollups",
       {I("run_id"),
        I("rank"),
        I("width"),
        I("bucket"),
        I("first_step"),
        I("last_step"),
        I("n"),
        N("loss_min"),
        N("loss_max"),
        I("loss_nan"),
        N("ref_loss_min"),
        N("ref_loss_max"),
        I("ref_loss_nan"),
        N("grad_norm_min"),
        N("grad_norm_max"),
        I("grad_norm_nan"),
        N("tokens_min"),
        N("tokens_max"),
        I("tokens_nan"),
        N("lr_min"),
        N("lr_max"),
        I("lr_nan")},
       4},
      {"rollup_pending", {I("run_id"), I("bucket"), N("since")}, 2},
      {"alerts",
       {I("id"), I("run_id"), T("kind"), T("severity"), T("state"), I("rank"), I("first_step"),
        I("last_step"), T("message"), T("evidence"), N("opened_at"), N("updated_at"),
        N("resolved_at"), N("acked_at"), I("attempt")},
       1,
       true},
      {"guard_actions",
       {I("run_id"), I("step"), I("rank"), T("action"), T("kind"), I("episode_id"), T("detail"),
        N("received_at")},
       3},
  };
  return tables;
}
constexpr int kCopiedSchemaVersion = 10;

std::string ColumnList(const Table& table, std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count; ++i)
    out += (i ? ", " : "") + std::string(table.columns[i].name);
  return out;
}

std::unique_ptr<Database> Connect(const StoreLocation& location, bool read_only) {
  if (location.backend == Backend::kSqlite) {
    return std::make_unique<SqliteDatabase>(location.sqlite_path, read_only, /*create=*/false);
  }
  return std::make_unique<PostgresDatabase>(location.postgres);
}

std::int64_t Count(Database& db, const Table& table) {
  Statement count(db, "SELECT COUNT(*) FROM " + std::string(table.name));
  count.Step();
  return count.Int(0);
}

// The largest key the destination holds: where an interrupted copy of the table stopped.
std::optional<std::vector<std::int64_t>> LastKey(Database& db, const Table& table) {
  std::string order;
  for (std::size_t i = 0; i < table.key_columns; ++i)
    order += (i ? ", " : "") + std::string(table.columns[i].name) + " DESC";
  Statement last(db, "SELECT " + ColumnList(table, table.key_columns) + " FROM " + table.name +
                         " ORDER BY " + order + " LIMIT 1");
  if (!last.Step()) return std::nullopt;
  std::vector<std::int64_t> key;
  for (std::size_t i = 0; i < table.key_columns; ++i) key.push_back(last.Int(static_cast<int>(i)));
  return key;
}

class TableCopier {
 public:
  TableCopier(Database& source, Database& destination, const Table& table,
              const CopyOptions& options)
      : source_(source), destination_(destination), table_(table), options_(options) {}

  TableCopy Run() {
    TableCopy report{table_.name, Count(source_, table_), 0, Count(destination_, table_)};
    std::optional<std::vector<std::int64_t>> after = LastKey(destination_, table_);
    const std::string columns = ColumnList(table_, table_.columns.size());
    const std::string keys = ColumnList(table_, table_.key_columns);
    std::string placeholders;
    for (std::size_t i = 0; i < table_.key_columns; ++i) placeholders += i ? ", ?" : "?";
    Statement first(source_, "SELECT " + columns + " FROM " + table_.name + " ORDER BY " + keys +
                                 " LIMIT " + std::to_string(options_.chunk_rows));
    Statement next(source_, "SELECT " + columns + " FROM " + table_.name + " WHERE (" + keys +
                                ") > (" + placeholders + ") ORDER BY " + keys + " LIMIT " +
                                std::to_string(options_.chunk_rows));
    std::int64_t copied = report.already_there;
    while (true) {
      Statement& chunk = after ? next : first;
      chunk.Reset();
      if (after) {
        for (std::size_t i = 0; i < after->size(); ++i)
          chunk.Bind(static_cast<int>(i) + 1, (*after)[i]);
      }
      std::int64_t rows = 0;
      Transaction transaction(destination_);
      while (chunk.Step()) {
        Insert(chunk);
        ++rows;
        after = std::vector<std::int64_t>();
        for (std::size_t i = 0; i < table_.key_columns; ++i)
          after->push_back(chunk.Int(static_cast<int>(i)));
      }
      FlushInserts();
      transaction.Commit();
      chunk.Reset();
      copied += rows;
      if (rows > 0 && options_.progress) options_.progress(table_.name, copied);
      if (rows < options_.chunk_rows) break;
    }
    report.destination_rows = Count(destination_, table_);
    return report;
  }

 private:
  static constexpr std::size_t kRowsPerInsert = 100;

  Statement& InsertOf(std::size_t rows) {
    auto [it, created] = inserts_.try_emplace(rows, std::nullopt);
    if (created) {
      it->second.emplace(destination_, "INSERT INTO " + std::string(table_.name) + " (" +
                                           ColumnList(table_, table_.columns.size()) + ") VALUES " +
                                           SqlValuesRows(rows, table_.columns.size()) +
                                           " ON CONFLICT DO NOTHING");
    }
    return *it->second;
  }

  struct Bytes {
    std::string bytes;
  };
  using Value = std::variant<std::monostate, std::int64_t, double, std::string, Bytes>;

  // Buffers a row; a full buffer goes as one multi-row insert.
  void Insert(const Statement& row) {
    std::vector<Value>& kept = buffer_.emplace_back();
    for (std::size_t c = 0; c < table_.columns.size(); ++c) {
      const int column = static_cast<int>(c);
      if (row.IsNull(column)) {
        kept.emplace_back(std::monostate{});
      } else if (table_.columns[c].type == ColumnType::kInt) {
        kept.emplace_back(row.Int(column));
      } else if (table_.columns[c].type == ColumnType::kNumber) {
        kept.emplace_back(*row.Number(column));
      } else if (table_.columns[c].type == ColumnType::kBlob) {
        kept.emplace_back(Bytes{row.Blob(column)});
      } else {
        kept.emplace_back(std::string(row.Text(column)));
      }
    }
    if (buffer_.size() == kRowsPerInsert) {
      Send(InsertOf(kRowsPerInsert), 0, kRowsPerInsert);
      buffer_.clear();
    }
  }

  // The rest of the buffer, a row per statement.
  void FlushInserts() {
    for (std::size_t row = 0; row < buffer_.size(); ++row) Send(InsertOf(1), row, 1);
    buffer_.clear();
  }

  void Send(Statement& insert, std::size_t first_row, std::size_t rows) {
    insert.Reset();
    int index = 1;
    for (std::size_t row = first_row; row < first_row + rows; ++row) {
      for (const Value& value : buffer_[row]) {
        std::visit(
            [&](const auto& v) {
              using V = std::decay_t<decltype(v)>;
              if constexpr (std::is_same_v<V, std::monostate>) {
                insert.BindNull(index);
              } else if constexpr (std::is_same_v<V, double>) {
                insert.BindNumber(index, v);
              } else if constexpr (std::is_same_v<V, Bytes>) {
                insert.BindBinary(index, v.bytes);
              } else {
                insert.Bind(index, v);
              }
            },
            value);
        ++index;
      }
    }
    insert.Step();
    insert.Reset();
  }

  Database& source_;
  Database& destination_;
  const Table& table_;
  const CopyOptions& options_;
  std::map<std::size_t, std::optional<Statement>> inserts_;
  std::vector<std::vector<Value>> buffer_;
};

// The destination's runs must be the source's (same id, same name): an empty database, or one an
// interrupted copy of this source left.
void CheckDestinationRuns(Database& source, Database& destination, const std::string& where) {
  Statement theirs(destination, "SELECT id, name FROM runs ORDER BY id");
  Statement ours(source, "SELECT name FROM runs WHERE id = ?");
  while (theirs.Step()) {
    ours.Reset();
    ours.Bind(1, theirs.Int(0));
    if (!ours.Step() || ours.Text(0) != theirs.Text(1)) {
      throw StorageError(where + " already holds run \"" + std::string(theirs.Text(1)) + "\" (id " +
                         std::to_string(theirs.Int(0)) +
                         "), which the source does not: copy into an empty database");
    }
  }
}

}  // namespace

std::vector<TableCopy> CopyDatabase(const StoreLocation& from, const StoreLocation& to,
                                    const CopyOptions& options) {
  if (options.chunk_rows < 1) throw StorageError("copy: chunk_rows must be at least 1");
  if (from.backend == to.backend && from.Describe() == to.Describe())
    throw StorageError("copy: --from and --to are the same database");
  std::unique_ptr<Database> source = Connect(from, /*read_only=*/true);
  const int version = SchemaVersion(*source);
  if (version == 0) throw StorageError(from.Describe() + " is not a lossguard database");
  if (version != kCopiedSchemaVersion ||
      BuiltinMigrations(from.backend).back().version != version) {
    throw StorageError(from.Describe() + " is at schema version " + std::to_string(version) +
                       ", this copy writes version " + std::to_string(kCopiedSchemaVersion) +
                       ": open it once with this build's lossguard-server to migrate it");
  }
  {
    StoreOptions create;
    create.analysis.enabled = false;
    Store destination(to, create);  // creates or migrates the schema
  }
  std::unique_ptr<Database> destination = Connect(to, /*read_only=*/false);
  CheckDestinationRuns(*source, *destination, to.Describe());
  // One snapshot of the source for every table (a server still writing would show as a count
  // mismatch below rather than as a torn copy).
  ReadTransaction snapshot(*source);
  std::vector<TableCopy> out;
  for (const Table& table : Tables()) {
    out.push_back(TableCopier(*source, *destination, table, options).Run());
    if (out.back().destination_rows != out.back().source_rows) {
      throw StorageError("copy: " + std::string(table.name) + " has " +
                         std::to_string(out.back().source_rows) + " rows in the source but " +
                         std::to_string(out.back().destination_rows) +
                         " in the destination (was the source written during the copy, or the "
                         "destination by a server?)");
    }
    if (table.identity && to.backend == Backend::kPostgres) {
      // Ids were copied as they are: new rows must be numbered after them.
      destination->Exec("SELECT setval(pg_get_serial_sequence('" + std::string(table.name) +
                        "', 'id'), COALESCE((SELECT MAX(id) FROM " + table.name +
                        "), 0) + 1, false)");
    }
  }
  return out;
}

}  // namespace lossguard::store
