#pragma once

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
};

// One engine's migrations (schema/migrations/sqlite or .../postgresql), embedded at build time.
// Both engines have the same versions: a version means the same schema on either.
const std::vector<Migration>& BuiltinMigrations(Backend backend);

// Brings `db` to the last of `migrations`: each pending migration runs in its own transaction and
// is recorded in schema_version. Servers that start together on one database apply each migration
// once (Database::LockSchema). A database whose version is newer than the last migration is
// refused (StorageError saying both versions) and left untouched. Returns the version the database
// is at.
int ApplyMigrations(Database& db, const std::vector<Migration>& migrations);

// The version recorded in schema_version; 0 for a database without one.
int SchemaVersion(Database& db);

}  // namespace lossguard::store
