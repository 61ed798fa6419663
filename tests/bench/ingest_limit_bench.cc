// How close the store's ingest comes to what SQLite itself allows, measured in one run.
//   build/tests/bench/ingest_limit_bench [--records N] [--trials T] [--sync full|normal]
//                                        [--analyzers on|off]
// The same records, 1,000 to a transaction, into a new database file each time, trials
// alternating between the two sides:
//  - raw: the step rows alone, as SQLite takes them with nothing else: the schema the server
//    creates (migrations applied), WAL, the server's synchronous setting, one prepared INSERT per
//    row through the sqlite3 C API, the row values (micro-batches and rest encoded) made before the
//    clock starts;
//  - store: Store::Ingest of the same batches, as the HTTP handler calls it (encoding, the run's
//    bookkeeping, rollups, and the analyzers with --analyzers on), without HTTP.
// Prints each side's median records/s and their ratio (store / raw).
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <variant>

#include "store/migrations.h"
#include "store/sqlite.h"
#include "store/step_row.h"
#include "store/store.h"
#include "support/records.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace store = lossguard::store;

constexpr std::int64_t kBatch = 1000;

lossguard::wire::StepRecord Record(std::int64_t step) {
  // A decaying loss with step-to-step noise of about 1%, as a trainer's is (a curve flat for
  // hundreds of steps is not, and costs the spike detector's variance its exact fallback).
  const double noise = static_cast<double>((step * 2654435761u) % 1000) / 1000.0 - 0.5;
  lossguard::wire::StepRecord r = lossguard::testing::MakeRecord(
      "bench", step, (2.0 + 8.0 / static_cast<double>(step / 100 + 1)) * (1 + 0.02 * noise));
  r.ga_steps = 8;
  r.micro_batch_size = 4;
  r.ref_loss = r.loss;
  r.grad_norm = 1.25;
  r.tokens = 16384;
  r.vocab_size = 32000;
  r.lr = 3e-4;
  return r;
}

void Check(int code, sqlite3* db, const char* what) {
  if (code != SQLITE_OK && code != SQLITE_DONE && code != SQLITE_ROW) {
    throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
  }
}

void Exec(sqlite3* db, const char* sql) {
  Check(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), db, sql);
}

