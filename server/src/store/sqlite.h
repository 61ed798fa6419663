#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lossguard::store {

// Any SQLite failure, with the statement or path it concerns and SQLite's own message.
class SqliteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Owns one sqlite3 connection; closes it on destruction. Move-only. A connection is used by one
// thread at a time (callers serialise access).
class Database {
 public:
  // Opens (creating if `create`) the database at `path`; throws SqliteError naming the path.
  Database(const std::filesystem::path& path, bool read_only, bool create);
  ~Database();
  Database(Database&& other) noexcept;
  Database& operator=(Database&&) = delete;
  Database(const Database&) = delete;

  // Runs one or more statements with no results; throws SqliteError with the SQL's first line.
  void Exec(std::string_view sql);
  std::int64_t Changes() const;
  sqlite3* handle() const { return db_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
};

// A prepared statement, finalized on destruction. Bind indexes are 1-based, column indexes 0-based.
class Statement {
 public:
  Statement(const Database& db, std::string_view sql);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement(const Statement&) = delete;

  Statement& Bind(int index, std::int64_t value);
  Statement& Bind(int index, std::string_view text);
  Statement& BindNull(int index);
  // Stores NaN as the text 'NaN' (see schema/migrations/001_initial.sql); +-Inf as REAL.
  Statement& BindNumber(int index, double value);
  Statement& BindNumber(int index, std::optional<double> value);
  Statement& Bind(int index, std::optional<std::int64_t> value);

  // Advances; true when a row is available. Throws SqliteError on failure.
  bool Step();
  // Resets for re-execution and clears bindings.
  void Reset();

  bool IsNull(int column) const;
  std::int64_t Int(int column) const;
  std::optional<std::int64_t> OptionalInt(int column) const;
  // Reads a REAL column written by BindNumber: 'NaN' text -> NaN, NULL -> nullopt.
  std::optional<double> Number(int column) const;
  std::string_view Text(int column) const;

 private:
  void Check(int rc, const char* what) const;

  sqlite3_stmt* stmt_ = nullptr;
  sqlite3* db_ = nullptr;
};

// BEGIN IMMEDIATE on construction; rolls back on destruction unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  void Commit();

 private:
  Database& db_;
  bool done_ = false;
};

// A read transaction: every statement between construction and destruction sees one snapshot of
// the database (in WAL mode, writers go on beside it). Ends on destruction.
class ReadTransaction {
 public:
  explicit ReadTransaction(Database& db);
  ~ReadTransaction();
  ReadTransaction(const ReadTransaction&) = delete;

 private:
  Database& db_;
};

}  // namespace lossguard::store
