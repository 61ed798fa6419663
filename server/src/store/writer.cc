#include "store/writer.h"

#include <algorithm>
#include <optional>

#include "store/alert_rows.h"
#include "store/rollup_rows.h"
#include "store/step_writes.h"

namespace lossguard::store {

namespace {
// Open episodes an acknowledgement lists per run at most (a run has a handful: one per kind and
// rank at a time).
constexpr int kMaxVerdictsPerRun = 64;

constexpr const char* kRunName = "SELECT name FROM runs WHERE id = ?";
constexpr const char* kFindRun = "SELECT id FROM runs WHERE name = ?";
// Another server may create the same run at the same moment: its row then wins (this statement
// waits for its commit) and kFindRun reads it.
constexpr const char* kInsertRun =
    "INSERT INTO runs (name, first_seen, last_seen) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING "
    "RETURNING id";
constexpr const char* kTouchRun =
    "UPDATE runs SET last_seen = ?, record_count = record_count + ?, revision = revision + 1 WHERE "
    "id = ? RETURNING revision";
constexpr const char* kUpsertGuardAction =
    "INSERT INTO guard_actions (run_id, step, rank, action, kind, episode_id, detail, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step, rank) DO UPDATE SET action = "
    "excluded.action, kind = excluded.kind, episode_id = excluded.episode_id, detail = "
    "excluded.detail, received_at = excluded.received_at";
constexpr const char* kDeleteGuardAction =
    "DELETE FROM guard_actions WHERE run_id = ? AND step = ? AND rank = ?";

const std::string& OpenVerdictsSql() {
  static const std::string sql = std::string(kAlertColumns) +
                                 " WHERE a.run_id = ? AND a.state = 'open' AND a.severity <> "
                                 "'info' ORDER BY a.id LIMIT " +
                                 std::to_string(kMaxVerdictsPerRun);
  return sql;
}
}  // namespace

Writer::Writer(std::unique_ptr<Database> db, AnalysisOptions analysis)
    : db_(std::move(db)), analysis_(*db_, std::move(analysis)), steps_(MakeStepWrites(*db_)) {}

std::int64_t Writer::RunId(const std::string& name, double now,
                           std::unordered_map<std::string, std::int64_t>& created) {
  if (auto it = run_ids_.find(name); it != run_ids_.end()) return it->second;
  if (auto it = created.find(name); it != created.end()) return it->second;
  auto find = [&]() -> std::optional<std::int64_t> {
    CachedStatement find_run(*db_, kFindRun);
    find_run.Bind(1, name);
    if (!find_run.Step()) return std::nullopt;
    return find_run.Int(0);
  };
  if (std::optional<std::int64_t> id = find()) {
    run_ids_.emplace(name, *id);  // committed before this transaction
    return *id;
  }
  std::optional<std::int64_t> id;
  {
    CachedStatement insert_run(*db_, kInsertRun);
    insert_run.Bind(1, name).BindNumber(2, now).BindNumber(3, now);
    if (insert_run.Step()) id = insert_run.Int(0);
  }
  if (!id) {  // another server created it since find()
    id = find();
    if (!id) throw StorageError("run \"" + name + "\" was neither found nor created");
    run_ids_.emplace(name, *id);
    return *id;
  }
  created.emplace(name, *id);  // only cached once the transaction commits
  return *id;
}

std::vector<std::int64_t> Writer::LockRuns(const std::vector<wire::StepRecord>& records, double now,
                                           std::unordered_map<std::string, std::int64_t>& created,
                                           Analysis::Batch& judging) {
  std::vector<std::int64_t> ids;
  ids.reserve(records.size());
  for (const wire::StepRecord& r : records) ids.push_back(RunId(r.run, now, created));
  std::map<std::int64_t, const std::string*> runs;  // ascending: two servers never wait in a cycle
  for (std::size_t i = 0; i < records.size(); ++i) runs.emplace(ids[i], &records[i].run);
  std::set<std::string> deleted;
  for (const auto& [run_id, name] : runs) {
    db_->LockRun(run_id);
    // A cached id whose run was deleted since (by this server or another one sharing the
    // database): the name now belongs to a new run, created below.
    bool live = false;
    {
      CachedStatement run_name(*db_, kRunName);
      run_name.Bind(1, run_id);
      live = run_name.Step() && run_name.Text(0) == *name;
    }
    if (!live) {
      deleted.insert(*name);
      continue;
    }
    judging.Prepare(run_id);  // under the lock, before this batch's steps of the run are written
  }
  if (deleted.empty()) return ids;
  for (const std::string& name : deleted) run_ids_.erase(name);
  std::set<std::int64_t> fresh;
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (!deleted.count(records[i].run)) continue;
    analysis_.Forget(ids[i]);
    ids[i] = RunId(records[i].run, now, created);
    fresh.insert(ids[i]);
  }
  for (std::int64_t run_id : fresh) {
    db_->LockRun(run_id);
    judging.Prepare(run_id);
  }
  return ids;
}

