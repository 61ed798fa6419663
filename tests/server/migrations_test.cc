#include "store/migrations.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
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

// Newer servers migrated the database with migrations that declared servers of this build
// compatible: it is used as it is (nothing written), and its data reads as before.
TEST(Migrations, NewerDatabaseDeclaredCompatibleIsUsedAsItIs) {
  TempDir dir;
  std::vector<Migration> v3 = kV2;
  v3.push_back({3, "nicknames", "ALTER TABLE people ADD COLUMN nickname TEXT;"});
  v3.back().compatible_with = 1;
  {
    SqliteDatabase db(dir.File("db"), false, true);
    db.Exec("PRAGMA journal_mode = DELETE");
    ApplyMigrations(db, v3);
    EXPECT_EQ(CompatibleVersion(db), 2) << "migration 2 declared nothing: servers of v1 cannot";
  }
  const std::string before = ReadFile(dir.File("db"));
  SqliteDatabase db(dir.File("db"), false, false);
  EXPECT_EQ(ApplyMigrations(db, kV2), 3);
  EXPECT_THAT([&] { ApplyMigrations(db, kV1); },
              ::testing::ThrowsMessage<StorageError>(
                  HasSubstr("servers built for versions before 2 cannot use it")));
  EXPECT_EQ(ReadFile(dir.File("db")), before);
}

// The compatible version only goes up: a later migration declared compatible with an old version
// does not make the database usable by servers an earlier migration left behind.
TEST(Migrations, CompatibleVersionIsTheLargestDeclaredSinceTheServersVersion) {
  TempDir dir;
  std::vector<Migration> migrations = {
      {1, "people", "CREATE TABLE people (name TEXT);"},
      {2, "index", "CREATE INDEX people_name ON people (name);\n-- compatible-with: 1\n"},
      {3, "ages", "ALTER TABLE people ADD COLUMN age INTEGER;"},
      {4, "note", "-- compatible-with: 2\nCREATE TABLE notes (text TEXT);"}};
  for (Migration& m : migrations) m.compatible_with = DeclaredCompatibleVersion(m.sql, m.version);
  EXPECT_EQ(migrations[1].compatible_with, 1);
  EXPECT_EQ(migrations[2].compatible_with, 0);
  SqliteDatabase db(dir.File("db"), false, true);
  const auto first = [&](std::size_t n) {
    return std::vector<Migration>(migrations.begin(), migrations.begin() + n);
  };
  ApplyMigrations(db, first(2));
  EXPECT_EQ(CompatibleVersion(db), 1);
  EXPECT_EQ(ApplyMigrations(db, first(1)), 2) << "a v1 server uses the indexed database";
  ApplyMigrations(db, migrations);
  EXPECT_EQ(CompatibleVersion(db), 3) << "migration 3 left servers before it behind";
  EXPECT_THROW(ApplyMigrations(db, first(2)), StorageError);
  EXPECT_EQ(ApplyMigrations(db, first(3)), 4);
}

TEST(Migrations, AMalformedCompatibilityMarkIsAnError) {
  EXPECT_EQ(DeclaredCompatibleVersion("CREATE TABLE t (x INTEGER);", 5), 0);
  EXPECT_EQ(DeclaredCompatibleVersion("-- compatible-with: 4\r\nCREATE TABLE t (x INTEGER);", 5),
            4);
  for (const char* sql :
       {"-- compatible-with: soon\n", "-- compatible-with: 6\n", "-- compatible-with: 0\n",
        "-- compatible-with: 3 or 4\n", "-- compatible-with:\n"}) {
    EXPECT_THAT([&] { DeclaredCompatibleVersion(sql, 5); },
                ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("migration 5")))
        << sql;
  }
}

// FNV-1a, 64 bits: a fingerprint that is the same on every compiler and machine.
std::uint64_t Fingerprint(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

// A released migration is never edited: databases that applied it keep what it did then, so a
// changed one would make two databases of the same version differ. A change to the schema is a new
// migration. (Add the fingerprint of a new migration here when it is released.)
TEST(Migrations, ReleasedMigrationsAreNeverEdited) {
  const std::map<std::pair<Backend, int>, std::uint64_t> released = {
      {{Backend::kSqlite, 1}, 0x2f44aff1cbb2a7c3ull},     // 001_initial.sql
      {{Backend::kSqlite, 2}, 0x96eba6db474a0a02ull},     // 002_analysis.sql
      {{Backend::kSqlite, 3}, 0xb0133f9f4ea5faf6ull},     // 003_rollup_pending.sql
      {{Backend::kSqlite, 4}, 0xcd1e3ee4e835a24bull},     // 004_rejudging.sql
      {{Backend::kSqlite, 5}, 0xafacaf88a98226d9ull},     // 005_shared_database.sql
      {{Backend::kSqlite, 6}, 0x38fdef4ac629296eull},     // 006_notifications.sql
      {{Backend::kSqlite, 7}, 0x139c648102205e38ull},     // 007_typed_steps.sql
      {{Backend::kSqlite, 8}, 0xef0d318ef3c1a0f1ull},     // 008_guard_actions.sql
      {{Backend::kSqlite, 9}, 0x999bc508d5672d25ull},     // 009_lr_rollups.sql
      {{Backend::kSqlite, 10}, 0xbdc11015da1834dcull},    // 010_complete_rollups.sql
      {{Backend::kPostgres, 1}, 0x8c5f97f0f75eee55ull},   // 001_initial.sql
      {{Backend::kPostgres, 2}, 0xa53ed0292b2210dfull},   // 002_analysis.sql
      {{Backend::kPostgres, 3}, 0x887ef51551a67f12ull},   // 003_rollup_pending.sql
      {{Backend::kPostgres, 4}, 0xc4e932d40b81c311ull},   // 004_rejudging.sql
      {{Backend::kPostgres, 5}, 0xc925d41dd4ba1ab0ull},   // 005_shared_database.sql
      {{Backend::kPostgres, 6}, 0xb5a6327f84c82b79ull},   // 006_notifications.sql
      {{Backend::kPostgres, 7}, 0x8212946a379b939dull},   // 007_typed_steps.sql
      {{Backend::kPostgres, 8}, 0x3aeba30326a257b0ull},   // 008_guard_actions.sql
      {{Backend::kPostgres, 9}, 0xdd1ccec5a95da56eull},   // 009_lr_rollups.sql
      {{Backend::kPostgres, 10}, 0x8710ea6314cfd789ull},  // 010_complete_rollups.sql
  };
  for (Backend backend : {Backend::kSqlite, Backend::kPostgres}) {
    for (const Migration& m : BuiltinMigrations(backend)) {
      auto it = released.find({backend, m.version});
      ASSERT_NE(it, released.end())
          << "migration " << m.version << "_" << m.name << " ("
          << (backend == Backend::kSqlite ? "sqlite" : "postgresql") << "): its fingerprint is 0x"
          << std::hex << Fingerprint(m.sql) << "ull";
      EXPECT_EQ(Fingerprint(m.sql), it->second)
          << "migration " << m.version << "_" << m.name
          << " was edited after its release: add a new migration instead";
    }
  }
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
