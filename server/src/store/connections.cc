#include "store/connections.h"

#include <spdlog/spdlog.h>

#include "store/migrations.h"
#include "store/postgres.h"
#include "store/sqlite.h"

namespace lossguard::store {

namespace {
constexpr auto kSchemaCheckPeriod = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
    std::chrono::duration<double>(Connections::kSchemaCheckSeconds));

std::unique_ptr<Database> Connect(const StoreLocation& location, const StoreOptions& options,
                                  bool writer) {
  if (location.backend == Backend::kSqlite) {
    return std::make_unique<SqliteDatabase>(location.sqlite_path, /*read_only=*/!writer,
                                            /*create=*/writer);
  }
  PostgresOptions postgres = location.postgres;
  postgres.synchronous_commit = options.durability == Durability::kFull;
  return std::make_unique<PostgresDatabase>(postgres);
}

std::unique_ptr<Database> OpenWriter(const StoreLocation& location, const StoreOptions& options) {
  std::unique_ptr<Database> db = Connect(location, options, /*writer=*/true);
  if (location.backend == Backend::kSqlite) {
    // Only possible while the file has no table yet: a new database gives the pages of deleted
    // runs back to the file system (RunDeletion::PurgeDeleted), so that retention keeps the
    // file's size.
    if (!db->AnyTable()) db->Exec("PRAGMA auto_vacuum = INCREMENTAL");
    db->Exec("PRAGMA journal_mode = WAL");
    db->Exec(options.durability == Durability::kFull ? "PRAGMA synchronous = FULL"
                                                     : "PRAGMA synchronous = NORMAL");
    db->Exec("PRAGMA cache_size = -65536");
  }
  if (SchemaVersion(*db) == 0) {
    std::optional<std::string> table = db->AnyTable();
    // Another server may have committed the schema between the two reads: read the version again.
    if (table && SchemaVersion(*db) == 0) {
      throw StorageError(db->name() + " is not a lossguard database (it has tables, e.g. \"" +
                         *table + "\", but no schema_version); refusing to modify it");
    }
  }
  ApplyMigrations(*db, BuiltinMigrations(location.backend));
  return db;
}
}  // namespace

Connections::Connections(const StoreLocation& location, StoreOptions options)
    : location_(location),
      options_(std::move(options)),
      writer_(std::make_unique<Writer>(OpenWriter(location_, options_), options_.analysis)),
      built_for_(BuiltinMigrations(location_.backend).back().version),
      // Migrations have just looked at the schema: the first check is due a period later.
      next_schema_check_(std::chrono::steady_clock::now() + kSchemaCheckPeriod) {}

Connections::~Connections() {
  std::lock_guard lock(write_mutex_);
  DropIdleReaders();
  if (!writer_ || location_.backend != Backend::kSqlite) return;
  try {
    // Fold the WAL back into the database so that a cleanly stopped server leaves one file.
    writer_->db().Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (const StorageError& e) {
    spdlog::warn("checkpoint on close: {}", e.what());
  }
}

Writer& Connections::LiveWriter() {
  if (!writer_) {
    writer_ = std::make_unique<Writer>(OpenWriter(location_, options_), options_.analysis);
    spdlog::info("reconnected to {}", location_.Describe());
  }
  return *writer_;
}

Connections::ReadLease Connections::Read() {
  {
    std::lock_guard lock(read_mutex_);
    if (!idle_readers_.empty()) {
      std::unique_ptr<Database> db = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return ReadLease(*this, std::move(db));
    }
  }
  return ReadLease(*this, Connect(location_, options_, /*writer=*/false));
}

void Connections::DropIdleReaders() {
  std::lock_guard lock(read_mutex_);
  idle_readers_.clear();
}

void Connections::CheckSchema(Database& db) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(schema_mutex_);
    if (incompatible_) throw StorageError(*incompatible_, /*unavailable=*/true);
    if (now < next_schema_check_) return;
    next_schema_check_ = now + kSchemaCheckPeriod;
  }
  std::optional<std::string> why = IncompatibleSchema(db, built_for_);
  if (!why) return;
  std::lock_guard lock(schema_mutex_);
  if (!incompatible_) {
    incompatible_ = *why +
                    " (a newer server migrated it while this one ran): this server stores "
                    "and answers nothing more; replace it with a newer lossguard-server";
    spdlog::error("{}", *incompatible_);
  }
  throw StorageError(*incompatible_, /*unavailable=*/true);
}

Connections::ReadLease::~ReadLease() {
  if (!db_ || db_->Broken()) return;  // a lost connection is dropped: the next lease reconnects
  std::lock_guard lock(owner_.read_mutex_);
  if (static_cast<int>(owner_.idle_readers_.size()) < owner_.options_.read_connections) {
    owner_.idle_readers_.push_back(std::move(db_));
  }
}

}  // namespace lossguard::store
