// The writer's rollups: which blocks of steps a batch leaves pending, and their refresh (level 1
// from the steps, coarser levels from the level below), inside the ingest transaction.
#include <algorithm>
#include <limits>

#include "store/rollup_rows.h"
#include "store/writer.h"

namespace lossguard::store {

namespace {
// A pending block older than this is refreshed even if its run has not moved on.
constexpr double kStaleSeconds = 5;
// Stale blocks refreshed per transaction at most, so that a burst of stopped runs does not stall
// one batch.
constexpr int kStaleRefreshes = 8;
// Returns a row when the mark is new: the block had no change pending.
constexpr const char* kMarkPending =
    "INSERT INTO rollup_pending (run_id, bucket, since) VALUES (?, ?, ?) ON CONFLICT DO NOTHING "
    "RETURNING bucket";
constexpr const char* kPendingBehind =
    "SELECT bucket FROM rollup_pending WHERE run_id = ? AND bucket < ?";
constexpr const char* kPendingStale =
    "SELECT run_id, bucket FROM rollup_pending WHERE since < ? ORDER BY since LIMIT ?";
constexpr const char* kClearPending =
    "DELETE FROM rollup_pending WHERE run_id = ? AND bucket BETWEEN ? AND ?";

// In key order (step, rank): one sequential read of the block, all ranks at once.
const std::string& BlockRowsSql() {
  static const std::string sql = std::string("SELECT ") + kRawBlockColumns +
                                 ", rank FROM steps WHERE run_id = ? AND step BETWEEN ? AND ?";
  return sql;
}
// The rows of the listed ranks (bound after the run) at one width, in a range of buckets. The ranks
// are listed so that both engines seek the primary key (run_id, rank, width, bucket) once per rank;
// without them the scan would cover every rollup row of the run.
std::string RanksAtWidthSql(std::int64_t width, std::size_t ranks) {
  return " FROM step_rollups WHERE run_id = ? AND rank IN " + SqlValuesRows(1, ranks) +
         " AND width = " + std::to_string(width) + " AND bucket BETWEEN ? AND ?";
}
}  // namespace

const std::string& Writer::MergeChildrenSql(int level, std::size_t ranks) {
  auto [it, created] = merge_children_sql_.try_emplace({level, ranks});
  if (created) {
    const std::string parent = "bucket / " + std::to_string(kFanOut);
    it->second =
        ("INSERT INTO step_rollups (run_id, rank, width, bucket, " + std::string(kRollupColumns) +
         ") SELECT run_id, rank, " + std::to_string(kRollupWidths[level]) + ", " + parent + ", " +
         RollupMergeExpressions() + RanksAtWidthSql(kRollupWidths[level - 1], ranks) +
         " GROUP BY run_id, rank, " + parent +
         " ON CONFLICT (run_id, rank, width, bucket) DO UPDATE SET " + RollupExcludedAssignments());
  }
  return it->second;
}

const std::string& Writer::ChildrenSql(int level, std::size_t ranks) {
  auto [it, created] = children_sql_.try_emplace({level, ranks});
  if (created) {
    it->second = "SELECT " + std::string(kRollupColumns) + ", rank, bucket" +
                 RanksAtWidthSql(kRollupWidths[level - 1], ranks);
  }
  return it->second;
}

const std::string& Writer::StoredKeysSql(std::size_t ranks) {
  auto [it, created] = stored_keys_sql_.try_emplace(ranks);
  if (created) {
    it->second = "SELECT rank, bucket" + RanksAtWidthSql(kRollupWidths[1], ranks);
  }
  return it->second;
}

void Writer::UpdateRollups(const std::set<StepBlock>& changed,
                           const std::map<std::int64_t, std::int64_t>& newest_step,
                           std::map<std::int64_t, std::int64_t> settled_before,
                           const std::vector<wire::StepRecord>& records, const BatchBlocks& batch,
                           const CarriedBlocks& staged, double now, std::set<StepBlock>& fresh,
                           std::set<StepBlock>& refreshed) {
  // Blocks below this bucket are due now (DueBuckets).
  auto due_below = [&](std::int64_t run_id) { return DueBuckets(newest_step.at(run_id)); };
  std::map<std::int64_t, std::int64_t> settled_after;
  for (const auto& [run_id, newest] : newest_step) {
    settled_after[run_id] = std::max(settled_before.at(run_id), SettledBuckets(newest));
  }
  std::set<StepBlock> due;
  std::set<StepBlock> marked;  // due blocks with a pending row to clear
  for (const auto& [run_id, newest] : newest_step) {
    CachedStatement pending_behind(*db_, kPendingBehind);
    pending_behind.Bind(1, run_id).Bind(2, due_below(run_id));
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
    if (block.bucket < due_below(block.run_id)) {
      due.insert(block);
      continue;
    }
    CachedStatement mark(*db_, kMarkPending);
    mark.Bind(1, block.run_id).Bind(2, block.bucket).BindNumber(3, now);
    if (mark.Step()) fresh.insert(block);
  }
  RefreshBlocks(due, marked, std::move(settled_before), settled_after, records, batch, staged);
  refreshed = std::move(due);
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

// Statements that list ranks (`run_id = ? AND rank IN (?, ...)` first) take at most this many,
// the list padded to a power of two with its last rank, so that a handful of prepared statements
// serve every world size. For each part of the sorted ranks, the statement `sql_for(padded)` is
// made, `run_id` and the part's ranks bound, and `use(statement, first_unbound_parameter)` called.
constexpr std::size_t kMaxRanksPerStatement = 512;
template <typename SqlFor, typename Use>
void ForEachRankChunk(Database& db, std::int64_t run_id, const std::vector<std::int64_t>& ranks,
                      SqlFor&& sql_for, Use&& use) {
  for (std::size_t begin = 0; begin < ranks.size(); begin += kMaxRanksPerStatement) {
    const std::size_t count = std::min(kMaxRanksPerStatement, ranks.size() - begin);
    std::size_t padded = 1;
    while (padded < count) padded *= 2;
    CachedStatement statement(db, sql_for(padded));
    statement.Bind(1, run_id);
    for (std::size_t i = 0; i < padded; ++i)
      statement.Bind(static_cast<int>(i) + 2, ranks[begin + std::min(i, count - 1)]);
    use(statement, static_cast<int>(padded) + 2);
  }
}
}  // namespace

void Writer::RefreshBlocks(const std::set<StepBlock>& blocks, const std::set<StepBlock>& marked,
                           std::map<std::int64_t, std::int64_t> settled_before,
                           const std::map<std::int64_t, std::int64_t>& settled_after,
                           const std::vector<wire::StepRecord>& records, const BatchBlocks& batch,
                           const CarriedBlocks& staged) {
  const std::int64_t width = kRollupWidths[1];
  std::map<std::int64_t, std::set<std::int64_t>> due, cleared;  // by run: buckets
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
        if (std::optional<CarriedRanks> carried = CarriedWhole({run_id, bucket}, staged)) {
          for (const auto& [rank, seen] : *carried)
            rows.push_back({{run_id, rank, bucket}, seen.stats});
        } else {
          read_back.insert(bucket);
        }
        continue;
      }
      const auto seen = staged.find({run_id, bucket});  // every record of the block, merged
      for (auto it = begin; it != end; ++it) {
        // Each step once, as a new record: what the batch staged is the block. Otherwise (a step
        // sent twice) the last record of each step is.
        if (seen != staged.end()) {
          if (auto rank = seen->second.find(it->first.rank);
              rank != seen->second.end() && rank->second.Complete()) {
            rows.push_back({{run_id, it->first.rank, bucket}, rank->second.stats});
            continue;
          }
        }
        BlockStats stats;
        for (int index : it->second.record) {
          stats.Merge(RecordToBlock(records[static_cast<std::size_t>(index)]));
        }
        rows.push_back({{run_id, it->first.rank, bucket}, stats});
      }
    }
    ForEachRange(read_back, [&](std::int64_t first, std::int64_t last) {
      std::map<std::pair<std::int64_t, std::int64_t>, BlockStats> stats;  // (bucket, rank)
      CachedStatement block_rows(*db_, BlockRowsSql());
      block_rows.Bind(1, run_id).Bind(2, first * width).Bind(3, last * width + width - 1);
      while (block_rows.Step()) {
        stats[{block_rows.Int(0) / width, block_rows.Int(kRawBlockColumnCount)}].Merge(
            RawRowToBlock(block_rows));
      }
      for (const auto& [at, block] : stats) rows.push_back({{run_id, at.second, at.first}, block});
    });
  }
  for (const auto& entry : due) {  // a stale block's run is not in the batch: read its newest step
    if (!settled_before.contains(entry.first)) {
      settled_before.emplace(entry.first,
                             SettledBuckets(NewestStoredStep(*db_, entry.first).value_or(0)));
    }
  }
  auto complete_before = [&](int level, std::int64_t run_id) {
    return CompleteBlocksBelow(level, settled_before.at(run_id));
  };
  // Whether a level-1 row is new or rewritten matters only under a complete ancestor.
  std::vector<BlockKey> under_complete;
  for (const auto& [key, stats] : rows) {
    if (key.bucket / kFanOut < complete_before(2, key.run_id)) under_complete.push_back(key);
  }
  const std::set<BlockKey> stored_before = StoredLevelOne(under_complete);
  WriteRollupRows(1, rows, /*accumulate=*/false);
  for (const auto& entry : cleared) {
    const std::int64_t run_id = entry.first;
    const std::set<std::int64_t>& buckets = entry.second;
    ForEachRange(buckets, [&](std::int64_t first, std::int64_t last) {
      CachedStatement(*db_, kClearPending).Bind(1, run_id).Bind(2, first).Bind(3, last).Step();
    });
  }
  // Coarser levels, only their complete blocks (CompleteBlocksBelow). A level-1 block stored for
  // the first time (a trainer's new steps: the common case) is merged into each of its complete
  // ancestors by an upsert, which reads nothing back. A block that replaced a stored one may have
  // lowered a maximum or moved a count: its complete ancestors are rebuilt from their children,
  // after the added blocks' merges of that level. Then the blocks the batch completed are built
  // from their children.
  std::array<std::map<BlockKey, BlockStats>, kLevels> added;  // by level
  std::map<std::int64_t, std::set<std::int64_t>> parents;     // by run: buckets to rebuild
  std::map<std::int64_t, std::set<std::int64_t>> ranks;       // by run: ranks to rebuild
  for (const auto& [key, stats] : rows) {
    if (stored_before.contains(key)) {
      if (key.bucket / kFanOut < complete_before(2, key.run_id)) {
        parents[key.run_id].insert(key.bucket / kFanOut);
        ranks[key.run_id].insert(key.rank);
      }
      continue;
    }
    std::int64_t bucket = key.bucket;
    for (int level = 2; level < kLevels; ++level) {
      bucket /= kFanOut;
      if (bucket >= complete_before(level, key.run_id)) break;
      added[static_cast<std::size_t>(level)][{key.run_id, key.rank, bucket}].Merge(stats);
    }
  }
  std::map<std::int64_t, std::vector<std::int64_t>> all_ranks;  // by run, read when needed
  for (int level = 2; level < kLevels; ++level) {
    const auto& merged = added[static_cast<std::size_t>(level)];
    WriteRollupRows(level, {merged.begin(), merged.end()}, /*accumulate=*/true);
    std::map<std::int64_t, std::set<std::int64_t>> next;
    for (const auto& entry : parents) {
      const std::int64_t run_id = entry.first;
      const std::vector<std::int64_t> listed(ranks[run_id].begin(), ranks[run_id].end());
      ForEachRange(entry.second, [&](std::int64_t first, std::int64_t last) {
        MergeChildren(level, run_id, listed, first, last + 1);
        for (std::int64_t p = first / kFanOut; p <= last / kFanOut; ++p) {
          if (level + 1 < kLevels && p < complete_before(level + 1, run_id)) next[run_id].insert(p);
        }
      });
    }
    parents = std::move(next);
    for (const auto& [run_id, settled] : settled_after) {
      const std::int64_t first = complete_before(level, run_id);
      const std::int64_t end = CompleteBlocksBelow(level, settled);
      if (first >= end) continue;
      auto [listed, unread] = all_ranks.try_emplace(run_id);
      if (unread) listed->second = RollupRanks(*db_, run_id);
      MergeChildren(level, run_id, listed->second, first, end);
    }
  }
}

