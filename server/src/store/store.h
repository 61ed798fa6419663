#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/alert_book.h"
#include "store/location.h"
#include "store/notify_outbox.h"
#include "store/run_deletion.h"
#include "store/run_queries.h"
#include "store/store_options.h"
#include "store/types.h"

namespace lossguard::store {

class Connections;

// lossguard's storage, on SQLite or PostgreSQL (the same SQL, schema versions and guarantees): one
// write connection (this process's writes are serialised) and a small pool of read connections
// (reads run beside a write). Several servers may share one PostgreSQL database: writers of one run
// take its lock in the database, and a server whose analyzer state of a run is older than the
// stored run rebuilds it.
//
// The store's jobs are its parts: Ingest here, and runs(), alerts(), deletion() and outbox().
// Thread-safe: any method may be called from any thread. Every method throws StorageError, with
// context, when the database fails; unavailable() ones (a PostgreSQL server restarting) stored
// nothing, and the store reconnects on the next call.
class Store {
 public:
  // Opens or creates the database and applies pending migrations. Throws StorageError if it
  // cannot be opened or reached, is not a lossguard database, or is newer than this build.
  Store(const StoreLocation& location, StoreOptions options = {});
  // A SQLite file.
  Store(const std::filesystem::path& path, StoreOptions options = {})
      : Store(StoreLocation::Sqlite(path), std::move(options)) {}
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Stores the batch in one transaction: all records or none. Returns only after the commit, so a
  // returned batch is durable per StoreOptions::durability. Records keyed (run, step, rank): an
  // identical record already stored is a duplicate (untouched); a different one replaces it.
  // New and replaced records go through the analyzers (see Analysis): the alerts they raise are
  // committed in the same transaction.
  IngestResult Ingest(const std::vector<wire::StepRecord>& records);

  // The schema version, read from the database (a real round trip: /healthz uses it).
  int SchemaVersion();
  Backend backend() const;

  RunQueries& runs() { return runs_; }
  AlertBook& alerts() { return alerts_; }
  RunDeletion& deletion() { return deletion_; }
  NotifyOutbox& outbox() { return outbox_; }

 private:
  std::unique_ptr<Connections> connections_;
  RunQueries runs_;
  AlertBook alerts_;
  RunDeletion deletion_;
  NotifyOutbox outbox_;
};

}  // namespace lossguard::store
