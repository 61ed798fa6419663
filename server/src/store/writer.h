#pragma once

#include <array>
#include <boost/container/flat_map.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/analysis.h"
#include "store/database.h"
#include "store/deleted_runs.h"
#include "store/rollup.h"
#include "store/step_row.h"
#include "store/step_writes.h"
#include "store/types.h"

namespace lossguard::store {

// The write connection and what writing needs to remember between batches: the runs' ids and the
// analyzers' state. Not thread-safe: Connections serialises calls.
class Writer {
 public:
  Writer(std::unique_ptr<Database> db, AnalysisOptions analysis);

  Database& db() { return *db_; }

  // `encoded[i]` is EncodeStepValues(records[i]), computed by the caller outside the write lock.
  IngestResult Ingest(const std::vector<wire::StepRecord>& records,
                      const std::vector<EncodedStepValues>& encoded, double now);

  // RunDeletion::Delete's transaction: the run renamed to its tombstone (DeletedRunName), its
  // alerts, notifications and pending rollups deleted. Returns its record count, nullopt if no such
  // run.
  std::optional<std::int64_t> DeleteRun(std::string_view name);

 private:
  struct BlockKey {
    std::int64_t run_id, rank, bucket;
    auto operator<=>(const BlockKey&) const = default;
  };
  // A block of kRollupWidths[1] steps of one run, all ranks: the unit of rollup refresh.
  struct StepBlock {
    std::int64_t run_id, bucket;
    auto operator<=>(const StepBlock&) const = default;
  };
  // The batch's records by (run_id, bucket, rank): for each step of the level-1 block, the index of
  // the batch's last record of it (-1: none). A block whose every step the batch holds stores
  // exactly those records: its level-1 row is computed from them, not read back.
  struct BatchBlockKey {
    std::int64_t run_id, bucket, rank;
    auto operator<=>(const BatchBlockKey&) const = default;
  };
  struct BatchBlock {
    std::array<int, kRollupWidths[1]> record;
    int steps = 0;  // of the block's steps, how many the batch holds
    BatchBlock() { record.fill(-1); }
  };
  // Flat: built once per batch in key order (GroupBatch), then only searched.
  using BatchBlocks = boost::container::flat_map<BatchBlockKey, BatchBlock>;
  // One rank's stored steps of a level-1 block, as far as this writer has seen them.
  struct CarriedRank {
    BlockStats stats;
    std::uint32_t steps = 0;  // bit s: step s of the block was stored as a new record
    bool exact = true;        // false once a step came as a replaced or duplicate record
    void Add(const wire::StepRecord& record, Analysis::Stored how);
    void Merge(const CarriedRank& other);
    // Every step of the block stored as new: the rank's rows of the block are exactly these.
    bool Complete() const { return exact && steps == (1u << kRollupWidths[1]) - 1; }
  };
  // By rank, flat: a block has up to world-size ranks, built and merged in rank order.
  using CarriedRanks = boost::container::flat_map<std::int64_t, CarriedRank>;
  using CarriedBlocks = std::map<StepBlock, CarriedRanks>;
  // `into` with `more` merged in, rank by rank, in one pass over both.
  static CarriedRanks MergedRanks(const CarriedRanks& into, const CarriedRanks& more);
  // The batch's records by level-1 block and rank, from one sort of their keys: each block's
  // steps (`batch`) and what the batch stored of each block's ranks (`staged`).
  static void GroupBatch(const std::vector<wire::StepRecord>& records,
                         const std::vector<std::int64_t>& run_of,
                         const std::vector<Analysis::Stored>& stored, BatchBlocks& batch,
                         CarriedBlocks& staged);

