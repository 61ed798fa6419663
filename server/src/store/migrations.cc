#include "store/migrations.h"

#include <spdlog/spdlog.h>

#include "store/clock.h"

namespace lossguard::store {

// Generated from schema/migrations/ENGINE by cmake/EmbedMigrations.cmake.
const std::vector<Migration>& sqlite_migrations();
const std::vector<Migration>& postgresql_migrations();

// migrations_data.cc: the data steps of the built-in migrations.
void RewriteStepRowsV7(Database& db);

namespace {
std::vector<Migration> WithDataSteps(std::vector<Migration> migrations) {
  for (Migration& migration : migrations) {
    if (migration.version == 7) migration.data = RewriteStepRowsV7;
  }
  return migrations;
}
}  // namespace

const std::vector<Migration>& BuiltinMigrations(Backend backend) {
  static const std::vector<Migration> sqlite = WithDataSteps(sqlite_migrations());
  static const std::vector<Migration> postgresql = WithDataSteps(postgresql_migrations());
  return backend == Backend::kSqlite ? sqlite : postgresql;
}

int SchemaVersion(Database& db) {
  if (!db.HasTable("schema_version")) return 0;
  Statement max(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
  max.Step();
  return static_cast<int>(max.Int(0));
}

int ApplyMigrations(Database& db, const std::vector<Migration>& migrations) {
  const int latest = migrations.empty() ? 0 : migrations.back().version;
  while (true) {
    Transaction transaction(db);
    db.LockSchema();
    // Read under the lock: another server may have migrated while this one waited.
    const int current = SchemaVersion(db);
    if (current > latest) {
      throw StorageError(db.name() + " has schema version " + std::to_string(current) +
                         ", newer than this lossguard build understands (" +
                         std::to_string(latest) +
                         "); refusing to open it. Use a newer lossguard-server.");
    }
    auto next = std::find_if(migrations.begin(), migrations.end(),
                             [&](const Migration& m) { return m.version > current; });
    if (next == migrations.end()) return current;
    db.Exec(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT "
        "NULL, applied_at DOUBLE PRECISION NOT NULL)");
    try {
      db.Exec(next->sql);
      if (next->data) next->data(db);
    } catch (const StorageError& e) {
      throw StorageError(
          "migration " + std::to_string(next->version) + "_" + next->name + " failed: " + e.what(),
          e.unavailable());
    }
    Statement record(db, "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)");
    record.Bind(1, std::int64_t{next->version}).Bind(2, next->name).BindNumber(3, UnixSeconds());
    record.Step();
    transaction.Commit();
    spdlog::info("{}: applied migration {}_{}", db.name(), next->version, next->name);
  }
}

}  // namespace lossguard::store
