#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lossguard::store {

// The two engines behind the store. The SQL the store runs is written once, in the dialect both
// accept (numbered parameters ?N, ON CONFLICT upserts, RETURNING); what differs lives in the
// Database implementations (sqlite.h, postgres.h) and in the per-engine migrations.
enum class Backend { kSqlite, kPostgres };

// Any storage failure, with the statement, file or server it concerns and the engine's message.
// unavailable(): the database could not be reached or dropped the connection (a restart, a network
// failure, too many connections, a deadlock it broke): nothing of the failed call was stored, and
// the same call can succeed later. The HTTP API answers those with 503.
class StorageError : public std::runtime_error {
 public:
  explicit StorageError(const std::string& message, bool unavailable = false)
      : std::runtime_error(message), unavailable_(unavailable) {}
  bool unavailable() const { return unavailable_; }

 private:
  bool unavailable_;
};

// One prepared statement of an engine. Parameters are 1-based, columns 0-based.
class StatementImpl {
 public:
  virtual ~StatementImpl() = default;
  virtual void BindInt(int index, std::int64_t value) = 0;
  virtual void BindText(int index, std::string_view text) = 0;
  virtual void BindNull(int index) = 0;
  // Any double, NaN and +-Inf included: each engine stores them so that Number() reads them back.
  virtual void BindDouble(int index, double value) = 0;
  // Bytes in the engine's binary form: a BLOB for SQLite, a binary-format parameter (e.g. an
  // array in PostgreSQL's send/receive format) for PostgreSQL.
  virtual void BindBinary(int index, std::string bytes) = 0;
  virtual bool Step() = 0;
  virtual void Reset() = 0;
  virtual bool IsNull(int column) const = 0;
  virtual std::int64_t Int(int column) const = 0;
  virtual std::optional<double> Number(int column) const = 0;
  virtual std::string_view Text(int column) const = 0;
  // The bytes of a column bound with BindBinary (a BLOB, a bytea).
  virtual std::string Blob(int column) const = 0;
};

// One connection to the database. Used by one thread at a time (callers serialise access).
class Database {
 public:
  virtual ~Database() = default;

  virtual Backend backend() const = 0;
  // The file, or the server and database (never a password): what messages name.
  virtual const std::string& name() const = 0;

  // Runs one or more statements without parameters or results; throws StorageError.
  virtual void Exec(std::string_view sql) = 0;
  virtual std::unique_ptr<StatementImpl> Prepare(std::string_view sql) = 0;
  // Rows changed by the last statement that ran on this connection.
  virtual std::int64_t Changes() const = 0;
  // The connection is lost: the caller discards it and opens a new one.
  virtual bool Broken() const = 0;

  // Starts a write transaction: SQLite takes the database's write lock at once, PostgreSQL starts
  // a READ COMMITTED transaction (writers of one run serialise on LockRun instead).
  virtual void BeginWrite() = 0;
  // Starts a read-only transaction that sees one snapshot for all its statements.
  virtual void BeginSnapshot() = 0;
  // Holds the run's lock until the transaction ends: writers of one run on several servers go one
  // after another. Lock runs in ascending id order (deadlock-free). SQLite: a no-op, its write
  // transaction excludes every other writer already.
  virtual void LockRun(std::int64_t run_id) = 0;
  // LockRun without waiting: false when another transaction holds it.
  virtual bool TryLockRun(std::int64_t run_id) = 0;
  // Serialises schema migrations of servers that start together (until the transaction ends).
  virtual void LockSchema() = 0;

  virtual bool HasTable(std::string_view table) = 0;
  // The name of some table in the database, if it has any (telling a foreign database apart).
  virtual std::optional<std::string> AnyTable() = 0;

  // A statement kept by the connection for CachedStatement.
  struct KeptStatement {
    std::unique_ptr<StatementImpl> statement;
    bool in_use = false;
  };
  // The statement for `sql`, prepared on this connection at its first use and kept while the
  // connection lives, reset and marked in use. Throws std::logic_error when it is in use already
  // (a CachedStatement of the same SQL alive: their binds and rows would mix).
  KeptStatement& TakeCached(std::string_view sql);

 protected:
  // Derived destructors call it before they close the connection the kept statements belong to.
  void DropCachedStatements() noexcept { cached_.clear(); }

