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
                          " FROM steps WHERE run_id = ? AND step BETWEEN ? AND ? AND rank = ?")),
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
  std::vector<BlockKey> touched;
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
      if (db_.Changes() == 1) {
        ++new_records_per_run[run_id];
      } else {
        BindStep(replace_step_, run_id, r, canonical[i], now);
        replace_step_.Step();
        if (db_.Changes() == 0) {
          ++result.duplicates;
          continue;
        }
        ++result.replaced;
      }
      analysis_.Feed(run_id, r);
      touched.push_back({run_id, r.rank, r.step / kRollupWidths[1]});
    }
    insert_step_.Reset();
    replace_step_.Reset();
    for (const auto& [run_id, added] : new_records_per_run) {
      touch_run_.Reset();
      touch_run_.BindNumber(1, now).Bind(2, added).Bind(3, run_id);
      touch_run_.Step();
    }
    RefreshRollups(std::move(touched));
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
    std::int64_t width = kRollupWidths[1];
    raw_block_.Reset();
    raw_block_.Bind(1, key.run_id)
        .Bind(2, key.bucket * width)
        .Bind(3, key.bucket * width + width - 1)
        .Bind(4, key.rank);
    while (raw_block_.Step()) stats.Merge(RawRowToBlock(raw_block_));
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

// Recomputes every touched block from the level below, bottom-up. Recomputing (rather than
// folding new values in) keeps replaced records correct: a minimum cannot be "un-merged".
void Store::Writer::RefreshRollups(std::vector<BlockKey> touched) {
  for (int level = 1; level < kLevels && !touched.empty(); ++level) {
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (const BlockKey& key : touched) {
      BlockStats stats = Aggregate(level, key);
      upsert_rollup_.Reset();
      upsert_rollup_.Bind(1, key.run_id)
          .Bind(2, key.rank)
          .Bind(3, kRollupWidths[level])
          .Bind(4, key.bucket);
      BindRollup(upsert_rollup_, 5, stats);
      upsert_rollup_.Step();
    }
    upsert_rollup_.Reset();
    std::int64_t fan_out =
        level + 1 < kLevels ? kRollupWidths[level + 1] / kRollupWidths[level] : 1;
    for (BlockKey& key : touched) key.bucket /= fan_out;
  }
}

}  // namespace lossguard::store
