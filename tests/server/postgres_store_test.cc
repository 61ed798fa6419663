#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "store/migrations.h"
#include "store/postgres.h"
#include "store/rollup.h"
#include "store/store.h"
#include "support/postgres_server.h"
#include "support/records.h"

// What only PostgreSQL has: a database server apart from the store, which can go away, restart,
// be shared by several servers and hold a run's lock from another one. (The store's contract on
// both engines is StoreTest.)
namespace lossguard::store {
namespace postgres_store_test {

using lossguard::testing::PostgresServer;
using ::testing::HasSubstr;

// A slowly falling loss, as a healthy run's.
std::vector<wire::StepRecord> Steps(const std::string& run, std::int64_t first,
                                    std::int64_t count) {
  return lossguard::testing::MakeSteps(run, first, count, 10.0, -0.001);
}

StoreLocation NewPostgresDatabase(const std::string& name) {
  StoreLocation location;
  location.backend = Backend::kPostgres;
  location.postgres.uri = PostgresServer::Shared().CreateDatabase(name);
  return location;
}

// The database going away in the middle of a batch: its server ends the store's connection while
// it writes step 50 (once: a sequence is not rolled back). The batch fails as unavailable, nothing
// of it is stored, and the next call reconnects and stores it.
TEST(PostgresStore, ConnectionLostMidBatchStoresNothingAndTheNextCallReconnects) {
  const StoreLocation location = NewPostgresDatabase("lost_mid_batch");
  Store store(location);
  store.Ingest(Steps("kept", 0, 10));
  PostgresDatabase(location.postgres)
      .Exec(
          "CREATE SEQUENCE fail_once; CREATE FUNCTION end_connection() RETURNS trigger LANGUAGE "
          "plpgsql AS $$ BEGIN IF NEW.step = 50 AND nextval('fail_once') = 1 THEN PERFORM "
          "pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END $$; CREATE TRIGGER "
          "end_connection BEFORE INSERT ON steps FOR EACH ROW EXECUTE FUNCTION "
          "end_connection()");
  try {
    store.Ingest(Steps("cut", 0, 100));
    ADD_FAILURE() << "the batch cannot have been stored";
  } catch (const StorageError& e) {
    EXPECT_TRUE(e.unavailable()) << e.what();
  }
  EXPECT_FALSE(store.runs().Get("cut").has_value()) << "nothing of the failed batch is stored";
  EXPECT_EQ(store.Ingest(Steps("cut", 0, 100)).accepted, 100);
  EXPECT_EQ(store.runs().Get("cut")->records, 100);
  EXPECT_EQ(store.runs().Steps("cut", StepQuery{})->records.size(), 100u);
  EXPECT_EQ(store.runs().Get("kept")->records, 10);
}

// The PostgreSQL server stopped and started again under a store: calls fail as unavailable while
// it is down (the HTTP API's 503), and succeed once it is back, reads and writes alike.
TEST(PostgresStore, CallsFailWhileTheServerIsDownAndSucceedWhenItIsBack) {
  const StoreLocation location = NewPostgresDatabase("restarted");
  Store store(location, {.durability = Durability::kFull, .read_connections = 2});
  store.Ingest(Steps("r", 0, 100));
  EXPECT_EQ(store.runs().Get("r")->records, 100);  // a read connection now idles in the pool

  PostgresServer::Shared().Stop(SIGINT);
  auto unavailable = [](auto call) {
    try {
      call();
    } catch (const StorageError& e) {
      return e.unavailable();
    }
    return false;
  };
  EXPECT_TRUE(unavailable([&] { store.Ingest(Steps("r", 100, 100)); }));
  EXPECT_TRUE(unavailable([&] { store.runs().Get("r"); }));
  EXPECT_TRUE(unavailable([&] { store.alerts().List({}); }));

  PostgresServer::Shared().Start();
  EXPECT_EQ(store.runs().Get("r")->records, 100) << "the failed batch stored nothing";
  EXPECT_EQ(store.Ingest(Steps("r", 100, 100)).accepted, 100);
  EXPECT_EQ(store.runs().Get("r")->records, 200);
  EXPECT_EQ(store.SchemaVersion(), BuiltinMigrations(Backend::kPostgres).back().version);
}

// Two stores on one database, as two servers: a run created by both at once is one run, and
// batches of one run from both are all counted once.
TEST(PostgresStore, TwoStoresOnOneDatabaseShareRunsAndCounts) {
  const StoreLocation location = NewPostgresDatabase("two_stores");
  Store a(location), b(location);
  constexpr int kBatches = 40, kBatchSize = 25;
  std::vector<std::thread> writers;
  for (Store* store : {&a, &b}) {
    writers.emplace_back([store, first = store == &a ? 0 : 1] {
      for (int batch = first; batch < kBatches; batch += 2) {
        store->Ingest(Steps("shared", batch * kBatchSize, kBatchSize));
      }
    });
  }
  for (auto& writer : writers) writer.join();
  EXPECT_EQ(a.runs().List({}).runs.size(), 1u);
  EXPECT_EQ(b.runs().Get("shared")->records, kBatches * kBatchSize);
  EXPECT_EQ(a.runs().Steps("shared", StepQuery{})->records.size(),
            static_cast<std::size_t>(kBatches * kBatchSize));
  EXPECT_EQ(b.Ingest(Steps("shared", 0, kBatchSize)).duplicates, kBatchSize);
}

// A run whose lock another server's transaction holds (a server stopped mid-batch): the batch waits
// lock_timeout, then fails as unavailable (the client retries), and goes through once it is free.
TEST(PostgresStore, ABatchWaitingTooLongForItsRunsLockFailsAsUnavailable) {
  StoreLocation location = NewPostgresDatabase("held_lock");
  location.postgres.lock_timeout_ms = 500;
  Store store(location);
  store.Ingest(Steps("held", 0, 10));
  PostgresDatabase other_server(location.postgres);
  other_server.BeginWrite();
  Statement id(other_server, "SELECT id FROM runs WHERE name = 'held'");
  ASSERT_TRUE(id.Step());
  other_server.LockRun(id.Int(0));
  const auto start = std::chrono::steady_clock::now();
  try {
    store.Ingest(Steps("held", 10, 10));
    ADD_FAILURE() << "the run was locked";
  } catch (const StorageError& e) {
    EXPECT_TRUE(e.unavailable()) << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(400));
  EXPECT_EQ(store.Ingest(Steps("other-run", 0, 10)).accepted, 10) << "other runs are not held up";
  other_server.Exec("ROLLBACK");
  EXPECT_EQ(store.Ingest(Steps("held", 10, 10)).accepted, 10);
  EXPECT_EQ(store.runs().Get("held")->records, 20);
}

// Two servers on one run: a block one of them rolls up from the records it has held in memory is
// rolled up from the stored rows instead once the other has written the run meanwhile (its copy of
// a step may be the stored one).
TEST(PostgresStore, ABlockAnotherServerChangedIsRolledUpFromTheStoredRows) {
  const StoreLocation location = NewPostgresDatabase("carried_blocks");
  Store a(location), b(location);
  // 4 ranks, a loss of 2: `a` marks block 0 (steps 0-15) and holds its records.
  a.Ingest(lossguard::testing::MakeSteps("shared", 0, 6, 2.0, 0.0, 4));
  std::vector<wire::StepRecord> resent;
  for (std::int64_t step = 0; step < 3; ++step)
    resent.push_back(lossguard::testing::MakeRecord("shared", step, 99.0, 1, 4));
  EXPECT_EQ(b.Ingest(resent).replaced, 3);  // through the other server
  // Block 0 is due: the first group of settled blocks (DueBuckets) is due at this step.
  const std::int64_t due_at = kRollupWidths[1] * (kDueGroup + 1);
  ASSERT_EQ(DueBuckets(due_at), kDueGroup);
  a.Ingest(lossguard::testing::MakeSteps("shared", 6, due_at - 6 + 1, 2.0, 0.0, 4));

  PostgresDatabase db(location.postgres);
  Statement row(db,
                "SELECT loss_max, n FROM step_rollups WHERE run_id = (SELECT id FROM runs WHERE "
                "name = 'shared') AND rank = 1 AND width = 16 AND bucket = 0");
  ASSERT_TRUE(row.Step()) << "block 0 of rank 1 was not rolled up";
  EXPECT_EQ(row.Number(0), 99.0) << "rolled up from a copy older than the stored steps";
  EXPECT_EQ(row.Int(1), 16);
}

TEST(PostgresStore, RefusesAUriWithAPassword) {
  auto location = ParseStoreLocation("postgresql://lossguard:secret@127.0.0.1:5432/db");
  ASSERT_FALSE(location);
  EXPECT_THAT(location.error(), HasSubstr("holds a password"));
  EXPECT_THAT(location.error(), ::testing::Not(HasSubstr("secret")));
  EXPECT_FALSE(ParseStoreLocation("postgresql://u@h/db?password=hunter2"));
  EXPECT_EQ(ParseStoreLocation("sqlite:/tmp/x.db").value().sqlite_path, "/tmp/x.db");
  EXPECT_EQ(ParseStoreLocation("x.db").value().backend, Backend::kSqlite);
  EXPECT_EQ(ParseStoreLocation("postgres://u@h:1/db").value().backend, Backend::kPostgres);
}

}  // namespace postgres_store_test
}  // namespace lossguard::store
