#include "store/postgres.h"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

namespace lossguard::store {

namespace {

// SQLSTATEs after which the same call can succeed later: connection failures (class 08), the
// server shutting down or starting (57P01-57P03), too many connections, a serialisation failure or
// a deadlock the server broke, a lock it could not get in time.
bool TransientState(std::string_view state) {
  return state.substr(0, 2) == "08" || state == "57P01" || state == "57P02" || state == "57P03" ||
         state == "53300" || state == "40001" || state == "40P01" || state == "55P03";
}

std::string Trimmed(const char* message) {
  std::string text = message != nullptr ? message : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// The store's SQL numbers its parameters as SQLite does (?N, or ? for one more than the largest so
// far); PostgreSQL wants $N. Quoted strings and identifiers are left alone. Returns the SQL and
// the number of parameters.
std::pair<std::string, int> NumberedParameters(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int largest = 0;
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      out += c;
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      continue;
    }
    if (c != '?') {
      out += c;
      continue;
    }
    std::size_t end = i + 1;
    while (end < sql.size() && sql[end] >= '0' && sql[end] <= '9') ++end;
    int index = largest + 1;
    if (end > i + 1) std::from_chars(sql.data() + i + 1, sql.data() + end, index);
    largest = std::max(largest, index);
    out += '$' + std::to_string(index);
    i = end - 1;
  }
  return {out, largest};
}

class PostgresStatement final : public StatementImpl {
 public:
  PostgresStatement(PostgresDatabase& db, std::string statement, int parameters,
                    std::string first_line)
      : db_(db),
        statement_(std::move(statement)),
        first_line_(std::move(first_line)),
        values_(static_cast<std::size_t>(parameters)),
        bound_(static_cast<std::size_t>(parameters), false),
        lengths_(static_cast<std::size_t>(parameters), 0),
        formats_(static_cast<std::size_t>(parameters), 0) {}
  ~PostgresStatement() override { PQclear(result_); }
  PostgresStatement(const PostgresStatement&) = delete;

  void BindInt(int index, std::int64_t value) override { Set(index, std::to_string(value)); }
  void BindText(int index, std::string_view text) override { Set(index, std::string(text)); }
  void BindNull(int index) override {
    Slot(index);
    bound_[static_cast<std::size_t>(index - 1)] = false;
  }
  void BindDouble(int index, double value) override { Set(index, PostgresNumberText(value)); }
  void BindBinary(int index, std::string bytes) override {
    Set(index, std::move(bytes));
    formats_[static_cast<std::size_t>(index - 1)] = 1;
  }

  bool Step() override {
    if (result_ == nullptr) {
      std::vector<const char*> pointers(values_.size(), nullptr);
      for (std::size_t i = 0; i < values_.size(); ++i) {
        if (bound_[i]) pointers[i] = values_[i].data();
        lengths_[i] = static_cast<int>(values_[i].size());  // read for binary ones only
      }
      result_ = db_.ExecutePrepared(statement_, first_line_, static_cast<int>(pointers.size()),
                                    pointers.data(), lengths_.data(), formats_.data());
      rows_ = PQntuples(result_);
      row_ = 0;
    } else if (row_ < rows_) {
      ++row_;
    }
    return row_ < rows_;
  }
  void Reset() override {
    PQclear(result_);
    result_ = nullptr;
    std::fill(bound_.begin(), bound_.end(), false);
    std::fill(formats_.begin(), formats_.end(), 0);
  }

