#include "server/store_fixtures.h"

#include "store/postgres.h"
#include "store/sqlite.h"
#include "support/postgres_server.h"

namespace lossguard::store {
void PrintTo(Backend backend, std::ostream* out) {
  *out << (backend == Backend::kSqlite ? "SQLite" : "PostgreSQL");
}
}  // namespace lossguard::store

namespace lossguard::testing {

store::Alert MakeAlert(const std::string& run, analyzers::Kind kind, analyzers::Severity severity,
                       const std::string& message) {
  store::Alert alert;
  alert.run = run;
  alert.kind = kind;
  alert.severity = severity;
  alert.state = analyzers::AlertState::kOpen;
  alert.message = message;
  return alert;
}

const store::StoreLocation& EngineTest::Location() {
  if (!location_) location_ = AnotherLocation();
  return *location_;
}

store::StoreLocation EngineTest::AnotherLocation() {
  static int databases = 0;
  ++databases;
  if (GetParam() == store::Backend::kSqlite)
    return store::StoreLocation::Sqlite(dir_.File("db_" + std::to_string(databases)));
  store::StoreLocation location;
  location.backend = store::Backend::kPostgres;
  location.postgres.uri =
      PostgresServer::Shared().CreateDatabase("store_" + std::to_string(databases));
  return location;
}

std::unique_ptr<store::Store> EngineTest::Open(store::StoreOptions options) {
  return std::make_unique<store::Store>(Location(), std::move(options));
}

std::unique_ptr<store::Database> EngineTest::Connect() {
  if (GetParam() == store::Backend::kSqlite) {
    return std::make_unique<store::SqliteDatabase>(Location().sqlite_path, false,
                                                   /*create=*/true);
  }
  return std::make_unique<store::PostgresDatabase>(Location().postgres);
}

std::string BackendName(const ::testing::TestParamInfo<store::Backend>& info) {
  return info.param == store::Backend::kSqlite ? "SQLite" : "PostgreSQL";
}

}  // namespace lossguard::testing
