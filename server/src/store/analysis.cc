#include "store/analysis.h"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "store/step_row.h"
#include "store/stored_names.h"

namespace lossguard::store {

namespace {
// A query of run ?1's records, in the columns ReadRecords reads: the run's name (one lookup, not
// one a row), the key, the values.
std::string RecordQuery(std::string_view from_where) {
  return std::string("SELECT (SELECT name FROM runs WHERE id = ?1), step, rank, ") +
         StepValueColumnNames() + " " + std::string(from_where);
}

constexpr const char* kWarmupSteps = R"sql(
FROM steps WHERE run_id = ?1 AND step <= ?2 AND step >= (
  SELECT MIN(step) FROM (SELECT DISTINCT step FROM steps WHERE run_id = ?1 AND step <= ?2
                         ORDER BY step DESC LIMIT ?3) AS recent)
ORDER BY step, rank)sql";

constexpr const char* kUpsertAlert = R"sql(
INSERT INTO alerts (run_id, kind, severity, state, rank, first_step, last_step, message, evidence,
                    opened_at, updated_at, resolved_at, attempt)
VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11)
ON CONFLICT (run_id, kind, coalesce(rank, -1), first_step, attempt) DO UPDATE SET
  severity = excluded.severity, state = excluded.state, last_step = excluded.last_step,
  message = excluded.message, evidence = excluded.evidence, updated_at = excluded.updated_at,
  resolved_at = excluded.resolved_at
RETURNING id)sql";

constexpr const char* kRevision = "SELECT revision FROM runs WHERE id = ?";
constexpr const char* kJudgedThrough = "SELECT judged_through, attempt FROM runs WHERE id = ?";
constexpr const char* kFirstStep = "SELECT step FROM steps WHERE run_id = ? ORDER BY step LIMIT 1";
constexpr const char* kOpenAlerts =
    "SELECT kind, severity, first_step, last_step, message, evidence FROM alerts WHERE run_id = ? "
    "AND attempt = ? AND state = 'open' AND rank IS NULL";
constexpr const char* kEpisodeRow =
    "SELECT id, severity, state FROM alerts WHERE run_id = ? AND kind = ? AND rank IS NULL AND "
    "first_step = ? AND attempt = ?";
constexpr const char* kSetAttempt = "UPDATE runs SET attempt = ? WHERE id = ?";
constexpr const char* kSetJudgedThrough = "UPDATE runs SET judged_through = ? WHERE id = ?";

const std::string& WarmupStepsSql() {
  static const std::string sql = RecordQuery(kWarmupSteps);
  return sql;
}

const std::string& PendingStepsSql() {
  static const std::string sql =
      RecordQuery("FROM steps WHERE run_id = ?1 AND step > ?2 ORDER BY step, rank");
  return sql;
}
}  // namespace

Analysis::Analysis(Database& db, AnalysisOptions options)
    : options_(std::move(options)), notifications_(db, options_.notify), db_(db) {
  if (options_.enabled) feeder_ = std::make_unique<worker::OrderedConsumer>();
}

std::vector<wire::StepRecord> Analysis::ReadRecords(Statement& query) {
  std::vector<wire::StepRecord> records;
  while (query.Step()) {
    records.push_back(
        ReadStepValues(query, 3, std::string(query.Text(0)), query.Int(1), query.Int(2)));
  }
  return records;
}

std::pair<std::optional<std::int64_t>, std::int64_t> Analysis::StoredJudgement(
    std::int64_t run_id) {
  CachedStatement judged_through(db_, kJudgedThrough);
  judged_through.Bind(1, run_id);
  if (!judged_through.Step()) return {std::nullopt, 0};
  return {judged_through.OptionalInt(0), judged_through.Int(1)};
}

std::vector<wire::StepRecord> Analysis::WarmupRecords(std::int64_t run_id, std::int64_t through) {
  CachedStatement warmup_steps(db_, WarmupStepsSql());
  warmup_steps.Bind(1, run_id).Bind(2, through).Bind(3, options_.analyzers.WarmupSteps());
  return ReadRecords(warmup_steps);
}

std::optional<std::int64_t> Analysis::StoredFirstStep(std::int64_t run_id) {
  CachedStatement first_step(db_, kFirstStep);
  first_step.Bind(1, run_id);
  if (!first_step.Step()) return std::nullopt;
  return first_step.Int(0);
}

std::vector<analyzers::AlertEvent> Analysis::StoredOpenEpisodes(std::int64_t run_id,
                                                                std::int64_t attempt) {
  std::vector<analyzers::AlertEvent> open;
  CachedStatement open_alerts(db_, kOpenAlerts);
  open_alerts.Bind(1, run_id).Bind(2, attempt);
  while (open_alerts.Step()) {
    analyzers::AlertEvent e;
    e.kind = ParseStoredKind(open_alerts.Text(0));
    e.severity = ParseStoredSeverity(open_alerts.Text(1));
    e.first_step = open_alerts.Int(2);
    e.last_step = open_alerts.Int(3);
    e.message = std::string(open_alerts.Text(4));
    e.evidence = nlohmann::json::parse(open_alerts.Text(5));
    e.attempt = attempt;
    open.push_back(std::move(e));
  }
  return open;
}

