#include "store/writer.h"

#include <algorithm>

#include "store/rollup_rows.h"

namespace lossguard::store {

namespace {
// New keys (the common case) cost one statement; an existing key is then updated only if the record
// differs, so the changed-row count tells new, replaced and duplicate apart without RETURNING.
constexpr const char* kInsertStep = R"sql(
INSERT INTO steps (run_id, step, rank, loss, grad_norm, ref_loss, tokens, record, received_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING)sql";
constexpr const char* kReplaceStep = R"sql(
UPDATE steps SET loss = ?4, grad_norm = ?5, ref_loss = ?6, tokens = ?7, record = ?8, received_at = ?9,
                 version = version + 1
WHERE run_id = ?1 AND step = ?2 AND rank = ?3 AND record <> ?8)sql";

// A pending block older than this is refreshed even if its run has not moved on.
constexpr double kStaleSeconds = 5;
// Stale blocks refreshed per transaction at most, so that a burst of stopped runs does not stall
// one batch.
constexpr int kStaleRefreshes = 8;

void BindStep(Statement& statement, std::int64_t run_id, const wire::StepRecord& r,
              const std::string& canonical, double now) {
  statement.Reset();
  statement.Bind(1, run_id).Bind(2, r.step).Bind(3, r.rank).BindNumber(4, r.loss).BindNumber(
      5, r.grad_norm);
  statement.BindNumber(6, r.ref_loss).Bind(7, r.tokens).Bind(8, canonical).BindNumber(9, now);
}

std::string Sql(const std::string& head, const char* columns, const std::string& tail) {
  return head + columns + tail;
}

// "a = excluded.a, b = excluded.b, ..." for the comma-separated `columns`.
std::string ExcludedAssignments(std::string_view columns) {
  std::string out;
  while (!columns.empty()) {
    std::size_t comma = columns.find(',');
    std::string_view column = columns.substr(0, comma);
    while (!column.empty() && column.front() == ' ') column.remove_prefix(1);
    if (!out.empty()) out += ", ";
    out += std::string(column) + " = excluded." + std::string(column);
    columns = comma == std::string_view::npos ? std::string_view() : columns.substr(comma + 1);
  }
  return out;
}

}  // namespace

Store::Writer::Writer(std::unique_ptr<Database> db, AnalysisOptions analysis)
    : db_(std::move(db)),
      analysis_(*db_, std::move(analysis)),
      find_run_(*db_, "SELECT id FROM runs WHERE name = ?"),
      // Another server may create the same run at the same moment: its row then wins (this
      // statement waits for its commit) and find_run_ reads it.
      insert_run_(*db_,
                  "INSERT INTO runs (name, first_seen, last_seen) VALUES (?, ?, ?) ON CONFLICT "
                  "(name) DO NOTHING RETURNING id"),
      touch_run_(*db_,
                 "UPDATE runs SET last_seen = ?, record_count = record_count + ?, revision = "
                 "revision + 1 WHERE id = ? RETURNING revision"),
      insert_step_(*db_, kInsertStep),
      replace_step_(*db_, kReplaceStep),
      // In key order (step, rank): one sequential read of the block, all ranks at once.
      block_rows_(*db_, Sql("SELECT ", kRawBlockColumns,
                            ", rank FROM steps WHERE run_id = ? AND step BETWEEN ? AND ?")),
      child_blocks_(*db_, Sql("SELECT ", kRollupColumns,
                              " FROM step_rollups WHERE run_id = ? AND rank = ? AND width = ? AND "
                              "bucket BETWEEN ? AND ?")),
      upsert_rollup_(*db_, Sql("INSERT INTO step_rollups (run_id, rank, width, bucket, ",
                               kRollupColumns,
                               ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                               "ON CONFLICT (run_id, rank, width, bucket) DO UPDATE SET " +
                                   ExcludedAssignments(kRollupColumns))),
      mark_pending_(*db_,
                    "INSERT INTO rollup_pending (run_id, bucket, since) VALUES (?, ?, ?) ON "
                    "CONFLICT DO NOTHING"),
      pending_behind_(*db_, "SELECT bucket FROM rollup_pending WHERE run_id = ? AND bucket < ?"),
      pending_stale_(*db_,
                     "SELECT run_id, bucket FROM rollup_pending WHERE since < ? ORDER BY since "
                     "LIMIT ?"),
      clear_pending_(*db_, "DELETE FROM rollup_pending WHERE run_id = ? AND bucket = ?") {}

