#include "store/writer.h"

#include <algorithm>
#include <limits>

#include "store/alert_rows.h"
#include "store/rollup_rows.h"
#include "store/step_writes.h"

namespace lossguard::store {

namespace {
// A pending block older than this is refreshed even if its run has not moved on.
constexpr double kStaleSeconds = 5;
// Stale blocks refreshed per transaction at most, so that a burst of stopped runs does not stall
// one batch.
constexpr int kStaleRefreshes = 8;
// Open episodes an acknowledgement lists per run at most (a run has a handful: one per kind and
// rank at a time).
constexpr int kMaxVerdictsPerRun = 64;

std::string Sql(const std::string& head, const char* columns, const std::string& tail) {
  return head + columns + tail;
}

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
constexpr const char* kMarkPending =
    "INSERT INTO rollup_pending (run_id, bucket, since) VALUES (?, ?, ?) ON CONFLICT DO NOTHING";
constexpr const char* kPendingBehind =
    "SELECT bucket FROM rollup_pending WHERE run_id = ? AND bucket < ?";
constexpr const char* kPendingStale =
    "SELECT run_id, bucket FROM rollup_pending WHERE since < ? ORDER BY since LIMIT ?";
constexpr const char* kClearPending =
    "DELETE FROM rollup_pending WHERE run_id = ? AND bucket BETWEEN ? AND ?";
constexpr const char* kUpsertGuardAction =
    "INSERT INTO guard_actions (run_id, step, rank, action, kind, episode_id, detail, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step, rank) DO UPDATE SET action = "
    "excluded.action, kind = excluded.kind, episode_id = excluded.episode_id, detail = "
    "excluded.detail, received_at = excluded.received_at";
constexpr const char* kDeleteGuardAction =
    "DELETE FROM guard_actions WHERE run_id = ? AND step = ? AND rank = ?";

// In key order (step, rank): one sequential read of the block, all ranks at once.
const std::string& BlockRowsSql() {
  static const std::string sql = Sql("SELECT ", kRawBlockColumns,
                                     ", rank FROM steps WHERE run_id = ? AND step BETWEEN ? AND ?");
  return sql;
}

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

const std::string& Writer::MergeChildrenSql(int level, std::size_t ranks) {
  auto [it, created] = merge_children_sql_.try_emplace({level, ranks});
  if (created) {
    // The ranks are listed so that both engines seek the primary key (run_id, rank, width, bucket)
    // once per rank; without them the scan would cover every rollup row of the run.
    std::string list = "?";
    for (std::size_t i = 1; i < ranks; ++i) list += ", ?";
    const std::string parent = "bucket / " + std::to_string(kFanOut);
    it->second =
        ("INSERT INTO step_rollups (run_id, rank, width, bucket, " + std::string(kRollupColumns) +
         ") SELECT run_id, rank, " + std::to_string(kRollupWidths[level]) + ", " + parent + ", " +
         RollupMergeExpressions() + " FROM step_rollups WHERE run_id = ? AND rank IN (" + list +
         ") AND width = " + std::to_string(kRollupWidths[level - 1]) +
         " AND bucket BETWEEN ? AND ? GROUP BY run_id, rank, " + parent +
         " ON CONFLICT (run_id, rank, width, bucket) DO UPDATE SET " + RollupExcludedAssignments());
  }
  return it->second;
}

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
  return records;
}

IngestResult Writer::Ingest(const std::vector<wire::StepRecord>& records,
                            const std::vector<EncodedStepValues>& encoded, double now) {
  IngestResult result;
  std::unordered_map<std::string, std::int64_t> created_runs;
  std::unordered_map<std::int64_t, std::int64_t> new_records_per_run;
  std::set<StepBlock> changed;
  std::map<std::int64_t, std::int64_t> newest_step;
  BatchBlocks batch;
  std::unordered_map<std::int64_t, std::int64_t> revisions;
  Transaction transaction(*db_);
  Analysis::Batch judging = analysis_.Begin();
  {
    const std::vector<std::int64_t> run_of = LockRuns(records, now, created_runs, judging);
    const std::vector<Analysis::Stored> stored = steps_->Write(run_of, records, encoded, now);
    for (std::size_t i = 0; i < records.size(); ++i) {
      const wire::StepRecord& r = records[i];
      const std::int64_t run_id = run_of[i];
      new_records_per_run.try_emplace(run_id, 0);
      BatchBlock& block = batch[{run_id, r.step / kRollupWidths[1], r.rank}];
      int& slot = block.record[static_cast<std::size_t>(r.step % kRollupWidths[1])];
      if (slot < 0) ++block.steps;
      slot = static_cast<int>(i);
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
      revisions.emplace(run_id, touch_run.Int(0));
    }
    judging.Judge({records, run_of, stored, revisions}, now);
    UpdateRollups(changed, newest_step, records, batch, now);
    ReadVerdicts(records, run_of, result);
    transaction.Commit();
    judging.Committed();
  }
  run_ids_.merge(created_runs);
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

void Writer::UpdateRollups(const std::set<StepBlock>& changed,
                           const std::map<std::int64_t, std::int64_t>& newest_step,
                           const std::vector<wire::StepRecord>& records, const BatchBlocks& batch,
                           double now) {
  // Blocks below this bucket are a whole block behind the run's newest step: due now.
  auto settled_below = [&](std::int64_t run_id) {
    return newest_step.at(run_id) / kRollupWidths[1] - 1;
  };
  std::set<StepBlock> due;
  std::set<StepBlock> marked;  // due blocks with a pending row to clear
  for (const auto& [run_id, newest] : newest_step) {
    CachedStatement pending_behind(*db_, kPendingBehind);
    pending_behind.Bind(1, run_id).Bind(2, settled_below(run_id));
    while (pending_behind.Step()) marked.insert({run_id, pending_behind.Int(0)});
  }
  std::set<StepBlock> stale;
  {
    CachedStatement pending_stale(*db_, kPendingStale);
    pending_stale.BindNumber(1, now - kStaleSeconds).Bind(2, std::int64_t{kStaleRefreshes});
    while (pending_stale.Step()) stale.insert({pending_stale.Int(0), pending_stale.Int(1)});
  }
  // Another run's stale block only if no other server is writing that run now (its lock is free);
  // a run of this batch is locked by this transaction already.
  for (const StepBlock& block : stale) {
    if (db_->TryLockRun(block.run_id)) marked.insert(block);
  }
  due = marked;
  // A changed block that is already due (a batch of many steps) is refreshed without ever being
  // marked; the others wait, marked, in the same transaction as their steps.
  for (const StepBlock& block : changed) {
    if (block.bucket < settled_below(block.run_id)) {
      due.insert(block);
      continue;
    }
    CachedStatement(*db_, kMarkPending)
        .Bind(1, block.run_id)
        .Bind(2, block.bucket)
        .BindNumber(3, now)
        .Step();
  }
  RefreshBlocks(due, marked, records, batch);
}

namespace {
// The ranges of consecutive buckets in a sorted set of one run's buckets.
template <typename Buckets, typename Fn>
void ForEachRange(const Buckets& buckets, Fn&& range) {
  for (auto it = buckets.begin(); it != buckets.end();) {
    const std::int64_t first = *it;
    std::int64_t last = first;
    for (++it; it != buckets.end() && *it == last + 1; ++it) last = *it;
    range(first, last);
  }
}
}  // namespace

void Writer::RefreshBlocks(const std::set<StepBlock>& blocks, const std::set<StepBlock>& marked,
                           const std::vector<wire::StepRecord>& records, const BatchBlocks& batch) {
  const std::int64_t width = kRollupWidths[1];
  std::map<std::int64_t, std::set<std::int64_t>> due, cleared, parents;  // by run: buckets
  std::map<std::int64_t, std::set<std::int64_t>> ranks;                  // by run: refreshed
  for (const StepBlock& block : blocks) due[block.run_id].insert(block.bucket);
  for (const StepBlock& block : marked) cleared[block.run_id].insert(block.bucket);
  // Level 1: each range of consecutive due blocks read in one scan (in key order, all ranks), and
  // their rows written in a few multi-row upserts.
  std::vector<std::pair<BlockKey, BlockStats>> rows;
  for (const auto& entry : due) {
    // Named, not bound: clang 14 cannot capture structured bindings in a lambda.
    const std::int64_t run_id = entry.first;
    std::set<std::int64_t> read_back;  // the buckets rolled up from their stored rows
    for (std::int64_t bucket : entry.second) {
      const auto begin =
          batch.lower_bound({run_id, bucket, std::numeric_limits<std::int64_t>::min()});
      const auto end =
          batch.upper_bound({run_id, bucket, std::numeric_limits<std::int64_t>::max()});
      const bool whole = begin != end && !marked.contains({run_id, bucket}) &&
                         std::all_of(begin, end, [](const auto& block) {
                           return block.second.steps == kRollupWidths[1];
                         });
      if (!whole) {
        read_back.insert(bucket);
        continue;
      }
      for (auto it = begin; it != end; ++it) {
        BlockStats stats;
        for (int index : it->second.record) {
          stats.Merge(RecordToBlock(records[static_cast<std::size_t>(index)]));
        }
        rows.push_back({{run_id, it->first.rank, bucket}, stats});
        ranks[run_id].insert(it->first.rank);
      }
      parents[run_id].insert(bucket / kFanOut);
    }
    ForEachRange(read_back, [&](std::int64_t first, std::int64_t last) {
      std::map<std::pair<std::int64_t, std::int64_t>, BlockStats> stats;  // (bucket, rank)
      CachedStatement block_rows(*db_, BlockRowsSql());
      block_rows.Bind(1, run_id).Bind(2, first * width).Bind(3, last * width + width - 1);
      while (block_rows.Step()) {
        stats[{block_rows.Int(0) / width, block_rows.Int(kRawBlockColumnCount)}].Merge(
            RawRowToBlock(block_rows));
      }
      for (const auto& [at, block] : stats) {
        rows.push_back({{run_id, at.second, at.first}, block});
        ranks[run_id].insert(at.second);
      }
      for (std::int64_t p = first / kFanOut; p <= last / kFanOut; ++p) parents[run_id].insert(p);
    });
  }
  WriteLevelOne(rows);
  for (const auto& entry : cleared) {
    const std::int64_t run_id = entry.first;
    const std::set<std::int64_t>& buckets = entry.second;
    ForEachRange(buckets, [&](std::int64_t first, std::int64_t last) {
      CachedStatement(*db_, kClearPending).Bind(1, run_id).Bind(2, first).Bind(3, last).Step();
    });
  }
  // Coarser levels: each range of consecutive parents merged from its children, the refreshed
  // ranks in a few statements (the list padded to a power of two with its last rank, so that a
  // handful of prepared statements serve every world size).
  constexpr std::size_t kMaxRanksPerMerge = 512;
  for (int level = 2; level < kLevels && !parents.empty(); ++level) {
    std::map<std::int64_t, std::set<std::int64_t>> next;
    for (const auto& entry : parents) {
      const std::int64_t run_id = entry.first;
      const std::set<std::int64_t>& buckets = entry.second;
      const std::vector<std::int64_t> listed(ranks[run_id].begin(), ranks[run_id].end());
      ForEachRange(buckets, [&](std::int64_t first, std::int64_t last) {
        for (std::size_t begin = 0; begin < listed.size(); begin += kMaxRanksPerMerge) {
          const std::size_t count = std::min(kMaxRanksPerMerge, listed.size() - begin);
          std::size_t padded = 1;
          while (padded < count) padded *= 2;
          CachedStatement merge(*db_, MergeChildrenSql(level, padded));
          merge.Bind(1, run_id);
          for (std::size_t i = 0; i < padded; ++i)
            merge.Bind(static_cast<int>(i) + 2, listed[begin + std::min(i, count - 1)]);
          const int after = static_cast<int>(padded) + 2;
          merge.Bind(after, first * kFanOut).Bind(after + 1, last * kFanOut + kFanOut - 1);
          merge.Step();
        }
        for (std::int64_t p = first / kFanOut; p <= last / kFanOut; ++p) next[run_id].insert(p);
      });
    }
    parents = std::move(next);
  }
}

void Writer::WriteLevelOne(const std::vector<std::pair<BlockKey, BlockStats>>& rows) {
  // run_id, rank, width, bucket, then kRollupColumns
  constexpr std::size_t kBindsPerRow = 4 + kRollupColumnCount;
  std::size_t done = 0;
  for (std::size_t size : {std::size_t{64}, std::size_t{8}, std::size_t{1}}) {
    auto [it, created] = upsert_rows_sql_.try_emplace(size);
    if (created) {
      it->second = "INSERT INTO step_rollups (run_id, rank, width, bucket, " +
                   std::string(kRollupColumns) + ") VALUES " + SqlValuesRows(size, kBindsPerRow) +
                   " ON CONFLICT (run_id, rank, width, bucket) DO UPDATE SET " +
                   RollupExcludedAssignments();
    }
    if (rows.size() - done < size) continue;
    CachedStatement upsert(*db_, it->second);
    for (; rows.size() - done >= size; done += size) {
      upsert.Reset();
      for (std::size_t row = 0; row < size; ++row) {
        const auto& [key, stats] = rows[done + row];
        const int first = static_cast<int>(row * kBindsPerRow) + 1;
        upsert.Bind(first, key.run_id).Bind(first + 1, key.rank).Bind(first + 2, kRollupWidths[1]);
        upsert.Bind(first + 3, key.bucket);
        BindRollup(upsert, first + 4, stats);
      }
      upsert.Step();
    }
  }
}

}  // namespace lossguard::store