std::vector<wire::StepRecord> Analysis::Resume(std::int64_t run_id,
                                               analyzers::RunAnalyzer& analyzer) {
  const std::optional<std::int64_t> first_step = StoredFirstStep(run_id);
  if (!first_step) return {};  // a new run
  const auto [judged, attempt] = StoredJudgement(run_id);
  analyzer = analyzers::RunAnalyzer(options_.analyzers, attempt);
  std::int64_t through = judged.value_or(INT64_MIN);
  std::vector<wire::StepRecord> history, pending;
  if (judged) {
    history = WarmupRecords(run_id, *judged);
    CachedStatement pending_steps(db_, PendingStepsSql());
    pending_steps.Bind(1, run_id).Bind(2, *judged);
    pending = ReadRecords(pending_steps);
  } else {
    // Stored steps but never analysed (analysis was off): judgement starts after the last
    // stored step; the history only teaches the detectors their baselines.
    history = WarmupRecords(run_id, INT64_MAX);
    through = history.empty() ? *first_step - 1 : history.back().step;
  }
  analyzer.Resume(*first_step, through, history, StoredOpenEpisodes(run_id, attempt));
  return pending;
}

Analysis::RunState& Analysis::Load(std::int64_t run_id) {
  if (auto it = runs_.find(run_id); it != runs_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second;
  }
  analyzers::RunAnalyzer analyzer(options_.analyzers);
  std::vector<wire::StepRecord> pending = Resume(run_id, analyzer);
  lru_.push_front(run_id);
  auto [it, inserted] = runs_.emplace(run_id, RunState{std::move(analyzer), lru_.begin()});
  // The steps that were stored but still waited for their ranks: judged as they complete.
  for (const wire::StepRecord& record : pending) Feed(run_id, record, Stored::kNew);
  while (runs_.size() > options_.max_runs) {
    std::int64_t evicted = lru_.back();
    if (touched_.count(evicted)) break;  // in use by this batch
    runs_.erase(evicted);
    lru_.pop_back();
  }
  return it->second;
}

void Analysis::Prepare(std::int64_t run_id) {
  // Once per run and batch: a batch's records are mostly of one run.
  if (!options_.enabled || !touched_.insert(run_id).second) return;
  std::int64_t stored = 0;
  {
    CachedStatement revision(db_, kRevision);
    revision.Bind(1, run_id);
    if (revision.Step()) stored = revision.Int(0);
  }
  if (auto it = runs_.find(run_id); it != runs_.end() && it->second.revision != stored) {
    // Another server stored batches of this run since this one's last: the judgement is in the
    // store (judged_through, episodes, waiting steps), and this state is behind it.
    lru_.erase(it->second.lru);
    runs_.erase(it);
  }
  Load(run_id).revision = stored;
}

void Analysis::Revised(std::int64_t run_id, std::int64_t revision) {
  if (auto it = runs_.find(run_id); it != runs_.end()) it->second.revision = revision;
}

bool Analysis::FeedInMemory(std::int64_t run_id, const wire::StepRecord& record, Stored how) {
  if (!options_.enabled) return true;
  analyzers::RunAnalyzer& analyzer = runs_.at(run_id).analyzer;
  const std::optional<std::int64_t> judged = analyzer.judged_through();
  const bool judged_already = judged && record.step <= *judged;
  if (how == Stored::kDuplicate && judged_already) return true;
  if (how == Stored::kReplaced && judged_already) return false;
  episodes_.Apply(run_id, analyzer.Add(record));
  return true;
}

void Analysis::Feed(std::int64_t run_id, const wire::StepRecord& record, Stored how) {
  if (FeedInMemory(run_id, record, how)) return;
  Rewind(run_id, record.step);
  episodes_.Apply(run_id, runs_.at(run_id).analyzer.Add(record));
}

void Analysis::Rewind(std::int64_t run_id, std::int64_t step) {
  analyzers::RunAnalyzer& old = runs_.at(run_id).analyzer;
  episodes_.Apply(run_id, old.Supersede(step));
  const std::int64_t attempt = old.attempt() + 1;
  CachedStatement(db_, kSetAttempt).Bind(1, attempt).Bind(2, run_id).Step();
  // The detectors relearn from the stored steps before `step` (their values are final); judgement
  // continues at `step` with the records as they are sent again.
  analyzers::RunAnalyzer fresh(options_.analyzers, attempt);
  const std::int64_t first_step = StoredFirstStep(run_id).value_or(step);
  fresh.Resume(first_step, step - 1, WarmupRecords(run_id, step - 1), {});
  old = std::move(fresh);
}

