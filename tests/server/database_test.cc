// CachedStatement on both engines: one prepared statement per connection and SQL, every use
// starting clean, and two uses of one statement at once refused.
#include "store/database.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "server/store_fixtures.h"
#include "store/postgres.h"
#include "store/sqlite.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

namespace lossguard::store {
namespace {

class CachedStatementTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kSqlite) {
      db_ = std::make_unique<SqliteDatabase>(dir_.File("db"), false, true);
    } else {
      PostgresOptions options;
      static int databases = 0;
      options.uri = lossguard::testing::PostgresServer::Shared().CreateDatabase(
          "cached_" + std::to_string(++databases));
      db_ = std::make_unique<PostgresDatabase>(options);
    }
    db_->Exec("CREATE TABLE pairs (a INTEGER, b INTEGER)");
  }

  lossguard::testing::TempDir dir_;
  std::unique_ptr<Database> db_;
};

TEST_P(CachedStatementTest, EveryUseStartsWithoutTheLastOnesBindings) {
  constexpr const char* kInsert = "INSERT INTO pairs (a, b) VALUES (?, ?)";
  CachedStatement(*db_, kInsert).Bind(1, std::int64_t{1}).Bind(2, std::int64_t{2}).Step();
  CachedStatement(*db_, kInsert).Bind(1, std::int64_t{3}).Step();  // b left unbound: NULL
  CachedStatement rows(*db_, "SELECT a, b FROM pairs ORDER BY a");
  ASSERT_TRUE(rows.Step());
  EXPECT_EQ(rows.Int(1), 2);
  ASSERT_TRUE(rows.Step());
  EXPECT_EQ(rows.Int(0), 3);
  EXPECT_TRUE(rows.IsNull(1)) << "the first use's b = 2 does not carry over";
}

TEST_P(CachedStatementTest, AStatementLeftMidResultIsResetForTheNextUse) {
  db_->Exec("INSERT INTO pairs (a, b) VALUES (1, 1), (2, 2), (3, 3)");
  constexpr const char* kSelect = "SELECT a FROM pairs ORDER BY a";
  {
    CachedStatement rows(*db_, kSelect);
    ASSERT_TRUE(rows.Step());  // one row of three read, then left
  }
  CachedStatement rows(*db_, kSelect);
  ASSERT_TRUE(rows.Step());
  EXPECT_EQ(rows.Int(0), 1) << "a new use starts at the first row";
}

TEST_P(CachedStatementTest, TwoUsesOfOneStatementAtOnceAreRefused) {
  constexpr const char* kSelect = "SELECT a FROM pairs";
  CachedStatement outer(*db_, kSelect);
  EXPECT_THAT([&] { CachedStatement inner(*db_, kSelect); },
              ::testing::ThrowsMessage<std::logic_error>(::testing::HasSubstr("used twice")));
}

INSTANTIATE_TEST_SUITE_P(Engines, CachedStatementTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         lossguard::testing::BackendName);

}  // namespace
}  // namespace lossguard::store