  bool IsNull(int column) const override { return PQgetisnull(result_, row_, column) != 0; }
  std::int64_t Int(int column) const override {
    std::string_view text = Text(column);
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) {
      throw PostgresError("\"" + first_line_ + "\": column " + std::to_string(column) +
                          " is not an integer: \"" + std::string(text) + "\"");
    }
    return value;
  }
  std::optional<double> Number(int column) const override {
    if (IsNull(column)) return std::nullopt;
    // strtod reads PostgreSQL's NaN, Infinity and -Infinity as well as its shortest round-trip
    // digits (extra_float_digits = 1).
    const char* text = PQgetvalue(result_, row_, column);
    char* end = nullptr;
    double value = std::strtod(text, &end);
    if (end == text) {
      throw PostgresError("\"" + first_line_ + "\": column " + std::to_string(column) +
                          " is not a number: \"" + text + "\"");
    }
    return value;
  }
  std::string_view Text(int column) const override {
    if (result_ == nullptr || row_ >= rows_) return {};
    return {PQgetvalue(result_, row_, column),
            static_cast<std::size_t>(PQgetlength(result_, row_, column))};
  }
  // Results come in text format, where bytea is backslash, x and two hex digits a byte
  // (bytea_output = hex, PostgreSQL's default since 9.0).
  std::string Blob(int column) const override {
    std::string_view text = Text(column);
    if (text.substr(0, 2) != "\\x" || text.size() % 2 != 0) {
      throw PostgresError("\"" + first_line_ + "\": column " + std::to_string(column) +
                          " is not bytea in hex form");
    }
    const auto nibble = [&](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      throw PostgresError("\"" + first_line_ + "\": column " + std::to_string(column) +
                          " has a non-hex digit in its bytea");
    };
    std::string out;
    out.reserve(text.size() / 2 - 1);
    for (std::size_t i = 2; i < text.size(); i += 2)
      out += static_cast<char>(nibble(text[i]) << 4 | nibble(text[i + 1]));
    return out;
  }

 private:
  std::string& Slot(int index) {
    if (index < 1 || index > static_cast<int>(values_.size())) {
      throw PostgresError("bind: \"" + first_line_ + "\" has no parameter " +
                          std::to_string(index));
    }
    return values_[static_cast<std::size_t>(index - 1)];
  }
  void Set(int index, std::string value) {
    Slot(index) = std::move(value);
    bound_[static_cast<std::size_t>(index - 1)] = true;
    formats_[static_cast<std::size_t>(index - 1)] = 0;
  }

  PostgresDatabase& db_;
  std::string statement_;
  std::string first_line_;
  std::vector<std::string> values_;
  std::vector<bool> bound_;  // unbound parameters are NULL, as in SQLite
  std::vector<int> lengths_;
  std::vector<int> formats_;  // 0 text, 1 binary
  PGresult* result_ = nullptr;
  int rows_ = 0;
  int row_ = 0;
};

}  // namespace

std::string PostgresNumberText(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest round trip
  return std::string(buffer, end);
}