void Writer::MergeChildren(int level, std::int64_t run_id, const std::vector<std::int64_t>& ranks,
                           std::int64_t first, std::int64_t end) {
  if (ranks.empty()) return;
  if (db_->backend() == Backend::kPostgres) {  // one round trip, the merge in the database
    ForEachRankChunk(
        *db_, run_id, ranks,
        [&](std::size_t padded) -> const std::string& { return MergeChildrenSql(level, padded); },
        [&](CachedStatement& merge, int range_parameter) {
          merge.Bind(range_parameter, first * kFanOut).Bind(range_parameter + 1, end * kFanOut - 1);
          merge.Step();
        });
    return;
  }
  // In process, the children read in one range scan and merged here cost a fraction of SQLite's
  // INSERT ... SELECT ... GROUP BY (which copies the rows it reads from the table it writes to, and
  // sorts them by an expression).
  std::map<BlockKey, BlockStats> parents;
  ForEachRankChunk(
      *db_, run_id, ranks,
      [&](std::size_t padded) -> const std::string& { return ChildrenSql(level, padded); },
      [&](CachedStatement& children, int range_parameter) {
        children.Bind(range_parameter, first * kFanOut)
            .Bind(range_parameter + 1, end * kFanOut - 1);
        while (children.Step()) {
          const BlockKey parent{run_id, children.Int(kRollupColumnCount),
                                children.Int(kRollupColumnCount + 1) / kFanOut};
          parents[parent].Merge(RollupRowToBlock(children));
        }
      });
  WriteRollupRows(level, {parents.begin(), parents.end()}, /*accumulate=*/false);
}

