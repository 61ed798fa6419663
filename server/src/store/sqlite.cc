#include "store/sqlite.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

namespace lossguard::store {

namespace {
std::string FirstLine(std::string_view sql) {
  std::size_t start = sql.find_first_not_of(" \n\t");
  if (start == std::string_view::npos) return "";
  std::string_view rest = sql.substr(start);
  return std::string(rest.substr(0, std::min(rest.find('\n'), std::size_t{120})));
}
// SQLite's message, plus what the OS said when that is the real cause: a full disk reads "disk I/O
// error" or "database or disk is full" otherwise, which sends the operator looking at the drive.
std::string ErrorText(sqlite3* db, const char* sqlite_message = nullptr) {
  std::string message = sqlite_message != nullptr ? sqlite_message : sqlite3_errmsg(db);
  const int os_error = sqlite3_system_errno(db);
  // SQLITE_FULL carries no errno (SQLite clears it for short writes); an I/O error may carry one.
  if ((sqlite3_extended_errcode(db) & 0xff) == SQLITE_FULL || os_error == ENOSPC ||
      os_error == EDQUOT) {
    message += " (the disk is full: free space on the database's file system)";
  } else if (os_error == EACCES || os_error == EROFS) {
    message += " (" + std::string(std::strerror(os_error)) + ")";
  }
  return message;
}
}  // namespace

Database::Database(const std::filesystem::path& path, bool read_only, bool create) : path_(path) {
  int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (create && !read_only) flags |= SQLITE_OPEN_CREATE;
  flags |= SQLITE_OPEN_NOMUTEX;  // callers serialise use of a connection
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db_ ? ErrorText(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw SqliteError("cannot open database " + path.string() + ": " + message);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, 10'000);
}

Database::~Database() {
  if (db_ != nullptr && sqlite3_close(db_) != SQLITE_OK) {
    spdlog::error("closing {} failed: {}", path_.string(), sqlite3_errmsg(db_));
  }
}

Database::Database(Database&& other) noexcept : db_(other.db_), path_(std::move(other.path_)) {
  other.db_ = nullptr;
}

void Database::Exec(std::string_view sql) {
  char* error = nullptr;
  std::string text(sql);
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = ErrorText(db_, error);
    sqlite3_free(error);
    throw SqliteError(path_.string() + ": \"" + FirstLine(sql) + "\" failed: " + message);
  }
}

std::int64_t Database::Changes() const { return sqlite3_changes64(db_); }

Statement::Statement(const Database& db, std::string_view sql) : db_(db.handle()) {
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) {
    throw SqliteError("cannot prepare \"" + FirstLine(sql) + "\": " + ErrorText(db_));
  }
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement::Statement(Statement&& other) noexcept : stmt_(other.stmt_), db_(other.db_) {
  other.stmt_ = nullptr;
}

void Statement::Check(int rc, const char* what) const {
  if (rc != SQLITE_OK) {
    throw SqliteError(std::string(what) + " failed for \"" + FirstLine(sqlite3_sql(stmt_)) +
                      "\": " + ErrorText(db_));
  }
}

Statement& Statement::Bind(int index, std::int64_t value) {
  Check(sqlite3_bind_int64(stmt_, index, value), "bind");
  return *this;
}

Statement& Statement::Bind(int index, std::string_view text) {
  Check(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
        "bind");
  return *this;
}

Statement& Statement::BindNull(int index) {
  Check(sqlite3_bind_null(stmt_, index), "bind");
  return *this;
}

Statement& Statement::BindNumber(int index, double value) {
  if (std::isnan(value)) {
    Check(sqlite3_bind_text(stmt_, index, "NaN", 3, SQLITE_STATIC), "bind");
  } else {
    Check(sqlite3_bind_double(stmt_, index, value), "bind");
  }
  return *this;
}

Statement& Statement::BindNumber(int index, std::optional<double> value) {
  return value ? BindNumber(index, *value) : BindNull(index);
}

Statement& Statement::Bind(int index, std::optional<std::int64_t> value) {
  return value ? Bind(index, *value) : BindNull(index);
}

bool Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string message = ErrorText(db_);
  sqlite3_reset(stmt_);
  throw SqliteError("\"" + FirstLine(sqlite3_sql(stmt_)) + "\" failed: " + message);
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::optional<std::int64_t> Statement::OptionalInt(int column) const {
  if (IsNull(column)) return std::nullopt;
  return Int(column);
}

std::optional<double> Statement::Number(int column) const {
  switch (sqlite3_column_type(stmt_, column)) {
    case SQLITE_NULL:
      return std::nullopt;
    case SQLITE_TEXT:  // only ever 'NaN', written by BindNumber
      return std::numeric_limits<double>::quiet_NaN();
    default:
      return sqlite3_column_double(stmt_, column);
  }
}

std::string_view Statement::Text(int column) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  if (text == nullptr) return {};
  return {text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))};
}

Transaction::Transaction(Database& db) : db_(db) { db_.Exec("BEGIN IMMEDIATE"); }

Transaction::~Transaction() {
  if (done_) return;
  try {
    db_.Exec("ROLLBACK");
  } catch (const SqliteError& e) {
    // A failed statement may already have rolled the transaction back; that is the outcome we want.
    spdlog::warn("rollback: {}", e.what());
  }
}

void Transaction::Commit() {
  db_.Exec("COMMIT");
  done_ = true;
}

ReadTransaction::ReadTransaction(Database& db) : db_(db) { db_.Exec("BEGIN DEFERRED"); }

ReadTransaction::~ReadTransaction() {
  try {
    db_.Exec("ROLLBACK");  // nothing was written: ending it is all there is to do
  } catch (const SqliteError& e) {
    spdlog::warn("ending a read transaction: {}", e.what());
  }
}

}  // namespace lossguard::store
