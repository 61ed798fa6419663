#include "store/rollup_rows.h"

namespace lossguard::store {

BlockStats RawRowToBlock(const Statement& row) {
  BlockStats block;
  block.first_step = block.last_step = row.Int(0);
  block.n = 1;
  block.loss.Add(row.Number(1));
  block.ref_loss.Add(row.Number(2));
  block.grad_norm.Add(row.Number(3));
  block.tokens.Add(row.Number(4));
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

BlockStats RollupRowToBlock(const Statement& row) {
  BlockStats block;
  block.first_step = row.Int(0);
  block.last_step = row.Int(1);
  block.n = row.Int(2);
  block.loss = ReadSeries(row, 3);
  block.ref_loss = ReadSeries(row, 6);
  block.grad_norm = ReadSeries(row, 9);
  block.tokens = ReadSeries(row, 12);
  return block;
}

void BindRollup(Statement& statement, int first, const BlockStats& stats) {
  statement.Bind(first, stats.first_step).Bind(first + 1, stats.last_step).Bind(first + 2, stats.n);
  BindSeries(statement, first + 3, stats.loss);
  BindSeries(statement, first + 6, stats.ref_loss);
  BindSeries(statement, first + 9, stats.grad_norm);
  BindSeries(statement, first + 12, stats.tokens);
}

}  // namespace lossguard::store