 private:
  std::map<std::string, KeptStatement, std::less<>> cached_;  // nodes never move: kept references
};

// The SQL's first line (at most 120 characters), for error messages.
std::string SqlFirstLine(std::string_view sql);

// "(?, ?), (?, ?)" for `rows` rows of `columns` parameters: a multi-row VALUES list.
std::string SqlValuesRows(std::size_t rows, std::size_t columns);

// A prepared statement with chained binds, whatever the engine. Statements the store runs again
// and again are CachedStatements; a Statement of its own is for SQL made for one use (a statement
// built from a table name or a row count that varies).
class Statement {
 public:
  Statement(Database& db, std::string_view sql) : owned_(db.Prepare(sql)), impl_(owned_.get()) {}
  Statement(Statement&&) = default;
  Statement& operator=(Statement&&) = default;

  Statement& Bind(int index, std::int64_t value) {
    impl_->BindInt(index, value);
    return *this;
  }
  Statement& Bind(int index, std::string_view text) {
    impl_->BindText(index, text);
    return *this;
  }
  Statement& Bind(int index, const char* text) { return Bind(index, std::string_view(text)); }
  Statement& Bind(int index, const std::string& text) {
    return Bind(index, std::string_view(text));
  }
  Statement& BindNull(int index) {
    impl_->BindNull(index);
    return *this;
  }
  Statement& BindBinary(int index, std::string bytes) {
    impl_->BindBinary(index, std::move(bytes));
    return *this;
  }
  Statement& BindNumber(int index, double value) {
    impl_->BindDouble(index, value);
    return *this;
  }
  Statement& BindNumber(int index, std::optional<double> value) {
    return value ? BindNumber(index, *value) : BindNull(index);
  }
  Statement& Bind(int index, std::optional<std::int64_t> value) {
    return value ? Bind(index, *value) : BindNull(index);
  }
  Statement& Bind(int index, std::optional<std::string_view> value) {
    return value ? Bind(index, *value) : BindNull(index);
  }

  // Advances; true when a row is available. Throws StorageError on failure.
  bool Step() { return impl_->Step(); }
  // Resets for re-execution and clears bindings.
  void Reset() { impl_->Reset(); }

  bool IsNull(int column) const { return impl_->IsNull(column); }
  std::int64_t Int(int column) const { return impl_->Int(column); }
  std::optional<std::int64_t> OptionalInt(int column) const {
    if (IsNull(column)) return std::nullopt;
    return Int(column);
  }
  // A number written by BindNumber (NaN and +-Inf included); NULL -> nullopt.
  std::optional<double> Number(int column) const { return impl_->Number(column); }
  std::string_view Text(int column) const { return impl_->Text(column); }
  std::string Blob(int column) const { return impl_->Blob(column); }

 protected:
  // A statement someone else keeps (Database's cache).
  explicit Statement(StatementImpl& kept) : impl_(&kept) {}

 private:
  std::unique_ptr<StatementImpl> owned_;
  StatementImpl* impl_;
};

// The store's statement for SQL it runs more than once: prepared once per connection and kept
// (Database::TakeCached), reset when this is made and again when it goes, so that every use
// starts without bindings and no use leaves rows or a SQLite read snapshot behind. In a loop,
// Reset() between executions. Not copyable or movable: one scope, one use.
class CachedStatement : public Statement {
 public:
  CachedStatement(Database& db, std::string_view sql) : CachedStatement(db.TakeCached(sql)) {}
  ~CachedStatement() {
    Reset();
    kept_.in_use = false;
  }
  CachedStatement(const CachedStatement&) = delete;
  CachedStatement& operator=(const CachedStatement&) = delete;

 private:
  explicit CachedStatement(Database::KeptStatement& kept)
      : Statement(*kept.statement), kept_(kept) {}
  Database::KeptStatement& kept_;
};

// A write transaction (Database::BeginWrite); rolls back on destruction unless Commit() succeeded.
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
// the database (writers go on beside it). Ends on destruction.
class ReadTransaction {
 public:
  explicit ReadTransaction(Database& db);
  ~ReadTransaction();
  ReadTransaction(const ReadTransaction&) = delete;

 private:
  Database& db_;
};

}  // namespace lossguard::store