std::optional<std::int64_t> Writer::DeleteRun(std::string_view name) {
  Transaction transaction(*db_);
  std::optional<std::int64_t> found;
  {
    CachedStatement find_run(*db_, kFindRun);
    find_run.Bind(1, name);
    if (find_run.Step()) found = find_run.Int(0);
  }
  if (!found || IsDeletedRunName(name)) return std::nullopt;
  const std::int64_t run_id = *found;
  db_->LockRun(run_id);  // not beside another server's batch of the run
  std::int64_t records = 0;
  {
    CachedStatement rename(
        *db_, "UPDATE runs SET name = ?, last_seen = 0 WHERE id = ? RETURNING record_count");
    rename.Bind(1, DeletedRunName(run_id)).Bind(2, run_id);
    if (!rename.Step())
      throw StorageError("run \"" + std::string(name) + "\" vanished under its lock");
    records = rename.Int(0);
  }
  for (const char* sql : {
           "DELETE FROM notification_deliveries WHERE notification_id IN (SELECT n.id FROM "
           "notifications n JOIN alerts a ON a.id = n.alert_id WHERE a.run_id = ?)",
           "DELETE FROM notifications WHERE alert_id IN (SELECT id FROM alerts WHERE run_id = ?)",
           "DELETE FROM alerts WHERE run_id = ?",
           "DELETE FROM guard_actions WHERE run_id = ?",
           "DELETE FROM rollup_pending WHERE run_id = ?",
       }) {
    CachedStatement(*db_, sql).Bind(1, run_id).Step();
  }
  transaction.Commit();
  run_ids_.erase(std::string(name));
  analysis_.Forget(run_id);
  ForgetCarried(run_id);
  return records;
}

void Writer::GroupBatch(const std::vector<wire::StepRecord>& records,
                        const std::vector<std::int64_t>& run_of,
                        const std::vector<Analysis::Stored>& stored, BatchBlocks& batch,
                        CarriedBlocks& staged) {
  // Sorted once instead of a tree insert per record: at large world sizes a batch holds a block
  // of each of a thousand ranks. The index breaks ties, so a key's records stay in batch order.
  std::vector<std::pair<BatchBlockKey, int>> placed;
  placed.reserve(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    const wire::StepRecord& r = records[i];
    placed.push_back({{run_of[i], r.step / kRollupWidths[1], r.rank}, static_cast<int>(i)});
  }
  // A trainer's consecutive steps of one rank arrive in key order already.
  if (!std::is_sorted(placed.begin(), placed.end())) std::sort(placed.begin(), placed.end());
  batch.reserve(placed.size());
  CarriedRanks* ranks = nullptr;  // of current_block
  std::optional<StepBlock> current_block;
  for (auto it = placed.begin(); it != placed.end();) {
    const BatchBlockKey key = it->first;
    const StepBlock block{key.run_id, key.bucket};
    if (current_block != block) {
      current_block = block;
      ranks = &staged[block];
    }
    BatchBlock steps;
    CarriedRank seen;
    for (; it != placed.end() && it->first == key; ++it) {
      const auto index = static_cast<std::size_t>(it->second);
      int& slot = steps.record[static_cast<std::size_t>(records[index].step % kRollupWidths[1])];
      if (slot < 0) ++steps.steps;
      slot = it->second;
      seen.Add(records[index], stored[index]);
    }
    batch.emplace_hint(batch.end(), key, steps);
    ranks->emplace_hint(ranks->end(), key.rank, seen);
  }
}