  std::int64_t RunId(const std::string& name, double now,
                     std::unordered_map<std::string, std::int64_t>& created);
  // The run ids of the batch's records (creating new runs), each run locked (Database::LockRun)
  // and its analyzer prepared (`judging`) before any of its records is written.
  std::vector<std::int64_t> LockRuns(const std::vector<wire::StepRecord>& records, double now,
                                     std::unordered_map<std::string, std::int64_t>& created,
                                     Analysis::Batch& judging);
  // Records the blocks the batch changed as pending, then refreshes the pending blocks that are
  // due: a run's blocks at least one whole block behind its newest step in this batch (late ranks
  // have had a block's time to report), and up to kStaleRefreshes blocks pending for longer than
  // kStaleSeconds (a run that stopped or slowed down).
  // `staged`: the batch's changes by block; the blocks it marks pending for the first time since
  // their last refresh go to `fresh`, the blocks it refreshes to `refreshed`.
  // `settled_before`: SettledBuckets of each run's newest step stored before the batch.
  void UpdateRollups(const std::set<StepBlock>& changed,
                     const std::map<std::int64_t, std::int64_t>& newest_step,
                     std::map<std::int64_t, std::int64_t> settled_before,
                     const std::vector<wire::StepRecord>& records, const BatchBlocks& batch,
                     const CarriedBlocks& staged, double now, std::set<StepBlock>& fresh,
                     std::set<StepBlock>& refreshed);
  // Rewrites each block's level-1 rows, every rank's, from one scan of each range of consecutive
  // blocks, then the complete coarser rows above them, and clears the pending marks of those in
  // `marked`. A handful of statements per batch, whatever its ranks: on PostgreSQL each is a round
  // trip.
  //
  // A block that was not pending (its rows of other ranks are rolled up already) and whose every
  // rank in the batch has all its steps in the batch is rolled up from the batch's records: the
  // common case of a trainer's consecutive steps, which then reads nothing back. Likewise a
  // level-1 row written for the first time is merged into its complete ancestors (under
  // `settled_before`, the run's SettledBuckets before the batch) without reading them; only the
  // ancestors of rewritten rows are rebuilt from their children. The coarser blocks that the
  // batch's newest steps (`settled_after`) complete are then built from their children, once.
  //
  // A block this writer has carried since its pending mark (carried_), whose every changed rank
  // has all its steps there (with the batch's, `staged`), is rolled up from memory too: the common
  // case of many ranks reporting step by step, where no batch holds a whole block.
  void RefreshBlocks(const std::set<StepBlock>& blocks, const std::set<StepBlock>& marked,
                     std::map<std::int64_t, std::int64_t> settled_before,
                     const std::map<std::int64_t, std::int64_t>& settled_after,
                     const std::vector<wire::StepRecord>& records, const BatchBlocks& batch,
                     const CarriedBlocks& staged);
  // Builds `level`'s blocks [first, end) of the run, every rank's, from their stored children.
  void MergeChildren(int level, std::int64_t run_id, const std::vector<std::int64_t>& ranks,
                     std::int64_t first, std::int64_t end);
  // The block's ranks as carried_ and `staged` know them together; nullopt unless the block is
  // carried, of a run of this batch, and every rank of it complete.
  std::optional<CarriedRanks> CarriedWhole(const StepBlock& block, const CarriedBlocks& staged);
  // After a commit: refreshed blocks are no longer carried, fresh ones are from now on, and the
  // batch's changes join the blocks carried.
  void CarryCommitted(const CarriedBlocks& staged, const std::set<StepBlock>& fresh,
                      const std::set<StepBlock>& refreshed,
                      const std::unordered_map<std::int64_t, std::int64_t>& revisions);
  void ForgetCarried(std::int64_t run_id);
  // Which of the level-1 `keys` the database holds already.
  std::set<BlockKey> StoredLevelOne(const std::vector<BlockKey>& keys);
  // Upserts `rows` at `level` (keys unique): replacing the stored blocks, or with `accumulate`
  // merging each into the stored one.
  void WriteRollupRows(int level, const std::vector<std::pair<BlockKey, BlockStats>>& rows,
                       bool accumulate);
  // Indexes the record's guard action (or removes the one a replaced record had).
  void WriteGuardAction(std::int64_t run_id, const wire::StepRecord& record, double now,
                        IngestResult& result);
  // The acknowledgement's verdicts: each run's open episodes at warning or critical, read inside
  // the batch's transaction after the analyzers wrote theirs.
  void ReadVerdicts(const std::vector<wire::StepRecord>& records,
                    const std::vector<std::int64_t>& run_of, IngestResult& result);
  // INSERT ... SELECT merging `level` blocks of `ranks` listed ranks from their children.
  const std::string& MergeChildrenSql(int level, std::size_t ranks);
  // SELECT kRollupColumns, rank, bucket of the children of `level` blocks of `ranks` listed ranks.
  const std::string& ChildrenSql(int level, std::size_t ranks);
  // SELECT rank, bucket of the level-1 rows of `ranks` listed ranks in a range of buckets.
  const std::string& StoredKeysSql(std::size_t ranks);

  std::unique_ptr<Database> db_;
  Analysis analysis_;
  std::unordered_map<std::string, std::int64_t> run_ids_;  // committed runs only
  std::unique_ptr<StepWrites> steps_;
  // The SQL of statements whose text depends on a count, made once each.
  std::map<std::pair<int, std::size_t>, std::string> merge_children_sql_, children_sql_;
  std::map<std::size_t, std::string> stored_keys_sql_;
  // Multi-row upserts, by (accumulate, rows).
  std::map<std::pair<bool, std::size_t>, std::string> upsert_rows_sql_;
  // Pending blocks whose every change since they were marked this writer has committed (the mark
  // was made by one of its batches), with those changes: what RefreshBlocks rolls up from memory.
  // Bounded by the pending blocks (a run's last block or two, times its ranks); a run that another
  // server wrote since (its revision moved by more than this writer's batches), or deleted, is
  // dropped, and its blocks are read back as after a restart.
  CarriedBlocks carried_;
  std::unordered_map<std::int64_t, std::int64_t> carried_revision_;  // by run
  std::size_t carried_ranks_ = 0;
};

}  // namespace lossguard::store
