#include "store/migrations.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "store/store.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::store {
namespace {

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
    Database db(dir.File("db"), false, true);
    EXPECT_EQ(ApplyMigrations(db, kV1), 1);
  }
  Database db(dir.File("db"), false, false);
  EXPECT_EQ(ApplyMigrations(db, kV2), 2);
  EXPECT_EQ(SchemaVersion(db), 2);
  Statement row(db, "SELECT name, age FROM people");
  ASSERT_TRUE(row.Step());
  EXPECT_EQ(row.Text(0), "ada");
  EXPECT_EQ(row.Int(1), 36);
  EXPECT_EQ(ApplyMigrations(db, kV2), 2) << "applying again is a no-op";
}

TEST(Migrations, NewerDatabaseIsRefusedAndLeftUntouched) {
  TempDir dir;
  {
    Database db(dir.File("db"), false, true);
    db.Exec("PRAGMA journal_mode = DELETE");
    ApplyMigrations(db, kV2);
  }
  std::string before = ReadFile(dir.File("db"));
  {
    Database db(dir.File("db"), false, false);
    EXPECT_THAT([&] { ApplyMigrations(db, kV1); },
                ::testing::ThrowsMessage<SqliteError>(
                    HasSubstr("schema version 2, newer than this lossguard build")));
  }
  EXPECT_EQ(ReadFile(dir.File("db")), before);
}

TEST(Migrations, FailingMigrationRollsBackToThePreviousVersion) {
  TempDir dir;
  Database db(dir.File("db"), false, true);
  ApplyMigrations(db, kV1);
  std::vector<Migration> broken = {
      kV1[0], {2, "broken", "ALTER TABLE people ADD COLUMN x INTEGER; SELECT * FROM nope;"}};
  EXPECT_THAT([&] { ApplyMigrations(db, broken); },
              ::testing::ThrowsMessage<SqliteError>(HasSubstr("migration 2_broken failed")));
  EXPECT_EQ(SchemaVersion(db), 1);
  EXPECT_THROW(Statement(db, "SELECT x FROM people"), SqliteError)
      << "the half-applied column is rolled back";
}

TEST(Migrations, BuiltinMigrationsAreNumberedInOrder) {
  const auto& migrations = BuiltinMigrations();
  ASSERT_FALSE(migrations.empty());
  for (std::size_t i = 0; i < migrations.size(); ++i)
    EXPECT_EQ(migrations[i].version, static_cast<int>(i + 1));
}

TEST(Migrations, StoreRefusesADatabaseFromTheFuture) {
  TempDir dir;
  { Store store(dir.File("db")); }
  {
    Database db(dir.File("db"), false, false);
    db.Exec("INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'future', 0)");
  }
  EXPECT_THAT([&] { Store store(dir.File("db")); },
              ::testing::ThrowsMessage<SqliteError>(HasSubstr("schema version 999")));
}

}  // namespace
}  // namespace lossguard::store
