#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/analysis.h"
#include "store/database.h"
#include "store/location.h"
#include "store/types.h"

namespace lossguard::store {

enum class Durability {
  // SQLite: fsync the WAL at every commit. PostgreSQL: synchronous_commit on. An acknowledged batch
  // survives power loss.
  kFull,
  // SQLite: fsync at checkpoints only. PostgreSQL: synchronous_commit off. Survives a crash or
  // kill -9 of lossguard-server, not power loss (nor, on PostgreSQL, a crash of its server).
  kNormal,
};

struct StoreOptions {
  Durability durability = Durability::kFull;
  int read_connections = 4;
  AnalysisOptions analysis;  // the analyzers run in the ingest transaction
};

// lossguard's storage, on SQLite or PostgreSQL (the same SQL, schema versions and guarantees): one
// write connection (this process's writes are serialised) and a small pool of read connections
// (reads run beside a write). Several servers may share one PostgreSQL database: writers of one run
// take its lock in the database, and a server whose analyzer state of a run is older than the
// stored run rebuilds it. Thread-safe: any method may be called from any thread. Every method
// throws StorageError, with context, when the database fails; unavailable() ones (a PostgreSQL
// server restarting) stored nothing, and the store reconnects on the next call.
class Store {
 public:
  // Opens or creates the database and applies pending migrations. Throws StorageError if it
  // cannot be opened or reached, is not a lossguard database, or is newer than this build.
  Store(const StoreLocation& location, StoreOptions options = {});
  // A SQLite file.
  Store(const std::filesystem::path& path, StoreOptions options = {})
      : Store(StoreLocation::Sqlite(path), std::move(options)) {}
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
  Backend backend() const { return location_.backend; }

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

  // Alerts in id order, each with the guard actions that concern it (ConcernsAlert).
  std::vector<Alert> ListAlerts(const AlertFilter& filter);
  // What trainers' guards did in a run, in (step, rank) order, at most `limit`.
  std::vector<GuardActionRow> ListGuardActions(std::string_view run, std::int64_t limit);
  // Inserts an alert as given (fixtures, tools that copy alerts); returns its id. The run must
  // exist. The analyzers do not write through here: Analysis upserts their episodes inside the
  // ingest transaction.
  std::int64_t InsertAlert(const Alert& alert);
  // Marks an alert acknowledged (the first acknowledgement time is kept); nullopt if no such alert.
  std::optional<Alert> AckAlert(std::int64_t id);

  // Deletes a run: at once it is gone from every query and its name is free for a new run (a
  // trainer sending again starts afresh); its alerts and notifications go in the same transaction,
  // its steps and rollups later, in bounded chunks (PurgeDeletedRuns). Returns the run's record
  // count, nullopt if there is no such run.
  std::optional<std::int64_t> DeleteRun(std::string_view run);
  // Runs whose last record arrived before `before` (unix seconds, server clock), least recent
  // first, at most `limit`.
  std::vector<std::string> RunsInactiveSince(double before, std::size_t limit);
  // Removes up to about `chunk_rows` rows of deleted runs in one transaction (the write lock is
  // released between calls, so ingest goes on beside a large deletion), and on SQLite returns the
  // freed pages to the file system. Returns how many rows it removed: 0 once nothing is left.
  std::int64_t PurgeDeletedRuns(std::int64_t chunk_rows);

  // The notification outbox, the dispatcher's side (the analyzers fill it: NotifyOptions).
  // The configured targets, seen now. A target no server has served for kNotifyTargetExpiry
  // seconds (it left every server's configuration) is removed with its undelivered notifications.
  static constexpr double kNotifyTargetExpiry = 3600;
  void RegisterNotifyTargets(double now);
  // Whether the target has notifications waiting (a read: no write while there is nothing to do).
  bool NotifyPending(std::string_view target);
  // Takes the target for `owner` until now + lease_seconds, when no other owner holds it and its
  // retry is due; returns its oldest `limit` notifications, or nullopt when it is not free.
  std::optional<OutboxClaim> ClaimNotifyTarget(std::string_view target, std::string_view owner,
                                               double now, double lease_seconds,
                                               std::int64_t limit);
  // The receiver took (or for good refused) a notification: it leaves the outbox, the target's
  // failures are cleared, `dropped_reported` of its dropped count was told, and the lease is
  // extended to `lease_until`.
  void NotifyDelivered(std::string_view target, std::string_view owner,
                       std::int64_t notification_id, std::int64_t dropped_reported,
                       double lease_until);
  // The receiver could not be reached or asked to retry: one more failure; the target is released
  // and waits until next_attempt_at.
  void NotifyFailed(std::string_view target, std::string_view owner, std::string_view error,
                    double next_attempt_at);
  void ReleaseNotifyTarget(std::string_view target, std::string_view owner);
  // The targets someone holds, expired leases included.
  struct NotifyLease {
    std::string target, label, owner;
  };
  std::vector<NotifyLease> NotifyLeases();
  struct NotifyTargetStatus {
    std::string id, label;
    std::int64_t pending = 0, failures = 0, dropped = 0;
    double next_attempt_at = 0;
    std::optional<std::string> last_error;
  };
  std::vector<NotifyTargetStatus> NotifyStatus();

 private:
  class ReadLease;
  class Writer;
  ReadLease Read();
  // Runs `read` on a pooled read connection. A connection lost while idle in the pool (the
  // database restarted) fails its first statement: the pool is emptied and `read` runs once more
  // on a new connection. Reads change nothing, so running one twice is harmless.
  template <typename Fn>
  auto Reading(Fn&& read);
  // The write connection, reopened if the last one was lost. Call with write_mutex_ held.
  Writer& LiveWriter();
  // Runs `write` on the writer; a lost connection is dropped (reopened by the next call).
  template <typename Fn>
  auto Write(Fn&& write);
  // Runs `write(db)` on the writer in one write transaction, under the write lock: committed when
  // it returns, rolled back when it throws. Every write but the ingest's goes through here.
  template <typename Fn>
  auto WriteTransaction(Fn&& write);

  StoreLocation location_;
  StoreOptions options_;
  std::unique_ptr<Writer> writer_;  // guarded by write_mutex_; null after a lost connection
  std::mutex write_mutex_;
  std::mutex read_mutex_;
  std::vector<std::unique_ptr<Database>> idle_readers_;  // guarded by read_mutex_
};

}  // namespace lossguard::store
