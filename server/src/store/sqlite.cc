#include "store/sqlite.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

namespace lossguard::store {

namespace {
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

class SqliteStatement final : public StatementImpl {
 public:
  SqliteStatement(sqlite3* db, std::string_view sql) : db_(db) {
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc != SQLITE_OK) {
      throw SqliteError("cannot prepare \"" + SqlFirstLine(sql) + "\": " + ErrorText(db_));
    }
  }
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;

  void BindInt(int index, std::int64_t value) override {
    Check(sqlite3_bind_int64(stmt_, index, value), "bind");
  }
  void BindText(int index, std::string_view text) override {
    Check(
        sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
        "bind");
  }
  void BindNull(int index) override { Check(sqlite3_bind_null(stmt_, index), "bind"); }
  void BindBinary(int index, std::string bytes) override {
    Check(sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT), "bind");
  }
  void BindDouble(int index, double value) override {
    if (std::isnan(value)) {
      Check(sqlite3_bind_text(stmt_, index, "NaN", 3, SQLITE_STATIC), "bind");
    } else {
      Check(sqlite3_bind_double(stmt_, index, value), "bind");
    }
  }

  bool Step() override {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string message = ErrorText(db_);
    sqlite3_reset(stmt_);
    throw SqliteError("\"" + SqlFirstLine(sqlite3_sql(stmt_)) + "\" failed: " + message);
  }
  void Reset() override {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  bool IsNull(int column) const override {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  std::int64_t Int(int column) const override { return sqlite3_column_int64(stmt_, column); }
  std::optional<double> Number(int column) const override {
    switch (sqlite3_column_type(stmt_, column)) {
      case SQLITE_NULL:
        return std::nullopt;
      case SQLITE_TEXT:  // only ever 'NaN', written by BindDouble
        return std::numeric_limits<double>::quiet_NaN();
      default:
        return sqlite3_column_double(stmt_, column);
    }
  }
  std::string_view Text(int column) const override {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    if (text == nullptr) return {};
    return {text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))};
  }
  std::string Blob(int column) const override {
    const auto* bytes = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    if (bytes == nullptr) return {};
    return {bytes, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))};
  }

 private:
  void Check(int rc, const char* what) const {
    if (rc != SQLITE_OK) {
      throw SqliteError(std::string(what) + " failed for \"" + SqlFirstLine(sqlite3_sql(stmt_)) +
                        "\": " + ErrorText(db_));
    }
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};
}  // namespace

SqliteDatabase::SqliteDatabase(const std::filesystem::path& path, bool read_only, bool create)
    : name_(path.string()) {
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

SqliteDatabase::~SqliteDatabase() {
  DropCachedStatements();
  if (db_ != nullptr && sqlite3_close(db_) != SQLITE_OK) {
    spdlog::error("closing {} failed: {}", name_, sqlite3_errmsg(db_));
  }
}

void SqliteDatabase::Exec(std::string_view sql) {
  char* error = nullptr;
  std::string text(sql);
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = ErrorText(db_, error);
    sqlite3_free(error);
    throw SqliteError(name_ + ": \"" + SqlFirstLine(sql) + "\" failed: " + message);
  }
}

std::unique_ptr<StatementImpl> SqliteDatabase::Prepare(std::string_view sql) {
  return std::make_unique<SqliteStatement>(db_, sql);
}

std::int64_t SqliteDatabase::Changes() const { return sqlite3_changes64(db_); }

bool SqliteDatabase::HasTable(std::string_view table) {
  Statement exists(*this, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
  exists.Bind(1, table);
  return exists.Step();
}

std::optional<std::string> SqliteDatabase::AnyTable() {
  Statement tables(*this, "SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 1");
  if (!tables.Step()) return std::nullopt;
  return std::string(tables.Text(0));
}

}  // namespace lossguard::store
