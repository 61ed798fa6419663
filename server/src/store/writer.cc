#include "store/writer.h"

#include <algorithm>

#include "store/rollup_rows.h"

namespace lossguard::store {

namespace {
// New keys (the common case) cost one statement; an existing key is then updated only if the record
// differs, so sqlite3_changes() tells new, replaced and duplicate apart without RETURNING.
constexpr const char* kInsertStep = R"sql(
INSERT OR IGNORE INTO steps (run_id, step, rank, loss, grad_norm, ref_loss, tokens, record, received_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9))sql";
constexpr const char* kReplaceStep = R"sql(
UPDATE steps SET loss = ?4, grad_norm = ?5, ref_loss = ?6, tokens = ?7, record = ?8, received_at = ?9,
                 version = version + 1
WHERE run_id = ?1 AND step = ?2 AND rank = ?3 AND record IS NOT ?8)sql";

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

}  // namespace

Store::Writer::Writer(Database db, AnalysisOptions analysis)
    : db_(std::move(db)),
      analysis_(db_, std::move(analysis)),
      find_run_(db_, "SELECT id FROM runs WHERE name = ?"),
      insert_run_(db_,
                  "INSERT INTO runs (name, first_seen, last_seen) VALUES (?, ?, ?) RETURNING id"),
      touch_run_(db_,
                 "UPDATE runs SET last_seen = ?, record_count = record_count + ? WHERE id = ?"),
      insert_step_(db_, kInsertStep),
      replace_step_(db_, kReplaceStep),
      raw_block_(db_, Sql("SELECT ", kRawBlockColumns,
                          " FROM steps WHERE run_id = ? AND step = ? AND rank = ?")),
      child_blocks_(db_, Sql("SELECT ", kRollupColumns,
                             " FROM step_rollups WHERE run_id = ? AND rank = ? AND width = ? AND "
                             "bucket BETWEEN ? AND ?")),
      upsert_rollup_(
          db_,
          Sql("INSERT OR REPLACE INTO step_rollups (run_id, rank, width, bucket, ", kRollupColumns,
              ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {}

std::int64_t Store::Writer::RunId(const std::string& name, double now,
                                  std::unordered_map<std::string, std::int64_t>& created) {
  if (auto it = run_ids_.find(name); it != run_ids_.end()) return it->second;
  if (auto it = created.find(name); it != created.end()) return it->second;
  find_run_.Reset();
  find_run_.Bind(1, name);
  std::int64_t id;
  if (find_run_.Step()) {
    id = find_run_.Int(0);
    run_ids_.emplace(name, id);  // committed before this transaction
  } else {
    insert_run_.Reset();
    insert_run_.Bind(1, name).BindNumber(2, now).BindNumber(3, now);
    insert_run_.Step();
    id = insert_run_.Int(0);
    created.emplace(name, id);  // only cached once the transaction commits
  }
  find_run_.Reset();
  insert_run_.Reset();
  return id;
}

IngestResult Store::Writer::Ingest(const std::vector<wire::StepRecord>& records,
                                   const std::vector<std::string>& canonical, double now) {
  IngestResult result;
  std::unordered_map<std::string, std::int64_t> created_runs;
  std::unordered_map<std::int64_t, std::int64_t> new_records_per_run;
  RollupChanges rollups;
  Transaction transaction(db_);
  try {
    for (std::size_t i = 0; i < records.size(); ++i) {
      const wire::StepRecord& r = records[i];
      std::int64_t run_id = RunId(r.run, now, created_runs);
      analysis_.Prepare(run_id);  // before this batch's steps of the run are written
      new_records_per_run.try_emplace(run_id, 0);
      ++result.accepted;
      BindStep(insert_step_, run_id, r, canonical[i], now);
      insert_step_.Step();
      const BlockKey block{run_id, r.rank, r.step / kRollupWidths[1]};
      if (db_.Changes() == 1) {
        ++new_records_per_run[run_id];
        rollups.added[block].Merge(RecordToBlock(r));
      } else {
        BindStep(replace_step_, run_id, r, canonical[i], now);
        replace_step_.Step();
        if (db_.Changes() == 0) {
          ++result.duplicates;
          continue;
        }
        ++result.replaced;
        rollups.recompute.insert(block);
      }
      analysis_.Feed(run_id, r);
    }
    insert_step_.Reset();
    replace_step_.Reset();
    for (const auto& [run_id, added] : new_records_per_run) {
      touch_run_.Reset();
      touch_run_.BindNumber(1, now).Bind(2, added).Bind(3, run_id);
      touch_run_.Step();
    }
    RefreshRollups(std::move(rollups));
    analysis_.Finish(now);
    transaction.Commit();
  } catch (...) {
    analysis_.Abandon();  // its runs are ahead of the rolled-back store: reload them next time
    throw;
  }
  run_ids_.merge(created_runs);
  return result;
}

BlockStats Store::Writer::Aggregate(int level, const BlockKey& key) {
  BlockStats stats;
  if (level == 1) {
    // One seek per step: the steps table is ordered (run, step, rank), so a range over the block's
    // steps for one rank would read every other rank's rows too.
    const std::int64_t width = kRollupWidths[1];
    for (std::int64_t step = key.bucket * width; step < key.bucket * width + width; ++step) {
      raw_block_.Reset();
      raw_block_.Bind(1, key.run_id).Bind(2, step).Bind(3, key.rank);
      if (raw_block_.Step()) stats.Merge(RawRowToBlock(raw_block_));
    }
    raw_block_.Reset();
    return stats;
  }
  std::int64_t fan_out = kRollupWidths[level] / kRollupWidths[level - 1];
  child_blocks_.Reset();
  child_blocks_.Bind(1, key.run_id).Bind(2, key.rank).Bind(3, kRollupWidths[level - 1]);
  child_blocks_.Bind(4, key.bucket * fan_out).Bind(5, key.bucket * fan_out + fan_out - 1);
  while (child_blocks_.Step()) stats.Merge(RollupRowToBlock(child_blocks_));
  child_blocks_.Reset();
  return stats;
}

std::optional<BlockStats> Store::Writer::StoredBlock(int level, const BlockKey& key) {
  child_blocks_.Reset();
  child_blocks_.Bind(1, key.run_id).Bind(2, key.rank).Bind(3, kRollupWidths[level]);
  child_blocks_.Bind(4, key.bucket).Bind(5, key.bucket);
  std::optional<BlockStats> stats;
  if (child_blocks_.Step()) stats = RollupRowToBlock(child_blocks_);
  child_blocks_.Reset();
  return stats;
}

void Store::Writer::WriteBlock(int level, const BlockKey& key, const BlockStats& stats) {
  upsert_rollup_.Reset();
  upsert_rollup_.Bind(1, key.run_id)
      .Bind(2, key.rank)
      .Bind(3, kRollupWidths[level])
      .Bind(4, key.bucket);
  BindRollup(upsert_rollup_, 5, stats);
  upsert_rollup_.Step();
  upsert_rollup_.Reset();
}

// Bottom-up, one level at a time. A block that only gained records is its stored row merged with
// the batch's records: a read and a write, whatever the world size. A block with a replaced record
// is recomputed from the level below, since a minimum cannot be "un-merged"; so is its parent.
void Store::Writer::RefreshRollups(RollupChanges changes) {
  for (int level = 1; level < kLevels; ++level) {
    if (changes.added.empty() && changes.recompute.empty()) return;
    for (const BlockKey& key : changes.recompute) WriteBlock(level, key, Aggregate(level, key));
    for (const auto& [key, added] : changes.added) {
      if (changes.recompute.count(key)) continue;
      BlockStats stats = StoredBlock(level, key).value_or(BlockStats{});
      stats.Merge(added);
      WriteBlock(level, key, stats);
    }
    if (level + 1 == kLevels) return;
    const std::int64_t fan_out = kRollupWidths[level + 1] / kRollupWidths[level];
    RollupChanges parents;
    for (const BlockKey& key : changes.recompute)
      parents.recompute.insert({key.run_id, key.rank, key.bucket / fan_out});
    for (const auto& [key, added] : changes.added) {
      BlockKey parent{key.run_id, key.rank, key.bucket / fan_out};
      if (!parents.recompute.count(parent)) parents.added[parent].Merge(added);
    }
    changes = std::move(parents);
  }
}

}  // namespace lossguard::store
