#include "store/migrations.h"

#include <spdlog/spdlog.h>

#include "store/clock.h"

namespace lossguard::store {

int SchemaVersion(Database& db) {
  Statement exists(db,
                   "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'");
  if (!exists.Step()) return 0;
  Statement max(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
  max.Step();
  return static_cast<int>(max.Int(0));
}

int ApplyMigrations(Database& db, const std::vector<Migration>& migrations) {
  int latest = migrations.empty() ? 0 : migrations.back().version;
  int current = SchemaVersion(db);
  if (current > latest) {
    throw SqliteError(db.path().string() + " has schema version " + std::to_string(current) +
                      ", newer than this lossguard build understands (" + std::to_string(latest) +
                      "); refusing to open it. Use a newer lossguard-server.");
  }
  for (const Migration& migration : migrations) {
    if (migration.version <= current) continue;
    Transaction transaction(db);
    db.Exec(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT "
        "NULL, "
        "applied_at REAL NOT NULL)");
    try {
      db.Exec(migration.sql);
    } catch (const SqliteError& e) {
      throw SqliteError("migration " + std::to_string(migration.version) + "_" + migration.name +
                        " failed: " + e.what());
    }
    Statement record(db, "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)");
    double now = UnixSeconds();
    record.Bind(1, std::int64_t{migration.version}).Bind(2, migration.name).BindNumber(3, now);
    record.Step();
    transaction.Commit();
    spdlog::info("{}: applied migration {}_{}", db.path().string(), migration.version,
                 migration.name);
    current = migration.version;
  }
  return current;
}

}  // namespace lossguard::store
