#include "store/writer.h"

#include <algorithm>

#include "store/rollup_rows.h"

namespace lossguard::store {

namespace {
constexpr const char* kUpsertStep = R"sql(
INSERT INTO steps (run_id, step, rank, world_size, ga_steps, micro_batch_size, loss, grad_norm, ref_loss,
                   tokens, vocab_size, lr, nonfinite_grads, time, record, received_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
ON CONFLICT (run_id, step, rank) DO UPDATE SET
  world_size = excluded.world_size, ga_steps = excluded.ga_steps,
  micro_batch_size = excluded.micro_batch_size, loss = excluded.loss, grad_norm = excluded.grad_norm,
  ref_loss = excluded.ref_loss, tokens = excluded.tokens, vocab_size = excluded.vocab_size, lr = excluded.lr,
  nonfinite_grads = excluded.nonfinite_grads, time = excluded.time, record = excluded.record,
  received_at = excluded.received_at, version = version + 1
WHERE steps.record IS NOT excluded.record
RETURNING version)sql";

std::string Sql(const std::string& head, const char* columns, const std::string& tail) {
  return head + columns + tail;
}

}  // namespace

Store::Writer::Writer(Database db)
    : db_(std::move(db)),
      find_run_(db_, "SELECT id FROM runs WHERE name = ?"),
      insert_run_(db_, "INSERT INTO runs (name, first_seen, last_seen) VALUES (?, ?, ?) RETURNING id"),
      touch_run_(db_, "UPDATE runs SET last_seen = ?, record_count = record_count + ? WHERE id = ?"),
      upsert_step_(db_, kUpsertStep),
      raw_block_(db_, Sql("SELECT ", kRawBlockColumns,
                          " FROM steps WHERE run_id = ? AND step BETWEEN ? AND ? AND rank = ?")),
      child_blocks_(db_, Sql("SELECT ", kRollupColumns,
                             " FROM step_rollups WHERE run_id = ? AND rank = ? AND width = ? AND bucket BETWEEN ? AND ?")),
      upsert_rollup_(db_, Sql("INSERT OR REPLACE INTO step_rollups (run_id, rank, width, bucket, ", kRollupColumns,
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
  for (std::size_t i = 0; i < records.size(); ++i) {
    const wire::StepRecord& r = records[i];
    std::int64_t run_id = RunId(r.run, now, created_runs);
    new_records_per_run.try_emplace(run_id, 0);
    upsert_step_.Reset();
    upsert_step_.Bind(1, run_id).Bind(2, r.step).Bind(3, r.rank).Bind(4, r.world_size).Bind(5, r.ga_steps);
    upsert_step_.Bind(6, r.micro_batch_size).BindNumber(7, r.loss).BindNumber(8, r.grad_norm);
    upsert_step_.BindNumber(9, r.ref_loss).Bind(10, r.tokens).Bind(11, r.vocab_size).BindNumber(12, r.lr);
    upsert_step_.Bind(13, r.nonfinite_grads).BindNumber(14, r.time).Bind(15, canonical[i]).BindNumber(16, now);
    ++result.accepted;
    if (!upsert_step_.Step()) {
      ++result.duplicates;
      continue;
    }
    if (upsert_step_.Int(0) == 0) {
      ++new_records_per_run[run_id];
    } else {
      ++result.replaced;
    }
    while (upsert_step_.Step()) {
    }
    touched.push_back({run_id, r.rank, r.step / kRollupWidths[1]});
  }
  upsert_step_.Reset();
  for (const auto& [run_id, added] : new_records_per_run) {
    touch_run_.Reset();
    touch_run_.BindNumber(1, now).Bind(2, added).Bind(3, run_id);
    touch_run_.Step();
  }
  RefreshRollups(std::move(touched));
  transaction.Commit();
  run_ids_.merge(created_runs);
  return result;
}

BlockStats Store::Writer::Aggregate(int level, const BlockKey& key) {
  BlockStats stats;
  if (level == 1) {
    std::int64_t width = kRollupWidths[1];
    raw_block_.Reset();
    raw_block_.Bind(1, key.run_id).Bind(2, key.bucket * width).Bind(3, key.bucket * width + width - 1).Bind(4, key.rank);
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
      upsert_rollup_.Bind(1, key.run_id).Bind(2, key.rank).Bind(3, kRollupWidths[level]).Bind(4, key.bucket);
      BindRollup(upsert_rollup_, 5, stats);
      upsert_rollup_.Step();
    }
    upsert_rollup_.Reset();
    std::int64_t fan_out = level + 1 < kLevels ? kRollupWidths[level + 1] / kRollupWidths[level] : 1;
    for (BlockKey& key : touched) key.bucket /= fan_out;
  }
}

}  // namespace lossguard::store