std::int64_t Store::Writer::RunId(const std::string& name, double now,
                                  std::unordered_map<std::string, std::int64_t>& created) {
  if (auto it = run_ids_.find(name); it != run_ids_.end()) return it->second;
  if (auto it = created.find(name); it != created.end()) return it->second;
  auto find = [&]() -> std::optional<std::int64_t> {
    find_run_.Reset();
    find_run_.Bind(1, name);
    std::optional<std::int64_t> found;
    if (find_run_.Step()) found = find_run_.Int(0);
    find_run_.Reset();
    return found;
  };
  if (std::optional<std::int64_t> id = find()) {
    run_ids_.emplace(name, *id);  // committed before this transaction
    return *id;
  }
  insert_run_.Reset();
  insert_run_.Bind(1, name).BindNumber(2, now).BindNumber(3, now);
  std::optional<std::int64_t> id;
  if (insert_run_.Step()) id = insert_run_.Int(0);
  insert_run_.Reset();
  if (!id) {  // another server created it since find()
    id = find();
    if (!id) throw StorageError("run \"" + name + "\" was neither found nor created");
    run_ids_.emplace(name, *id);
    return *id;
  }
  created.emplace(name, *id);  // only cached once the transaction commits
  return *id;
}

std::vector<std::int64_t> Store::Writer::LockRuns(
    const std::vector<wire::StepRecord>& records, double now,
    std::unordered_map<std::string, std::int64_t>& created) {
  std::vector<std::int64_t> ids;
  ids.reserve(records.size());
  for (const wire::StepRecord& r : records) ids.push_back(RunId(r.run, now, created));
  std::set<std::int64_t> runs(ids.begin(), ids.end());
  for (std::int64_t run_id : runs) {  // ascending: two servers never wait on each other in a cycle
    db_->LockRun(run_id);
    analysis_.Prepare(run_id);  // under the lock, before this batch's steps of the run are written
  }
  return ids;
}

IngestResult Store::Writer::Ingest(const std::vector<wire::StepRecord>& records,
                                   const std::vector<std::string>& canonical, double now) {
  IngestResult result;
  std::unordered_map<std::string, std::int64_t> created_runs;
  std::unordered_map<std::int64_t, std::int64_t> new_records_per_run;
  std::set<StepBlock> changed;
  std::map<std::int64_t, std::int64_t> newest_step;
  Transaction transaction(*db_);
  try {
    const std::vector<std::int64_t> run_of = LockRuns(records, now, created_runs);
    for (std::size_t i = 0; i < records.size(); ++i) {
      const wire::StepRecord& r = records[i];
      const std::int64_t run_id = run_of[i];
      new_records_per_run.try_emplace(run_id, 0);
      ++result.accepted;
      BindStep(insert_step_, run_id, r, canonical[i], now);
      insert_step_.Step();
      const bool new_record = db_->Changes() == 1;
      if (new_record) {
        ++new_records_per_run[run_id];
      } else {
        BindStep(replace_step_, run_id, r, canonical[i], now);
        replace_step_.Step();
        if (db_->Changes() == 0) {
          ++result.duplicates;
          analysis_.Feed(run_id, r, Analysis::Stored::kDuplicate);
          continue;
        }
        ++result.replaced;
      }
      analysis_.Feed(run_id, r, new_record ? Analysis::Stored::kNew : Analysis::Stored::kReplaced);
      changed.insert({run_id, r.step / kRollupWidths[1]});
      auto [newest, inserted] = newest_step.try_emplace(run_id, r.step);
      if (!inserted) newest->second = std::max(newest->second, r.step);
    }
    insert_step_.Reset();
    replace_step_.Reset();
    for (const auto& [run_id, added] : new_records_per_run) {
      touch_run_.Reset();
      touch_run_.BindNumber(1, now).Bind(2, added).Bind(3, run_id);
      touch_run_.Step();
      analysis_.Revised(run_id, touch_run_.Int(0));
    }
    touch_run_.Reset();
    UpdateRollups(changed, newest_step, now);
    analysis_.Finish(now);
    transaction.Commit();
  } catch (...) {
    analysis_.Abandon();  // its runs are ahead of the rolled-back store: reload them next time
    throw;
  }
  run_ids_.merge(created_runs);
  return result;
}