std::optional<StoredEpisode> Analysis::StoredEpisodeOf(std::int64_t run_id, analyzers::Kind kind,
                                                       std::int64_t first_step,
                                                       std::int64_t attempt) {
  CachedStatement episode_row(db_, kEpisodeRow);
  episode_row.Bind(1, run_id).Bind(2, analyzers::KindName(kind)).Bind(3, first_step);
  episode_row.Bind(4, attempt);
  if (!episode_row.Step()) return std::nullopt;
  return StoredEpisode{episode_row.Int(0), ParseStoredSeverity(episode_row.Text(1)),
                       ParseStoredState(episode_row.Text(2)) == analyzers::AlertState::kOpen};
}

void Analysis::Upsert(std::int64_t run_id, const analyzers::AlertEvent& e, double now) {
  const bool resolved = e.action == analyzers::AlertEvent::Action::kResolve;
  std::optional<StoredEpisode> before;
  if (notifications_.enabled()) before = StoredEpisodeOf(run_id, e.kind, e.first_step, e.attempt);
  std::int64_t alert_id = 0;
  {
    CachedStatement upsert_alert(db_, kUpsertAlert);
    upsert_alert.Bind(1, run_id)
        .Bind(2, analyzers::KindName(e.kind))
        .Bind(3, analyzers::SeverityName(e.severity))
        .Bind(4, analyzers::AlertStateName(analyzers::EpisodeState(e)));
    upsert_alert.Bind(5, e.first_step).Bind(6, e.last_step).Bind(7, e.message);
    upsert_alert.Bind(8, e.evidence.dump()).BindNumber(9, now);
    upsert_alert.BindNumber(10, resolved ? std::optional<double>(now) : std::nullopt);
    upsert_alert.Bind(11, e.attempt);
    upsert_alert.Step();
    alert_id = upsert_alert.Int(0);
  }
  notifications_.Record(alert_id, before, e, now);
}

void Analysis::ResolveCause(std::int64_t run_id, std::int64_t attempt, nlohmann::json& caused_by) {
  const std::optional<analyzers::Kind> kind =
      analyzers::ParseKind(caused_by.value("kind", std::string()));
  if (!kind) return;
  if (std::optional<StoredEpisode> cause =
          StoredEpisodeOf(run_id, *kind, caused_by.value("first_step", std::int64_t{0}), attempt))
    caused_by["id"] = cause->id;
}

void Analysis::Finish(double now) {
  if (!options_.enabled) return;
  // Causes first, so that a symptom's evidence.caused_by can name its cause's id (stored alerts are
  // addressed by id).
  for (bool symptoms : {false, true}) {
    for (const auto& [run_id, latest] : episodes_.episodes()) {  // only an episode's latest state
      if (latest.evidence.contains("caused_by") != symptoms) continue;
      if (!symptoms) {
        Upsert(run_id, latest, now);
        continue;
      }
      analyzers::AlertEvent e = latest;
      ResolveCause(run_id, e.attempt, e.evidence["caused_by"]);
      Upsert(run_id, e, now);
    }
  }
  for (std::int64_t run_id : touched_) {
    std::optional<std::int64_t> judged = runs_.at(run_id).analyzer.judged_through();
    if (!judged) continue;
    CachedStatement(db_, kSetJudgedThrough).Bind(1, *judged).Bind(2, run_id).Step();
  }
  notifications_.Finish();
}

void Analysis::Settle() {
  touched_.clear();
  episodes_.Clear();
}

Analysis::Batch::~Batch() {
  // The feeding thread first: it may still hold the analyzers of a batch whose write failed.
  if (analysis_.feeder_) analysis_.feeder_->Cancel();
  if (!committed_) analysis_.Abandon();
}

void Analysis::Batch::Start(const StoredBatch& stored) {
  if (!analysis_.enabled()) return;
  stored_.emplace(stored);
  analysis_.feeder_->Begin(stored.records.size(), [this](std::size_t i) {
    return analysis_.FeedInMemory(stored_->run_of[i], stored_->records[i], stored_->how[i]);
  });
}

void Analysis::Batch::Judge(const std::unordered_map<std::int64_t, std::int64_t>& revisions,
                            double now) {
  if (!analysis_.enabled()) return;
  if (!stored_) throw std::logic_error("Analysis::Batch::Judge without Start");
  for (std::size_t i = analysis_.feeder_->Finish(); i < stored_->records.size(); ++i)
    analysis_.Feed(stored_->run_of[i], stored_->records[i], stored_->how[i]);
  for (const auto& [run_id, revision] : revisions) analysis_.Revised(run_id, revision);
  analysis_.Finish(now);
}

void Analysis::Forget(std::int64_t run_id) {
  if (auto it = runs_.find(run_id); it != runs_.end()) {
    lru_.erase(it->second.lru);
    runs_.erase(it);
  }
}

void Analysis::Abandon() {
  for (std::int64_t run_id : touched_) {
    if (auto it = runs_.find(run_id); it != runs_.end()) {
      lru_.erase(it->second.lru);
      runs_.erase(it);
    }
  }
  Settle();
}

}  // namespace lossguard::store
