#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "lossguard/base/result.h"
#include "store/postgres.h"

namespace lossguard::store {

// Where the store keeps its data: a SQLite file, or a PostgreSQL database that several servers
// may share.
struct StoreLocation {
  Backend backend = Backend::kSqlite;
  std::filesystem::path sqlite_path;  // kSqlite
  PostgresOptions postgres;           // kPostgres

  static StoreLocation Sqlite(const std::filesystem::path& path) {
    return {Backend::kSqlite, path, {}};
  }
  // The file, or the URI without a password: what logs and messages name.
  std::string Describe() const;
};

// The --db value: postgresql://USER@HOST:PORT/DB (or postgres://...) is PostgreSQL; sqlite:PATH
// or any other text is a SQLite file path. A PostgreSQL URI that carries a password is refused:
// command lines are visible to every user of the machine (pass it in PGPASSWORD, ~/.pgpass or
// --db-password-file instead).
Result<StoreLocation, std::string> ParseStoreLocation(std::string_view text);

}  // namespace lossguard::store
