#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/database.h"
#include "store/rollup.h"

namespace lossguard::store {

// The one place that maps BlockStats to and from SQL rows, for the writer and the queries alike.

// Columns selected by kRawBlockColumns, one step: step, loss, ref_loss, grad_norm, tokens, lr.
// A query that selects more puts them from column kRawBlockColumnCount on.
inline constexpr const char* kRawBlockColumns = "step, loss, ref_loss, grad_norm, tokens, lr";
inline constexpr int kRawBlockColumnCount = 6;
BlockStats RawRowToBlock(const Statement& row);
// What RawRowToBlock reads from the row that stores `record` (its numbers as the columns hold
// them: a negative zero as 0).
BlockStats RecordToBlock(const wire::StepRecord& record);

// Columns selected by kRollupColumns, one stored block.
inline constexpr const char* kRollupColumns =
    "first_step, last_step, n, loss_min, loss_max, loss_nan, ref_loss_min, ref_loss_max, "
    "ref_loss_nan, "
    "grad_norm_min, grad_norm_max, grad_norm_nan, tokens_min, tokens_max, tokens_nan, lr_min, "
    "lr_max, lr_nan";
inline constexpr int kRollupColumnCount = 18;
BlockStats RollupRowToBlock(const Statement& row);

// The kRollupColumns of a block merged from stored blocks, as SQL aggregates in kRollupColumns
// order (MIN of the minima and first steps, MAX of the maxima and last steps, SUM of the counts):
// what BlockStats::Merge computes, for INSERT ... SELECT ... GROUP BY.
std::string RollupMergeExpressions();

// "c = excluded.c, ..." over kRollupColumns: an upsert's update of a stored block.
std::string RollupExcludedAssignments();

// An upsert's update that merges the inserted block into the stored one, as BlockStats::Merge
// does (minima and maxima ignore NULL, counts add up): the stored block plus blocks it never held.
std::string RollupAccumulateAssignments(Backend backend);

// Binds `stats` to parameters first..first+kRollupColumnCount-1 in kRollupColumns order.
void BindRollup(Statement& statement, int first, const BlockStats& stats);

// The ranks that have rollup rows in the run, ascending: one index seek per rank instead of a scan
// of every rollup row of the run.
std::vector<std::int64_t> RollupRanks(Database& db, std::int64_t run_id);

// The run's highest stored step (one index seek), nullopt if it has none.
std::optional<std::int64_t> NewestStoredStep(Database& db, std::int64_t run_id);

}  // namespace lossguard::store
