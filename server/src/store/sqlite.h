#pragma once

#include <sqlite3.h>

#include <filesystem>

#include "store/database.h"

namespace lossguard::store {

// Any SQLite failure, with the statement or path it concerns and SQLite's own message.
class SqliteError : public StorageError {
 public:
  using StorageError::StorageError;
};

// Owns one sqlite3 connection; closes it on destruction. NaN is stored as the text 'NaN' (see
// schema/migrations/sqlite/001_initial.sql); +-Inf as REAL.
class SqliteDatabase final : public Database {
 public:
  // Opens (creating if `create`) the database at `path`; throws SqliteError naming the path.
  SqliteDatabase(const std::filesystem::path& path, bool read_only, bool create);
  ~SqliteDatabase() override;
  SqliteDatabase(const SqliteDatabase&) = delete;

  Backend backend() const override { return Backend::kSqlite; }
  const std::string& name() const override { return name_; }
  void Exec(std::string_view sql) override;
  std::unique_ptr<StatementImpl> Prepare(std::string_view sql) override;
  std::int64_t Changes() const override;
  bool Broken() const override { return false; }
  void BeginWrite() override { Exec("BEGIN IMMEDIATE"); }
  void BeginSnapshot() override { Exec("BEGIN DEFERRED"); }
  void LockRun(std::int64_t) override {}
  bool TryLockRun(std::int64_t) override { return true; }
  void LockSchema() override {}
  bool HasTable(std::string_view table) override;
  std::optional<std::string> AnyTable() override;

  sqlite3* handle() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::string name_;
};

}  // namespace lossguard::store
