#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "lossguard/analyzers/episode_log.h"
#include "lossguard/analyzers/run_analyzer.h"
#include "lossguard/wire/step_record.h"
#include "store/database.h"
#include "store/notification_writer.h"
#include "store/types.h"
#include "worker/ordered_consumer.h"

namespace lossguard::store {

struct AnalysisOptions {
  bool enabled = true;
  analyzers::AnalyzerOptions analyzers;
  // Runs whose analyzer state is kept in memory; the least recently fed beyond this is dropped
  // and rebuilt from the stored steps when its run is fed again (as after a restart).
  std::size_t max_runs = 1000;
  // Notifications of the episodes the analyzers open, escalate and resolve (the outbox).
  NotifyOptions notify;
};

// The analyzers inside the ingest transaction: the write connection's view of them. Each run's
// RunAnalyzer is resumed from the store on first use (judged_through, open episodes, the last
// WarmupSteps() judged steps, and the steps still waiting for judgement), fed the batch's new and
// replaced records, and its alert events are upserted on the episode key together with the
// run's judged_through, before the caller commits. So an alert is visible exactly when the records
// that raised it are, and a restart neither loses nor duplicates one.
//
// Several servers may judge one run, a batch each (a shared PostgreSQL database): each batch holds
// the run's lock, and a server whose in-memory state of the run is older than the stored run (its
// revision moved on) resumes it from the store first, so alerts come out as from one server.
//
// Not thread-safe: used under the store's write lock (a batch's records are fed on a thread of its
// own while they are written, the caller's thread waiting for it before using the analyzers
// again). Throws StorageError.
class Analysis {
 public:
  Analysis(Database& db, AnalysisOptions options);

  bool enabled() const { return options_.enabled; }

  // How the batch stored a record.
  enum class Stored { kNew, kReplaced, kDuplicate };
  // A batch's records as the transaction stores them: record i is of run `run_of[i]`, stored as
  // `how[i]` once the writer has reported it (Batch::StoredThrough).
  struct StoredBatch {
    const std::vector<wire::StepRecord>& records;
    const std::vector<std::int64_t>& run_of;
    std::span<const Stored> how;
  };

  // One ingest transaction's use of the analyzers:
  //   Batch batch = analysis.Begin();
  //   batch.Prepare(run)         for each run, once it is locked and before its rows are written
  //   batch.Start(stored)        then the rows are written, calling
  //   batch.StoredThrough(n)     as records [0, n) are stored: the analysis thread feeds them to
  //                              the analyzers meanwhile
  //   batch.Judge(revisions, now)  once every row is written: the rest of the records go through
  //                              the analyzers, their alerts and the runs' judged_through are
  //                              written; `revisions` holds the revision (runs.revision) the batch
  //                              leaves each run it added to
  //   (the caller commits the transaction)
  //   batch.Committed()
  // A record whose judgement reads the database (a replaced step already judged rewinds its run)
  // and every record after it are fed by Judge, on the caller's thread, which owns the connection;
  // so are the records the analysis thread has not started on when Judge is called (the caller's
  // thread is running already: on busy cores, waking the other one is the longer way).
  // A Batch that goes without Committed() (the transaction failed) forgets what it did: its runs
  // are ahead of the rolled-back store and are reloaded from it next time.
  class Batch {
   public:
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    // Loads the run's analyzer if it is not in memory or another server has judged the run since.
    void Prepare(std::int64_t run_id) { analysis_.Prepare(run_id); }
    // `stored` must stay valid until Judge.
    void Start(const StoredBatch& stored);
    void StoredThrough(std::size_t records) {
      if (analysis_.feeder_) analysis_.feeder_->Publish(records);
    }
    void Judge(const std::unordered_map<std::int64_t, std::int64_t>& revisions, double now);
    void Committed() {
      committed_ = true;
      analysis_.Settle();
    }

