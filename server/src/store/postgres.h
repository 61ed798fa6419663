#pragma once

#include <optional>
#include <string>
#include <unordered_map>

#include "store/database.h"

struct pg_conn;
struct pg_result;

namespace lossguard::store {

// Any PostgreSQL failure, with the statement or server it concerns and the server's own message.
class PostgresError : public StorageError {
 public:
  using StorageError::StorageError;
};

struct PostgresOptions {
  // A libpq connection URI: postgresql://USER@HOST:PORT/DB[?sslmode=...]. A password in it is
  // refused (it would show in `ps` and in logs): see `password`.
  std::string uri;
  // From --db-password-file; without it libpq reads PGPASSWORD or ~/.pgpass as usual.
  std::optional<std::string> password;
  // off: a commit returns before its WAL reaches the disk (lossguard's --sync normal): a crash of
  // the database server or machine may lose the last moments of acknowledged batches.
  bool synchronous_commit = true;
  // A batch waiting this long for its run's lock (another server's transaction holds it) fails as
  // unavailable (503, retried by the client) instead of hanging its request.
  int lock_timeout_ms = 30'000;
  // A transaction of ours left idle this long (a server stopped mid-batch with SIGSTOP, a hung
  // host) is ended by PostgreSQL, releasing the run locks it held.
  int idle_in_transaction_timeout_ms = 60'000;
};

// A double as PostgreSQL's float8 input reads it back exactly: shortest round-trip digits, NaN,
// Infinity, -Infinity.
std::string PostgresNumberText(double value);

// The URI with any password masked: what logs and errors may show.
std::string RedactPostgresUri(std::string_view uri);

// One libpq connection. Statements are prepared on the server once per connection (cached by
// their SQL) and return their rows whole. Throws PostgresError: unavailable() when the server
// cannot be reached or dropped the connection (Broken() then), or when it broke a deadlock or
// refused a connection for now.
class PostgresDatabase final : public Database {
 public:
  explicit PostgresDatabase(const PostgresOptions& options);
  ~PostgresDatabase() override;
  PostgresDatabase(const PostgresDatabase&) = delete;

  Backend backend() const override { return Backend::kPostgres; }
  const std::string& name() const override { return name_; }
  void Exec(std::string_view sql) override;
  std::unique_ptr<StatementImpl> Prepare(std::string_view sql) override;
  std::int64_t Changes() const override { return changes_; }
  bool Broken() const override;
  void BeginWrite() override { Exec("BEGIN"); }
  void BeginSnapshot() override { Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); }
  void LockRun(std::int64_t run_id) override;
  bool TryLockRun(std::int64_t run_id) override;
  void LockSchema() override;
  bool HasTable(std::string_view table) override;
  std::optional<std::string> AnyTable() override;

  // For PostgresStatement: runs the prepared statement `statement` with parameters (nullptr for
  // NULL; formats[i] 0 for text, 1 for binary of lengths[i] bytes); returns its result (the caller
  // PQclear()s it) or throws PostgresError.
  pg_result* ExecutePrepared(const std::string& statement, const std::string& sql_first_line,
                             int count, const char* const* values, const int* lengths,
                             const int* formats);

 private:
  struct Prepared {
    std::string statement;
    int parameters;
  };
  // Throws PostgresError for a failed result (and clears it).
  void Check(pg_result* result, std::string_view what);

  pg_conn* conn_ = nullptr;
  std::string name_;
  std::int64_t changes_ = 0;
  std::unordered_map<std::string, Prepared> prepared_;
};

}  // namespace lossguard::store
