#include "store/rollup_rows.h"

#include <string_view>
#include <vector>

#include "store/step_row.h"

namespace lossguard::store {

BlockStats RawRowToBlock(const Statement& row) {
  BlockStats block;
  block.first_step = block.last_step = row.Int(0);
  block.n = 1;
  block.loss.Add(row.Number(1));
  block.ref_loss.Add(row.Number(2));
  block.grad_norm.Add(row.Number(3));
  block.tokens.Add(row.Number(4));
  block.lr.Add(row.Number(5));
  return block;
}

BlockStats RecordToBlock(const wire::StepRecord& record) {
  BlockStats block;
  block.first_step = block.last_step = record.step;
  block.n = 1;
  block.loss.Add(ColumnNumber(record.loss));
  block.ref_loss.Add(ColumnNumber(record.ref_loss));
  block.grad_norm.Add(ColumnNumber(record.grad_norm));
  if (record.tokens) block.tokens.Add(static_cast<double>(*record.tokens));
  block.lr.Add(ColumnNumber(record.lr));
  return block;
}

namespace {
SeriesStats ReadSeries(const Statement& row, int column) {
  return SeriesStats{row.Number(column), row.Number(column + 1), row.Int(column + 2)};
}
void BindSeries(Statement& statement, int first, const SeriesStats& series) {
  statement.BindNumber(first, series.min)
      .BindNumber(first + 1, series.max)
      .Bind(first + 2, series.nan);
}
}  // namespace

namespace {
std::vector<std::string> RollupColumnNames() {
  std::vector<std::string> out;
  std::string_view columns = kRollupColumns;
  while (!columns.empty()) {
    const std::size_t comma = columns.find(',');
    std::string_view column = columns.substr(0, comma);
    while (!column.empty() && column.front() == ' ') column.remove_prefix(1);
    out.emplace_back(column);
    columns = comma == std::string_view::npos ? std::string_view() : columns.substr(comma + 1);
  }
  return out;
}

bool EndsWith(const std::string& text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::string RollupMergeExpressions() {
  std::string out;
  for (const std::string& column : RollupColumnNames()) {
    const char* merge = column == "first_step" || EndsWith(column, "_min")  ? "MIN"
                        : column == "last_step" || EndsWith(column, "_max") ? "MAX"
                                                                            : "SUM";  // n, *_nan
    out += (out.empty() ? "" : ", ") + std::string(merge) + "(" + column + ")";
  }
  return out;
}

std::string RollupExcludedAssignments() {
  std::string out;
  for (const std::string& column : RollupColumnNames()) {
    out += (out.empty() ? "" : ", ") + column + " = excluded." + column;
  }
  return out;
}

std::string RollupAccumulateAssignments(Backend backend) {
  std::string out;
  for (const std::string& column : RollupColumnNames()) {
    const bool is_min = column == "first_step" || EndsWith(column, "_min");
    const bool is_max = column == "last_step" || EndsWith(column, "_max");
    const std::string stored = "step_rollups." + column, added = "excluded." + column;
    std::string merged;
    if (!is_min && !is_max) {
      merged = stored + " + " + added;  // n, *_nan
    } else if (backend == Backend::kPostgres) {
      merged = std::string(is_min ? "LEAST" : "GREATEST") + "(" + stored + ", " + added + ")";
    } else {
      // SQLite's two-argument MIN/MAX are NULL when either side is: fall back to the other side.
      merged = std::string("COALESCE(") + (is_min ? "MIN" : "MAX") + "(" + stored + ", " + added +
               "), " + stored + ", " + added + ")";
    }
    out += (out.empty() ? "" : ", ") + column + " = " + merged;
  }
  return out;
}

BlockStats RollupRowToBlock(const Statement& row) {
  BlockStats block;
  block.first_step = row.Int(0);
  block.last_step = row.Int(1);
  block.n = row.Int(2);
  block.loss = ReadSeries(row, 3);
  block.ref_loss = ReadSeries(row, 6);
  block.grad_norm = ReadSeries(row, 9);
  block.tokens = ReadSeries(row, 12);
  block.lr = ReadSeries(row, 15);
  return block;
}

void BindRollup(Statement& statement, int first, const BlockStats& stats) {
  statement.Bind(first, stats.first_step).Bind(first + 1, stats.last_step).Bind(first + 2, stats.n);
  BindSeries(statement, first + 3, stats.loss);
  BindSeries(statement, first + 6, stats.ref_loss);
  BindSeries(statement, first + 9, stats.grad_norm);
  BindSeries(statement, first + 12, stats.tokens);
  BindSeries(statement, first + 15, stats.lr);
}

std::vector<std::int64_t> RollupRanks(Database& db, std::int64_t run_id) {
  std::vector<std::int64_t> ranks;
  CachedStatement next(db, "SELECT MIN(rank) FROM step_rollups WHERE run_id = ? AND rank > ?");
  std::int64_t after = -1;
  while (true) {
    next.Reset();
    next.Bind(1, run_id).Bind(2, after);
    if (!next.Step() || next.IsNull(0)) break;
    after = next.Int(0);
    ranks.push_back(after);
  }
  return ranks;
}

std::optional<std::int64_t> NewestStoredStep(Database& db, std::int64_t run_id) {
  CachedStatement last(db, "SELECT step FROM steps WHERE run_id = ? ORDER BY step DESC LIMIT 1");
  last.Bind(1, run_id);
  if (!last.Step()) return std::nullopt;
  return last.Int(0);
}

}  // namespace lossguard::store