IngestResult Writer::Ingest(const std::vector<wire::StepRecord>& records,
                            const std::vector<EncodedStepValues>& encoded, double now) {
  IngestResult result;
  std::unordered_map<std::string, std::int64_t> created_runs;
  std::unordered_map<std::int64_t, std::int64_t> new_records_per_run;
  std::set<StepBlock> changed;
  std::map<std::int64_t, std::int64_t> newest_step;
  BatchBlocks batch;
  CarriedBlocks staged;
  std::unordered_map<std::int64_t, std::int64_t> revisions;
  Transaction transaction(*db_);
  Analysis::Batch judging = analysis_.Begin();
  const std::vector<std::int64_t> run_of = LockRuns(records, now, created_runs, judging);
  std::vector<Analysis::Stored> stored(records.size());
  // Where each run's complete coarser blocks ended before this batch (CompleteBlocksBelow).
  std::map<std::int64_t, std::int64_t> settled_before;
  for (std::int64_t run_id : run_of) {
    if (settled_before.contains(run_id)) continue;
    settled_before.emplace(run_id, SettledBuckets(NewestStoredStep(*db_, run_id).value_or(0)));
  }
  judging.Start({records, run_of, stored});
  steps_->Write(run_of, records, encoded, now, stored,
                [&judging](std::size_t through) { judging.StoredThrough(through); });
  GroupBatch(records, run_of, stored, batch, staged);
  for (std::size_t i = 0; i < records.size(); ++i) {
    const wire::StepRecord& r = records[i];
    const std::int64_t run_id = run_of[i];
    new_records_per_run.try_emplace(run_id, 0);
    ++result.accepted;
    if (stored[i] == Analysis::Stored::kDuplicate) {
      ++result.duplicates;
      continue;
    }
    if (stored[i] == Analysis::Stored::kNew) {
      ++new_records_per_run[run_id];
    } else {
      ++result.replaced;
    }
    if (stored[i] == Analysis::Stored::kReplaced || r.extra.contains("guard"))
      WriteGuardAction(run_id, r, now, result);
    changed.insert({run_id, r.step / kRollupWidths[1]});
    auto [newest, inserted] = newest_step.try_emplace(run_id, r.step);
    if (!inserted) newest->second = std::max(newest->second, r.step);
  }
  for (const auto& [run_id, added] : new_records_per_run) {
    CachedStatement touch_run(*db_, kTouchRun);
    touch_run.BindNumber(1, now).Bind(2, added).Bind(3, run_id);
    touch_run.Step();
    const std::int64_t revision = touch_run.Int(0);
    revisions.emplace(run_id, revision);
    // Another server stored batches of the run since this writer's last: what it carries of the
    // run may be missing their changes.
    if (auto it = carried_revision_.find(run_id);
        it != carried_revision_.end() && it->second + 1 != revision)
      ForgetCarried(run_id);
  }
  // The rollups before the judgement: the analysis thread is still feeding meanwhile.
  std::set<StepBlock> fresh, refreshed;
  UpdateRollups(changed, newest_step, std::move(settled_before), records, batch, staged, now, fresh,
                refreshed);
  judging.Judge(revisions, now);
  ReadVerdicts(records, run_of, result);
  transaction.Commit();
  judging.Committed();
  run_ids_.merge(created_runs);
  CarryCommitted(staged, fresh, refreshed, revisions);
  return result;
}

void Writer::WriteGuardAction(std::int64_t run_id, const wire::StepRecord& record, double now,
                              IngestResult& result) {
  std::optional<wire::GuardAction> action = wire::GuardActionOf(record);
  if (!action) {  // a replaced record may have dropped the one it had
    CachedStatement(*db_, kDeleteGuardAction)
        .Bind(1, run_id)
        .Bind(2, record.step)
        .Bind(3, record.rank)
        .Step();
    return;
  }
  CachedStatement upsert(*db_, kUpsertGuardAction);
  upsert.Bind(1, run_id).Bind(2, record.step).Bind(3, record.rank);
  upsert.Bind(4, action->action).Bind(5, action->kind).Bind(6, action->episode);
  upsert.Bind(7, wire::ToJson(*action).dump()).BindNumber(8, now);
  upsert.Step();
  ++result.guard_actions[action->action];
}

void Writer::ReadVerdicts(const std::vector<wire::StepRecord>& records,
                          const std::vector<std::int64_t>& run_of, IngestResult& result) {
  std::map<std::int64_t, const std::string*> runs;
  for (std::size_t i = 0; i < records.size(); ++i) {
    runs.try_emplace(run_of[i], &records[i].run);
    auto [verdicts, inserted] = result.verdicts.try_emplace(records[i].run);
    if (inserted || records[i].step > verdicts->second.through_step)
      verdicts->second.through_step = records[i].step;
  }
  for (const auto& [run_id, name] : runs) {
    CachedStatement open_verdicts(*db_, OpenVerdictsSql());
    open_verdicts.Bind(1, run_id);
    std::vector<Alert>& open = result.verdicts.at(*name).open;
    while (open_verdicts.Step()) open.push_back(ReadAlert(open_verdicts));
  }
}

}  // namespace lossguard::store
