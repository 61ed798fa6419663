#pragma once

#include <string>
#include <vector>

#include "store/sqlite.h"

namespace lossguard::store {

struct Migration {
  int version;  // from the file name, NNN_name.sql; strictly increasing
  std::string name;
  std::string sql;
};

// The migrations in schema/migrations, embedded at build time.
const std::vector<Migration>& BuiltinMigrations();

// Brings `db` to the last of `migrations`: each pending migration runs in its own transaction and
// is recorded in schema_version. A database whose version is newer than the last migration is
// refused (SqliteError saying both versions) and left untouched. Returns the version the database
// is at.
int ApplyMigrations(Database& db, const std::vector<Migration>& migrations);

// The version recorded in schema_version; 0 for a database without one.
int SchemaVersion(Database& db);

}  // namespace lossguard::store
