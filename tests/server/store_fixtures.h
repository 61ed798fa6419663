#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "store/database.h"
#include "store/location.h"
#include "store/store.h"
#include "store/types.h"
#include "support/temp_dir.h"

namespace lossguard::store {
// How gtest names the engine in a parameterised test's description.
void PrintTo(Backend backend, std::ostream* out);
}  // namespace lossguard::store

namespace lossguard::testing {

// An open alert for `run`; tests change what they need. The run must exist before it is inserted.
store::Alert MakeAlert(const std::string& run, analyzers::Kind kind, analyzers::Severity severity,
                       const std::string& message);

// A test of the store's contract on each engine: SQLite (a file in a temporary directory) and a
// real PostgreSQL server (a database of its own on the process's shared server). Instantiate with
// ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName.
class EngineTest : public ::testing::TestWithParam<store::Backend> {
 protected:
  // This test's database, created on first use.
  const store::StoreLocation& Location();
  // A new database of its own on the same engine, apart from Location()'s.
  store::StoreLocation AnotherLocation();
  // A store on this test's database; another call opens the same database again.
  std::unique_ptr<store::Store> Open(store::StoreOptions options = {});
  // A connection of its own to the database, beside the store's.
  std::unique_ptr<store::Database> Connect();

  TempDir dir_;

 private:
  std::optional<store::StoreLocation> location_;
};

std::string BackendName(const ::testing::TestParamInfo<store::Backend>& info);

}  // namespace lossguard::testing
