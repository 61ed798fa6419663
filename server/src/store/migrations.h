#pragma once

#include <optional>
#include <string>
#include <vector>

#include "store/database.h"

namespace lossguard::store {

struct Migration {
  int version;  // from the file name, NNN_name.sql; strictly increasing
  std::string name;
  std::string sql;
  // Runs after `sql`, in the same transaction: a conversion SQL alone cannot write (v7 decodes each
  // step row's JSON with the ingest code). nullptr for most.
  void (*data)(Database& db) = nullptr;
  // The oldest schema version a server may be built for and still use a database this migration
  // brought to `version` (0: `version` itself, the default: servers built before it cannot). A
  // migration that only adds what older servers never touch (an index, a table, a nullable column
  // they do not read) says so in its file with a line `-- compatible-with: N`, and servers built
  // for N keep running on the database while newer ones migrate it (a rolling upgrade).
  int compatible_with = 0;
};

// One engine's migrations (schema/migrations/sqlite or .../postgresql), embedded at build time.
// Both engines have the same versions: a version means the same schema on either.
const std::vector<Migration>& BuiltinMigrations(Backend backend);

// Brings `db` to the last of `migrations`: each pending migration runs in its own transaction and
// is recorded in schema_version, with the database's compatible version in schema_compatibility.
// Servers that start together on one database apply each migration once (Database::LockSchema).
// A database newer than the last migration is used as it is when its compatible version is at most
// the last migration's (every newer migration declared servers of this build compatible), and
// refused otherwise (StorageError naming the versions); it is left untouched either way. Returns
// the version the database is at.
int ApplyMigrations(Database& db, const std::vector<Migration>& migrations);

// The version recorded in schema_version; 0 for a database without one.
int SchemaVersion(Database& db);

// The oldest schema version a server may be built for and still use `db`: the largest
// compatible_with of the migrations applied to it (a migration recorded before the mark existed
// counts as compatible with its own version only); 0 for a database without a schema.
int CompatibleVersion(Database& db);

// Why a server built for schema version `latest` cannot use `db`: nullopt when it can (the
// database is at most at `latest`, or every newer migration declared servers of `latest`
// compatible), else a message naming the versions.
std::optional<std::string> IncompatibleSchema(Database& db, int latest);

// Reads a migration file's `-- compatible-with: N` line; 0 when it has none. Throws
// std::invalid_argument when the line is there but N is not a version before `version`.
int DeclaredCompatibleVersion(const std::string& sql, int version);

}  // namespace lossguard::store