std::string RedactPostgresUri(std::string_view uri) {
  // postgresql://user:secret@host/db -> postgresql://user:***@host/db; also ?password=...
  std::string out(uri);
  const std::size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const std::size_t start = scheme + 3;
    const std::size_t at = out.find('@', start);
    const std::size_t colon = out.find(':', start);
    const std::size_t slash = out.find('/', start);
    if (at != std::string::npos && colon != std::string::npos && colon < at &&
        (slash == std::string::npos || at < slash)) {
      out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (std::size_t p = out.find("password="); p != std::string::npos;
       p = out.find("password=", p + 1)) {
    const std::size_t value = p + 9;
    const std::size_t end = out.find('&', value);
    out.replace(value, end == std::string::npos ? std::string::npos : end - value, "***");
  }
  return out;
}

PostgresDatabase::PostgresDatabase(const PostgresOptions& options)
    : name_(RedactPostgresUri(options.uri)) {
  // connect_timeout and application_name first: the URI's own values override them; the password
  // file's password last, over anything.
  std::vector<const char*> keys = {"connect_timeout", "application_name", "dbname"};
  std::vector<const char*> values = {"10", "lossguard-server", options.uri.c_str()};
  if (options.password) {
    keys.push_back("password");
    values.push_back(options.password->c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    std::string message = conn_ ? Trimmed(PQerrorMessage(conn_)) : "out of memory";
    PQfinish(conn_);
    conn_ = nullptr;
    throw PostgresError("cannot connect to PostgreSQL at " + name_ + ": " + message,
                        /*unavailable=*/true);
  }
  Exec(std::string("SET synchronous_commit = ") + (options.synchronous_commit ? "on" : "off") +
       "; SET client_min_messages = warning; SET extra_float_digits = 1; SET bytea_output = hex; "
       "SET lock_timeout = " +
       std::to_string(options.lock_timeout_ms) + "; SET idle_in_transaction_session_timeout = " +
       std::to_string(options.idle_in_transaction_timeout_ms));
}

PostgresDatabase::~PostgresDatabase() {
  DropCachedStatements();
  PQfinish(conn_);
}

bool PostgresDatabase::Broken() const {
  return conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD;
}

void PostgresDatabase::Check(PGresult* result, std::string_view what) {
  const ExecStatusType status = result ? PQresultStatus(result) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return;
  std::string message = result ? Trimmed(PQresultErrorMessage(result)) : "";
  if (message.empty()) message = Trimmed(PQerrorMessage(conn_));
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const bool unavailable = Broken() || (state != nullptr && TransientState(state));
  PQclear(result);
  throw PostgresError(name_ + ": \"" + std::string(what) + "\" failed: " + message, unavailable);
}

void PostgresDatabase::Exec(std::string_view sql) {
  PGresult* result = PQexec(conn_, std::string(sql).c_str());
  Check(result, SqlFirstLine(sql));
  changes_ = std::atoll(PQcmdTuples(result));
  PQclear(result);
}

std::unique_ptr<StatementImpl> PostgresDatabase::Prepare(std::string_view sql) {
  auto it = prepared_.find(std::string(sql));
  if (it == prepared_.end()) {
    auto [text, parameters] = NumberedParameters(sql);
    std::string statement = "lg" + std::to_string(prepared_.size());
    PGresult* result = PQprepare(conn_, statement.c_str(), text.c_str(), 0, nullptr);
    Check(result, "prepare " + SqlFirstLine(sql));
    PQclear(result);
    it = prepared_.emplace(std::string(sql), Prepared{statement, parameters}).first;
  }
  return std::make_unique<PostgresStatement>(*this, it->second.statement, it->second.parameters,
                                             SqlFirstLine(sql));
}

PGresult* PostgresDatabase::ExecutePrepared(const std::string& statement,
                                            const std::string& sql_first_line, int count,
                                            const char* const* values, const int* lengths,
                                            const int* formats) {
  PGresult* result = PQexecPrepared(conn_, statement.c_str(), count, values, lengths, formats,
                                    /*text results=*/0);
  Check(result, sql_first_line);
  changes_ = std::atoll(PQcmdTuples(result));
  return result;
}

void PostgresDatabase::LockRun(std::int64_t run_id) {
  Statement lock(*this, "SELECT pg_advisory_xact_lock(?1)");
  lock.Bind(1, run_id).Step();
}

bool PostgresDatabase::TryLockRun(std::int64_t run_id) {
  Statement lock(*this, "SELECT pg_try_advisory_xact_lock(?1)");
  lock.Bind(1, run_id).Step();
  return lock.Text(0) == "t";
}

void PostgresDatabase::LockSchema() {
  // The two-key form: a lock space apart from the runs' one-key locks. 0x6c6f7373 is "loss".
  Exec("SELECT pg_advisory_xact_lock(1819243379, 1)");
}

bool PostgresDatabase::HasTable(std::string_view table) {
  Statement exists(*this,
                   "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND "
                   "tablename = CAST(?1 AS TEXT)");
  exists.Bind(1, table);
  return exists.Step();
}

std::optional<std::string> PostgresDatabase::AnyTable() {
  Statement tables(*this,
                   "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = "
                   "current_schema() LIMIT 1");
  if (!tables.Step()) return std::nullopt;
  return std::string(tables.Text(0));
}

}  // namespace lossguard::store
