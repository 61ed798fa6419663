#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/analysis.h"
#include "store/sqlite.h"
#include "store/types.h"

namespace lossguard::store {

enum class Durability {
  kFull,    // fsync the WAL at every commit: an acknowledged batch survives power loss
  kNormal,  // fsync at checkpoints only: survives a crash or kill -9 of the server, not power loss
};

struct StoreOptions {
  Durability durability = Durability::kFull;
  int read_connections = 4;
  AnalysisOptions analysis;  // the analyzers run in the ingest transaction
};

// lossguard's SQLite storage: one write connection (writes are serialised) and a small pool of
// read connections (WAL lets reads run beside a write). Thread-safe: any method may be called from
// any thread. Every method throws SqliteError, with context, when SQLite fails.
class Store {
 public:
  // Opens or creates the database at `path` and applies pending migrations. Throws SqliteError if
  // the file cannot be opened, is not a lossguard database, or is newer than this build.
  Store(const std::filesystem::path& path, StoreOptions options = {});
  ~Store();
  Store(const Store&) = delete;

  // Stores the batch in one transaction: all records or none. Returns only after the commit, so a
  // returned batch is durable per StoreOptions::durability. Records keyed (run, step, rank): an
  // identical record already stored is a duplicate (untouched); a different one replaces it.
  // New and replaced records go through the analyzers (see Analysis): the alerts they raise are
  // committed in the same transaction.
  IngestResult Ingest(const std::vector<wire::StepRecord>& records);

  // The schema version, read from the database (a real round trip: /healthz uses it).
  int SchemaVersion();

  // One page of runs (see RunListQuery); its cost grows with the page, not with the number of runs.
  RunPage ListRuns(const RunListQuery& query);
  // Runs whose last record arrived at or after `since` (unix seconds, server clock), most recent
  // first, at most `limit` of them, with the count of all such runs.
  ActiveRuns ListActiveRuns(double since, std::size_t limit);
  std::vector<OpenAlertGroup> ListOpenAlertGroups();
  std::optional<RunSummary> GetRun(std::string_view run);

  // Raw records of a run; nullopt when the run does not exist.
  std::optional<StepPage> ReadSteps(std::string_view run, const StepQuery& query);

  // Downsampled series for steps [from, to] (clamped to the run's steps) in at most `max_buckets`
  // buckets per rank, each holding min/max per series. nullopt when the run does not exist.
  std::optional<DownsampledSeries> ReadDownsampled(std::string_view run, std::int64_t from,
                                                   std::int64_t to,
                                                   std::optional<std::int64_t> rank,
                                                   std::int64_t max_buckets);

  std::vector<Alert> ListAlerts(const AlertFilter& filter);
  // Inserts an alert as given (fixtures, tools that copy alerts); returns its id. The run must
  // exist. The analyzers do not write through here: Analysis upserts their episodes inside the
  // ingest transaction.
  std::int64_t InsertAlert(const Alert& alert);
  // Marks an alert acknowledged (the first acknowledgement time is kept); nullopt if no such alert.
  std::optional<Alert> AckAlert(std::int64_t id);

 private:
  class ReadLease;
  class Writer;
  ReadLease Read();

  std::filesystem::path path_;
  StoreOptions options_;
  std::unique_ptr<Writer> writer_;  // guarded by write_mutex_
  std::mutex write_mutex_;
  std::mutex read_mutex_;
  std::vector<std::unique_ptr<Database>> idle_readers_;  // guarded by read_mutex_
};

}  // namespace lossguard::store
