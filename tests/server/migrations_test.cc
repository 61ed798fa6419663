#include "store/migrations.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "store/sqlite.h"
#include "store/store.h"
#include "support/postgres_server.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::store {
namespace migrations_test {

using lossguard::testing::TempDir;
using ::testing::HasSubstr;

const std::vector<Migration> kV1 = {
    {1, "people", "CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada');"}};
const std::vector<Migration> kV2 = {
    kV1[0], {2, "ages", "ALTER TABLE people ADD COLUMN age INTEGER DEFAULT 36;"}};

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(Migrations, OlderDatabaseIsUpgradedAndKeepsItsData) {
  TempDir dir;
  {
    SqliteDatabase db(dir.File("db"), false, true);
    EXPECT_EQ(ApplyMigrations(db, kV1), 1);
  }
  SqliteDatabase db(dir.File("db"), false, false);
  EXPECT_EQ(ApplyMigrations(db, kV2), 2);
  EXPECT_EQ(SchemaVersion(db), 2);
  Statement row(db, "SELECT name, age FROM people");
  ASSERT_TRUE(row.Step());
  EXPECT_EQ(row.Text(0), "ada");
  EXPECT_EQ(row.Int(1), 36);
  EXPECT_EQ(ApplyMigrations(db, kV2), 2) << "applying again is a no-op";
}

// A v3 database with alerts (before re-judging keyed alerts by attempt) upgrades in place: its
// alerts keep their ids and become attempt 0, and an episode of a new attempt may share a first
// step with an old one.
TEST(Migrations, AlertsOfAVersion3DatabaseBecomeAttemptZero) {
  TempDir dir;
  std::vector<Migration> v3(BuiltinMigrations(Backend::kSqlite).begin(),
                            BuiltinMigrations(Backend::kSqlite).begin() + 3);
  ASSERT_EQ(v3.back().version, 3);
  {
    SqliteDatabase db(dir.File("db"), false, true);
    ApplyMigrations(db, v3);
    db.Exec(
        "INSERT INTO runs (id, name, first_seen, last_seen) VALUES (1, 'r', 0, 0);"
        "INSERT INTO alerts (run_id, kind, severity, state, first_step, last_step, message, "
        "opened_at, updated_at) VALUES (1, 'nonfinite', 'critical', 'open', 185, 185, 'm', 0, 0)");
  }
  SqliteDatabase db(dir.File("db"), false, false);
  EXPECT_GE(ApplyMigrations(db, BuiltinMigrations(Backend::kSqlite)), 4);
  Statement alert(db, "SELECT id, attempt FROM alerts");
  ASSERT_TRUE(alert.Step());
  EXPECT_EQ(alert.Int(0), 1);
  EXPECT_EQ(alert.Int(1), 0);
  alert.Reset();
  db.Exec(
      "INSERT INTO alerts (run_id, kind, severity, state, first_step, last_step, message, "
      "opened_at, updated_at, attempt) VALUES (1, 'nonfinite', 'critical', 'open', 185, 185, 'm', "
      "0, 0, 1)");
  EXPECT_THROW(db.Exec("INSERT INTO alerts (run_id, kind, severity, state, first_step, last_step, "
                       "message, opened_at, updated_at, attempt) VALUES (1, 'nonfinite', "
                       "'critical', 'open', 185, 185, 'm', 0, 0, 1)"),
               StorageError)
      << "one episode per (run, kind, rank, first_step, attempt)";
}

TEST(Migrations, NewerDatabaseIsRefusedAndLeftUntouched) {
  TempDir dir;
  {
    SqliteDatabase db(dir.File("db"), false, true);
    db.Exec("PRAGMA journal_mode = DELETE");
    ApplyMigrations(db, kV2);
  }
  std::string before = ReadFile(dir.File("db"));
  {
    SqliteDatabase db(dir.File("db"), false, false);
    EXPECT_THAT([&] { ApplyMigrations(db, kV1); },
                ::testing::ThrowsMessage<StorageError>(
                    HasSubstr("schema version 2, newer than this lossguard build")));
  }
  EXPECT_EQ(ReadFile(dir.File("db")), before);
}

TEST(Migrations, FailingMigrationRollsBackToThePreviousVersion) {
  TempDir dir;
  SqliteDatabase db(dir.File("db"), false, true);
  ApplyMigrations(db, kV1);
  std::vector<Migration> broken = {
      kV1[0], {2, "broken", "ALTER TABLE people ADD COLUMN x INTEGER; SELECT * FROM nope;"}};
  EXPECT_THAT([&] { ApplyMigrations(db, broken); },
              ::testing::ThrowsMessage<StorageError>(HasSubstr("migration 2_broken failed")));
  EXPECT_EQ(SchemaVersion(db), 1);
  EXPECT_THROW(Statement(db, "SELECT x FROM people"), StorageError)
      << "the half-applied column is rolled back";
}

TEST(Migrations, BuiltinMigrationsAreNumberedInOrder) {
  const auto& migrations = BuiltinMigrations(Backend::kSqlite);
  ASSERT_FALSE(migrations.empty());
  for (std::size_t i = 0; i < migrations.size(); ++i)
    EXPECT_EQ(migrations[i].version, static_cast<int>(i + 1));
}

// A schema version means the same schema on either engine: the same numbers and names.
TEST(Migrations, BothEnginesHaveTheSameVersions) {
  const auto& sqlite = BuiltinMigrations(Backend::kSqlite);
  const auto& postgres = BuiltinMigrations(Backend::kPostgres);
  ASSERT_EQ(sqlite.size(), postgres.size());
  for (std::size_t i = 0; i < sqlite.size(); ++i) {
    EXPECT_EQ(sqlite[i].version, postgres[i].version);
    EXPECT_EQ(sqlite[i].name, postgres[i].name);
  }
}

// Servers started together on a new PostgreSQL database: each migration is applied once, and all
// of them open the store.
TEST(Migrations, ServersStartingTogetherOnOnePostgresDatabaseMigrateItOnce) {
  StoreLocation location;
  location.backend = Backend::kPostgres;
  location.postgres.uri = lossguard::testing::PostgresServer::Shared().CreateDatabase("together");
  std::atomic<int> opened{0};
  std::vector<std::thread> servers;
  for (int i = 0; i < 4; ++i) {
    servers.emplace_back([&] {
      Store store(location);
      ++opened;
    });
  }
  for (auto& server : servers) server.join();
  EXPECT_EQ(opened, 4);
  PostgresDatabase db(location.postgres);
  Statement applied(db, "SELECT COUNT(*), MAX(version) FROM schema_version");
  ASSERT_TRUE(applied.Step());
  const auto& migrations = BuiltinMigrations(Backend::kPostgres);
  EXPECT_EQ(applied.Int(0), static_cast<std::int64_t>(migrations.size()));
  EXPECT_EQ(applied.Int(1), migrations.back().version);
}

TEST(Migrations, StoreRefusesADatabaseFromTheFuture) {
  TempDir dir;
  { Store store(dir.File("db")); }
  {
    SqliteDatabase db(dir.File("db"), false, false);
    db.Exec("INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'future', 0)");
  }
  EXPECT_THAT([&] { Store store(dir.File("db")); },
              ::testing::ThrowsMessage<StorageError>(HasSubstr("schema version 999")));
}

}  // namespace migrations_test
}  // namespace lossguard::store