std::set<Writer::BlockKey> Writer::StoredLevelOne(const std::vector<BlockKey>& keys) {
  std::map<std::int64_t, std::set<std::int64_t>> buckets, ranks;  // by run
  for (const BlockKey& key : keys) {
    buckets[key.run_id].insert(key.bucket);
    ranks[key.run_id].insert(key.rank);
  }
  std::set<BlockKey> stored;
  for (const auto& entry : buckets) {
    const std::int64_t run_id = entry.first;
    const std::vector<std::int64_t> listed(ranks[run_id].begin(), ranks[run_id].end());
    ForEachRange(entry.second, [&](std::int64_t first, std::int64_t last) {
      ForEachRankChunk(
          *db_, run_id, listed,
          [&](std::size_t padded) -> const std::string& { return StoredKeysSql(padded); },
          [&](CachedStatement& stored_keys, int range_parameter) {
            stored_keys.Bind(range_parameter, first).Bind(range_parameter + 1, last);
            while (stored_keys.Step())
              stored.insert({run_id, stored_keys.Int(0), stored_keys.Int(1)});
          });
    });
  }
  return stored;
}

void Writer::WriteRollupRows(int level, const std::vector<std::pair<BlockKey, BlockStats>>& rows,
                             bool accumulate) {
  // run_id, rank, width, bucket, then kRollupColumns
  constexpr std::size_t kBindsPerRow = 4 + kRollupColumnCount;
  std::size_t done = 0;
  for (std::size_t size : {std::size_t{64}, std::size_t{8}, std::size_t{1}}) {
    if (rows.size() - done < size) continue;
    auto [it, created] = upsert_rows_sql_.try_emplace({accumulate, size});
    if (created) {
      it->second =
          "INSERT INTO step_rollups (run_id, rank, width, bucket, " + std::string(kRollupColumns) +
          ") VALUES " + SqlValuesRows(size, kBindsPerRow) +
          " ON CONFLICT (run_id, rank, width, bucket) DO UPDATE SET " +
          (accumulate ? RollupAccumulateAssignments(db_->backend()) : RollupExcludedAssignments());
    }
    CachedStatement upsert(*db_, it->second);
    for (; rows.size() - done >= size; done += size) {
      upsert.Reset();
      for (std::size_t row = 0; row < size; ++row) {
        const auto& [key, stats] = rows[done + row];
        const int first = static_cast<int>(row * kBindsPerRow) + 1;
        upsert.Bind(first, key.run_id).Bind(first + 1, key.rank);
        upsert.Bind(first + 2, kRollupWidths[static_cast<std::size_t>(level)]);
        upsert.Bind(first + 3, key.bucket);
        BindRollup(upsert, first + 4, stats);
      }
      upsert.Step();
    }
  }
}

}  // namespace lossguard::store
