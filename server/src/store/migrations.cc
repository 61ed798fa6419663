#include "store/migrations.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <string_view>

#include "store/clock.h"

namespace lossguard::store {

// Generated from schema/migrations/ENGINE by cmake/EmbedMigrations.cmake.
const std::vector<Migration>& sqlite_migrations();
const std::vector<Migration>& postgresql_migrations();

// migrations_data.cc: the data steps of the built-in migrations.
void RewriteStepRowsV7(Database& db);

namespace {
// The embedded files, with their data steps and declared compatibility.
std::vector<Migration> Completed(std::vector<Migration> migrations) {
  for (Migration& migration : migrations) {
    if (migration.version == 7) migration.data = RewriteStepRowsV7;
    migration.compatible_with = DeclaredCompatibleVersion(migration.sql, migration.version);
  }
  return migrations;
}

int CompatibleWith(const Migration& migration) {
  return migration.compatible_with > 0 ? migration.compatible_with : migration.version;
}

// The table is the runner's, not a migration's: servers built before it existed ignore it.
void CreateBookkeeping(Database& db) {
  db.Exec(
      "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT "
      "NULL, applied_at DOUBLE PRECISION NOT NULL)");
  db.Exec(
      "CREATE TABLE IF NOT EXISTS schema_compatibility (version INTEGER PRIMARY KEY, "
      "compatible_version INTEGER NOT NULL)");
}

// Why a database at schema version `current`, usable by servers built for `compatible` and later,
// cannot be used by a server built for `latest`; nullopt if it can.
std::optional<std::string> Incompatibility(const std::string& db_name, int current, int compatible,
                                           int latest) {
  if (current <= latest || compatible <= latest) return std::nullopt;
  return db_name + " has schema version " + std::to_string(current) +
         ", newer than this lossguard build understands (" + std::to_string(latest) +
         "), and servers built for versions before " + std::to_string(compatible) +
         " cannot use it";
}
}  // namespace

int DeclaredCompatibleVersion(const std::string& sql, int version) {
  static constexpr std::string_view kMark = "-- compatible-with:";
  const std::size_t at = sql.find(kMark);
  if (at == std::string::npos) return 0;
  const std::size_t end = sql.find('\n', at);
  const std::string value = sql.substr(
      at + kMark.size(), end == std::string::npos ? std::string::npos : end - at - kMark.size());
  std::size_t used = 0;
  int declared = 0;
  try {
    declared = std::stoi(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || value.find_first_not_of(" \t\r", used) != std::string::npos || declared < 1 ||
      declared > version) {
    throw std::invalid_argument("migration " + std::to_string(version) + ": \"" +
                                std::string(kMark) + value + "\" is not a version from 1 to " +
                                std::to_string(version));
  }
  return declared;
}

const std::vector<Migration>& BuiltinMigrations(Backend backend) {
  static const std::vector<Migration> sqlite = Completed(sqlite_migrations());
  static const std::vector<Migration> postgresql = Completed(postgresql_migrations());
  return backend == Backend::kSqlite ? sqlite : postgresql;
}

int SchemaVersion(Database& db) {
  if (!db.HasTable("schema_version")) return 0;
  Statement max(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
  max.Step();
  return static_cast<int>(max.Int(0));
}

int CompatibleVersion(Database& db) {
  const int version = SchemaVersion(db);
  if (version == 0 || !db.HasTable("schema_compatibility")) return version;
  Statement compatible(db,
                       "SELECT compatible_version FROM schema_compatibility WHERE version = ?1");
  compatible.Bind(1, std::int64_t{version});
  return compatible.Step() ? static_cast<int>(compatible.Int(0)) : version;
}

std::optional<std::string> IncompatibleSchema(Database& db, int latest) {
  const int current = SchemaVersion(db);
  if (current <= latest) return std::nullopt;
  return Incompatibility(db.name(), current, CompatibleVersion(db), latest);
}

int ApplyMigrations(Database& db, const std::vector<Migration>& migrations) {
  const int latest = migrations.empty() ? 0 : migrations.back().version;
  while (true) {
    Transaction transaction(db);
    db.LockSchema();
    // Read under the lock: another server may have migrated while this one waited.
    const int current = SchemaVersion(db);
    if (current > latest) {
      const int compatible = CompatibleVersion(db);
      if (std::optional<std::string> why = Incompatibility(db.name(), current, compatible, latest))
        throw StorageError(*why + "; refusing to open it. Use a newer lossguard-server.");
      spdlog::info(
          "{}: schema version {} is newer than this build's {}, and compatible with it (back to "
          "{}): using it as it is",
          db.name(), current, latest, compatible);
      return current;
    }
    auto next = std::find_if(migrations.begin(), migrations.end(),
                             [&](const Migration& m) { return m.version > current; });
    if (next == migrations.end()) return current;
    // Read before the migration runs: the compatibility of the version it starts from.
    const int compatible_before = current == 0 ? 0 : CompatibleVersion(db);
    CreateBookkeeping(db);
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
    // Servers that could use the database before it still can only if the migration says so.
    Statement compatibility(
        db, "INSERT INTO schema_compatibility (version, compatible_version) VALUES (?1, ?2)");
    compatibility.Bind(1, std::int64_t{next->version})
        .Bind(2, std::int64_t{std::max(compatible_before, CompatibleWith(*next))})
        .Step();
    transaction.Commit();
    spdlog::info("{}: applied migration {}_{}", db.name(), next->version, next->name);
  }
}

}  // namespace lossguard::store
