#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "store/database.h"
#include "store/location.h"
#include "store/store_options.h"
#include "store/writer.h"

namespace lossguard::store {

// The store's connections to its database: one write connection, owned by a Writer (this process's
// writes are serialised), and a small pool of read connections (reads run beside a write). A
// connection lost to a restarting database is dropped and replaced on the next use.
//
// Servers may share a database while newer ones migrate it: every use looks (at most once every
// kSchemaCheckSeconds, a round trip on PostgreSQL) whether a newer server has brought the schema
// to a version this build cannot use, and from then on every use throws an unavailable
// StorageError naming the versions (the API answers 503: nothing is stored, trainers keep their
// records and retry against an upgraded server). Thread-safe.
class Connections {
 public:
  // Opens the write connection and applies pending migrations. Throws StorageError if the
  // database cannot be opened or reached, is not a lossguard database, or is newer than this build
  // (and not compatible with it).
  Connections(const StoreLocation& location, StoreOptions options);
  // On SQLite, folds the write-ahead log back into the database file.
  ~Connections();
  Connections(const Connections&) = delete;
  Connections& operator=(const Connections&) = delete;

  static constexpr double kSchemaCheckSeconds = 1;

  Backend backend() const { return location_.backend; }
  const StoreOptions& options() const { return options_; }

  // Runs `read(Database&)` on a pooled read connection. A connection lost while idle in the pool
  // (the database restarted) fails its first statement: the pool is emptied and `read` runs once
  // more on a new connection. Reads change nothing, so running one twice is harmless.
  template <typename Fn>
  auto Reading(Fn&& read);
  // Runs `write(Writer&)` under the write lock, on the write connection (reopened if the last one
  // was lost; a connection lost during `write` is dropped, with its transaction).
  template <typename Fn>
  auto Writing(Fn&& write);
  // Runs `write(Database&)` in one write transaction under the write lock: committed when it
  // returns, rolled back when it throws. Every write but the ingest's and a run's deletion goes
  // through here.
  template <typename Fn>
  auto WriteTransaction(Fn&& write);

 private:
  // A read connection borrowed from the pool, given back (unless lost) when it goes.
  class ReadLease {
   public:
    ReadLease(Connections& owner, std::unique_ptr<Database> db)
        : owner_(owner), db_(std::move(db)) {}
    ~ReadLease();
    ReadLease(ReadLease&&) noexcept = default;
    Database& operator*() { return *db_; }

   private:
    Connections& owner_;
    std::unique_ptr<Database> db_;
  };
  ReadLease Read();
  // Call with write_mutex_ held.
  Writer& LiveWriter();
  void DropIdleReaders();
  // Throws once the database's schema is one this build cannot use (see the class comment).
  void CheckSchema(Database& db);

  StoreLocation location_;
  StoreOptions options_;
  std::unique_ptr<Writer> writer_;  // guarded by write_mutex_; null after a lost connection
  std::mutex write_mutex_;
  std::mutex read_mutex_;
  std::vector<std::unique_ptr<Database>> idle_readers_;  // guarded by read_mutex_
  const int built_for_;                                  // the last schema version this build knows
  std::mutex schema_mutex_;
  std::chrono::steady_clock::time_point next_schema_check_;  // guarded by schema_mutex_
  std::optional<std::string> incompatible_;                  // guarded by schema_mutex_
};

template <typename Fn>
auto Connections::Reading(Fn&& read) {
  for (int attempt = 0;; ++attempt) {
    ReadLease db = Read();
    try {
      CheckSchema(*db);
      return read(*db);
    } catch (const StorageError& e) {
      if (attempt > 0 || !e.unavailable() || !(*db).Broken()) throw;
      DropIdleReaders();  // idle as long as this one: lost with it
    }
  }
}

template <typename Fn>
auto Connections::Writing(Fn&& write) {
  std::lock_guard lock(write_mutex_);
  Writer& writer = LiveWriter();
  try {
    CheckSchema(writer.db());
    return write(writer);
  } catch (const StorageError&) {
    if (writer.db().Broken()) writer_.reset();
    throw;
  }
}

template <typename Fn>
auto Connections::WriteTransaction(Fn&& write) {
  return Writing([&](Writer& writer) {
    Database& db = writer.db();
    Transaction transaction(db);
    if constexpr (std::is_void_v<std::invoke_result_t<Fn&, Database&>>) {
      write(db);
      transaction.Commit();
    } else {
      auto result = write(db);
      transaction.Commit();
      return result;
    }
  });
}

}  // namespace lossguard::store