void Store::Writer::UpdateRollups(const std::set<StepBlock>& changed,
                                  const std::map<std::int64_t, std::int64_t>& newest_step,
                                  double now) {
  // Blocks below this bucket are a whole block behind the run's newest step: due now.
  auto settled_below = [&](std::int64_t run_id) {
    return newest_step.at(run_id) / kRollupWidths[1] - 1;
  };
  std::set<StepBlock> due;
  std::set<StepBlock> marked;  // due blocks with a pending row to clear
  for (const auto& [run_id, newest] : newest_step) {
    pending_behind_.Reset();
    pending_behind_.Bind(1, run_id).Bind(2, settled_below(run_id));
    while (pending_behind_.Step()) marked.insert({run_id, pending_behind_.Int(0)});
  }
  pending_behind_.Reset();
  pending_stale_.Reset();
  pending_stale_.BindNumber(1, now - kStaleSeconds).Bind(2, std::int64_t{kStaleRefreshes});
  std::set<StepBlock> stale;
  while (pending_stale_.Step()) stale.insert({pending_stale_.Int(0), pending_stale_.Int(1)});
  pending_stale_.Reset();
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
    mark_pending_.Reset();
    mark_pending_.Bind(1, block.run_id).Bind(2, block.bucket).BindNumber(3, now);
    mark_pending_.Step();
  }
  mark_pending_.Reset();
  RefreshBlocks(due, marked);
}

void Store::Writer::RefreshBlocks(const std::set<StepBlock>& blocks,
                                  const std::set<StepBlock>& marked) {
  const std::int64_t width = kRollupWidths[1];
  std::set<BlockKey> parents;  // every rank's level-2 blocks above the refreshed blocks
  for (const StepBlock& block : blocks) {
    std::map<std::int64_t, BlockStats> ranks;
    block_rows_.Reset();
    block_rows_.Bind(1, block.run_id)
        .Bind(2, block.bucket * width)
        .Bind(3, block.bucket * width + width - 1);
    while (block_rows_.Step()) ranks[block_rows_.Int(5)].Merge(RawRowToBlock(block_rows_));
    block_rows_.Reset();
    for (const auto& [rank, stats] : ranks) {
      WriteBlock(1, {block.run_id, rank, block.bucket}, stats);
      parents.insert({block.run_id, rank, block.bucket / (kRollupWidths[2] / width)});
    }
    if (!marked.count(block)) continue;
    clear_pending_.Reset();
    clear_pending_.Bind(1, block.run_id).Bind(2, block.bucket);
    clear_pending_.Step();
  }
  clear_pending_.Reset();
  // Coarser levels once per block for the whole set, not once per refreshed child.
  for (int level = 2; level < kLevels && !parents.empty(); ++level) {
    std::set<BlockKey> next;
    const std::int64_t fan_out =
        level + 1 < kLevels ? kRollupWidths[level + 1] / kRollupWidths[level] : 1;
    for (const BlockKey& key : parents) {
      WriteBlock(level, key, Aggregate(level, key));
      if (level + 1 < kLevels) next.insert({key.run_id, key.rank, key.bucket / fan_out});
    }
    parents = std::move(next);
  }
}

// A block of `level` >= 2 from its children one level down (a minimum cannot be "un-merged", so
// a changed child means recomputing its parent).
BlockStats Store::Writer::Aggregate(int level, const BlockKey& key) {
  BlockStats stats;
  const std::int64_t fan_out = kRollupWidths[level] / kRollupWidths[level - 1];
  child_blocks_.Reset();
  child_blocks_.Bind(1, key.run_id).Bind(2, key.rank).Bind(3, kRollupWidths[level - 1]);
  child_blocks_.Bind(4, key.bucket * fan_out).Bind(5, key.bucket * fan_out + fan_out - 1);
  while (child_blocks_.Step()) stats.Merge(RollupRowToBlock(child_blocks_));
  child_blocks_.Reset();
  return stats;
}

void Store::Writer::WriteBlock(int level, const BlockKey& key, const BlockStats& stats) {
  upsert_rollup_.Reset();
  upsert_rollup_.Bind(1, key.run_id).Bind(2, key.rank).Bind(3, kRollupWidths[level]);
  upsert_rollup_.Bind(4, key.bucket);
  BindRollup(upsert_rollup_, 5, stats);
  upsert_rollup_.Step();
  upsert_rollup_.Reset();
}

}  // namespace lossguard::store