// The raw side: records/s of the step rows inserted by the sqlite3 API alone.
double RawInsert(const std::filesystem::path& file,
                 const std::vector<lossguard::wire::StepRecord>& records, bool full_sync) {
  {
    store::SqliteDatabase schema(file, /*read_only=*/false, /*create=*/true);
    schema.Exec("PRAGMA auto_vacuum = INCREMENTAL");
    store::ApplyMigrations(schema, store::BuiltinMigrations(store::Backend::kSqlite));
    schema.Exec("INSERT INTO runs (id, name, first_seen, last_seen) VALUES (1, 'bench', 0, 0)");
  }
  std::vector<store::EncodedStepValues> encoded;
  encoded.reserve(records.size());
  for (const auto& record : records) encoded.push_back(store::EncodeStepValues(record));

  sqlite3* db = nullptr;
  Check(sqlite3_open(file.c_str(), &db), db, "open");
  Exec(db, "PRAGMA journal_mode = WAL");
  Exec(db, full_sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
  Exec(db, "PRAGMA cache_size = -65536");
  const auto columns = store::StepValueColumns();
  std::string sql = "INSERT INTO steps (run_id, step, rank, " + store::StepValueColumnNames() +
                    ", received_at) VALUES (?, ?, ?";
  for (std::size_t c = 0; c <= columns.size(); ++c) sql += ", ?";
  sql += ")";
  sqlite3_stmt* insert = nullptr;
  Check(sqlite3_prepare_v2(db, sql.c_str(), -1, &insert, nullptr), db, "prepare");

  const auto start = Clock::now();
  for (std::size_t begin = 0; begin < records.size(); begin += kBatch) {
    Exec(db, "BEGIN IMMEDIATE");
    for (std::size_t i = begin; i < std::min(records.size(), begin + kBatch); ++i) {
      sqlite3_bind_int64(insert, 1, 1);
      sqlite3_bind_int64(insert, 2, records[i].step);
      sqlite3_bind_int64(insert, 3, records[i].rank);
      for (std::size_t c = 0; c < columns.size(); ++c) {
        const int index = static_cast<int>(c) + 4;
        const store::ColumnValue value = store::StoredValue(columns[c], records[i], encoded[i]);
        if (const auto* integer = std::get_if<std::int64_t>(&value)) {
          sqlite3_bind_int64(insert, index, *integer);
        } else if (const auto* number = std::get_if<double>(&value)) {
          sqlite3_bind_double(insert, index, *number);
        } else if (const auto* bytes = std::get_if<std::string_view>(&value)) {
          if (columns[c].type == store::ColumnType::kBlob) {
            sqlite3_bind_blob(insert, index, bytes->data(), static_cast<int>(bytes->size()),
                              SQLITE_STATIC);
          } else {
            sqlite3_bind_text(insert, index, bytes->data(), static_cast<int>(bytes->size()),
                              SQLITE_STATIC);
          }
        } else {
          sqlite3_bind_null(insert, index);
        }
      }
      sqlite3_bind_double(insert, static_cast<int>(columns.size()) + 4, 1.0);
      Check(sqlite3_step(insert), db, "insert");
      sqlite3_reset(insert);
    }
    Exec(db, "COMMIT");
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  sqlite3_finalize(insert);
  sqlite3_close(db);
  return static_cast<double>(records.size()) / seconds;
}

// The store side: records/s of Store::Ingest of the same records in the same batches.
double StoreIngest(const std::filesystem::path& file,
                   const std::vector<lossguard::wire::StepRecord>& records, bool full_sync,
                   bool analyzers) {
  store::StoreOptions options;
  options.durability = full_sync ? store::Durability::kFull : store::Durability::kNormal;
  options.analysis.enabled = analyzers;
  store::Store db(file, options);
  std::vector<std::vector<lossguard::wire::StepRecord>> batches;
  for (std::size_t begin = 0; begin < records.size(); begin += kBatch) {
    batches.emplace_back(
        records.begin() + static_cast<std::ptrdiff_t>(begin),
        records.begin() + static_cast<std::ptrdiff_t>(std::min(records.size(), begin + kBatch)));
  }
  const auto start = Clock::now();
  for (const auto& batch : batches) {
    const store::IngestResult result = db.Ingest(batch);
    if (result.accepted != static_cast<std::int64_t>(batch.size())) {
      throw std::runtime_error("Store::Ingest stored " + std::to_string(result.accepted) + " of " +
                               std::to_string(batch.size()));
    }
  }
  return static_cast<double>(records.size()) /
         std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Store::Ingest against SQLite's own insert rate, same rows, same run"};
  std::int64_t records = 300'000;
  int trials = 3;
  std::string sync = "full", analyzers = "on";
  app.add_option("--records", records, "records per trial")->check(CLI::Range(1000, 100'000'000));
  app.add_option("--trials", trials, "trials per side (alternating)")->check(CLI::Range(1, 50));
  app.add_option("--sync", sync, "synchronous setting, as the server's --sync")
      ->check(CLI::IsMember({"full", "normal"}));
  app.add_option("--analyzers", analyzers, "the store's analyzers")
      ->check(CLI::IsMember({"on", "off"}));
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);  // not a line per migration per trial

  try {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "lossguard-limit-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    const std::filesystem::path dir = pattern;
    std::vector<lossguard::wire::StepRecord> all;
    all.reserve(static_cast<std::size_t>(records));
    for (std::int64_t step = 0; step < records; ++step) all.push_back(Record(step));

    std::vector<double> raw, stored;
    for (int trial = 0; trial < trials; ++trial) {
      const auto file = [&](const char* side) {
        return dir / (std::string(side) + "-" + std::to_string(trial) + ".db");
      };
      raw.push_back(RawInsert(file("raw"), all, sync == "full"));
      stored.push_back(StoreIngest(file("store"), all, sync == "full", analyzers == "on"));
      std::printf("trial %d: raw %.0f records/s, store %.0f records/s (%.2f)\n", trial + 1,
                  raw.back(), stored.back(), stored.back() / raw.back());
      std::filesystem::remove_all(dir);
      std::filesystem::create_directories(dir);
    }
    std::filesystem::remove_all(dir);
    std::printf(
        "SQLite, %lld records per trial in batches of %lld, --sync %s, analyzers %s: raw insert "
        "%.0f records/s, Store::Ingest %.0f records/s: ratio %.2f (medians of %d trials)\n",
        static_cast<long long>(records), static_cast<long long>(kBatch), sync.c_str(),
        analyzers.c_str(), Median(raw), Median(stored), Median(stored) / Median(raw), trials);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ingest_limit_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