   private:
    friend class Analysis;
    explicit Batch(Analysis& analysis) : analysis_(analysis) {}
    Analysis& analysis_;
    std::optional<StoredBatch> stored_;
    bool committed_ = false;
  };
  // Not re-entrant: one Batch at a time.
  Batch Begin() { return Batch(*this); }

  // The run was deleted: its state goes.
  void Forget(std::int64_t run_id);

 private:
  void Prepare(std::int64_t run_id);
  void Revised(std::int64_t run_id, std::int64_t revision);
  // A record of the batch, of a run Prepare()d. A replaced record of a step already judged rewinds
  // the run there (Rewind); a duplicate counts only for a step not judged yet (after a rewind, the
  // re-sent steps that came back unchanged).
  void Feed(std::int64_t run_id, const wire::StepRecord& record, Stored how);
  // Feed without the database: false, having done nothing, when the record rewinds its run.
  bool FeedInMemory(std::int64_t run_id, const wire::StepRecord& record, Stored how);
  // Writes the batch's alert events and judged_through values.
  void Finish(double now);
  // The batch committed: its runs' states are the store's.
  void Settle();
  // The batch did not commit: its runs' states go.
  void Abandon();

  struct RunState {
    analyzers::RunAnalyzer analyzer;
    std::list<std::int64_t>::iterator lru;
    std::int64_t revision = 0;  // the stored run's revision this state reflects
  };
  // The run's analyzer, from memory or rebuilt from the store (see Resume).
  RunState& Load(std::int64_t run_id);
  // Brings a new analyzer to where the stored run was judged: detectors relearn from the last
  // stored steps, open episodes continue. Returns the stored steps not judged yet (waiting for
  // ranks), to be fed again.
  std::vector<wire::StepRecord> Resume(std::int64_t run_id, analyzers::RunAnalyzer& analyzer);
  // Re-sent steps (a trainer resumed from a checkpoint): the open episodes end as superseded, and
  // a new attempt of the run is judged from `step` on, its detectors rebuilt from the stored steps
  // before it. Later re-sent steps are judged as they come, in step order.
  void Rewind(std::int64_t run_id, std::int64_t step);
  // The run's judged_through and attempt.
  std::pair<std::optional<std::int64_t>, std::int64_t> StoredJudgement(std::int64_t run_id);
  std::optional<std::int64_t> StoredFirstStep(std::int64_t run_id);
  std::vector<analyzers::AlertEvent> StoredOpenEpisodes(std::int64_t run_id, std::int64_t attempt);
  std::vector<wire::StepRecord> ReadRecords(Statement& query);
  // The last WarmupSteps() stored steps at or before `through`, in (step, rank) order.
  std::vector<wire::StepRecord> WarmupRecords(std::int64_t run_id, std::int64_t through);
  // Stores an episode's latest state (upsert on its key), and the notifications its change makes.
  void Upsert(std::int64_t run_id, const analyzers::AlertEvent& latest, double now);
  // The episode as stored (before this batch's upsert), if it is.
  std::optional<StoredEpisode> StoredEpisodeOf(std::int64_t run_id, analyzers::Kind kind,
                                               std::int64_t first_step, std::int64_t attempt);
  // Adds the stored id of the episode `caused_by` names ({"kind", "first_step"}), when stored.
  void ResolveCause(std::int64_t run_id, std::int64_t attempt, nlohmann::json& caused_by);

  AnalysisOptions options_;
  std::unordered_map<std::int64_t, RunState> runs_;
  std::list<std::int64_t> lru_;  // most recently used first
  // This batch: touched runs, and the latest state of each episode it changed (by run id).
  std::unordered_set<std::int64_t> touched_;
  analyzers::EpisodeLog<std::int64_t> episodes_;
  NotificationWriter notifications_;
  Database& db_;
  // Feeds a batch's records while the writer stores them (when the analysis is enabled).
  std::unique_ptr<worker::OrderedConsumer> feeder_;
};

}  // namespace lossguard::store
