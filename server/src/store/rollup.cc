#include "store/rollup.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace lossguard::store {

void SeriesStats::Add(std::optional<double> value) {
  if (!value) return;
  if (std::isnan(*value)) {
    ++nan;
    return;
  }
  min = min ? std::min(*min, *value) : *value;
  max = max ? std::max(*max, *value) : *value;
}

void SeriesStats::Merge(const SeriesStats& other) {
  if (other.min) min = min ? std::min(*min, *other.min) : *other.min;
  if (other.max) max = max ? std::max(*max, *other.max) : *other.max;
  nan += other.nan;
}

void BlockStats::Merge(const BlockStats& other) {
  if (other.n == 0) return;
  first_step = n == 0 ? other.first_step : std::min(first_step, other.first_step);
  last_step = n == 0 ? other.last_step : std::max(last_step, other.last_step);
  n += other.n;
  loss.Merge(other.loss);
  ref_loss.Merge(other.ref_loss);
  grad_norm.Merge(other.grad_norm);
  tokens.Merge(other.tokens);
  lr.Merge(other.lr);
}

namespace {
void Cover(std::int64_t first, std::int64_t last, int level, std::vector<BlockRange>& out) {
  if (first > last) return;
  std::int64_t width = kRollupWidths[level];
  if (level == 0) {
    out.push_back({0, first, last});
    return;
  }
  // Written so that no intermediate exceeds `last`: steps may reach INT64_MAX in databases that
  // predate the wire format's 2^53-1 bound.
  std::int64_t first_full = first / width + (first % width != 0 ? 1 : 0);
  std::int64_t last_full = last / width - (last % width != width - 1 ? 1 : 0);
  if (first_full > last_full) {
    Cover(first, last, level - 1, out);
    return;
  }
  if (first_full * width > first) Cover(first, first_full * width - 1, level - 1, out);
  out.push_back({level, first_full, last_full});
  const std::int64_t last_covered = last_full * width + (width - 1);
  if (last_covered < last) Cover(last_covered + 1, last, level - 1, out);
}
}  // namespace

std::vector<BlockRange> PlanCover(std::int64_t first_step, std::int64_t last_step, int max_level) {
  assert(0 <= first_step && first_step <= last_step && 0 <= max_level && max_level < kLevels);
  std::vector<BlockRange> out;
  Cover(first_step, last_step, max_level, out);
  return out;
}

Resolution ChooseResolution(std::int64_t first_step, std::int64_t last_step,
                            std::int64_t max_buckets) {
  assert(0 <= first_step && first_step <= last_step && max_buckets >= 2);
  // Unsigned: the span of [0, INT64_MAX] is 2^63 steps, one more than int64 holds.
  const std::uint64_t span_minus_one =
      static_cast<std::uint64_t>(last_step) - static_cast<std::uint64_t>(first_step);
  const auto gaps = static_cast<std::uint64_t>(max_buckets - 1);
  // A range of `span` steps touches at most ceil((span - 1) / width) + 1 aligned buckets.
  const std::uint64_t needed_unsigned = span_minus_one / gaps + (span_minus_one % gaps != 0);
  auto needed = static_cast<std::int64_t>(std::max<std::uint64_t>(needed_unsigned, 1));
  int level = 0;
  while (level + 1 < kLevels && kRollupWidths[level + 1] <= needed) ++level;
  std::int64_t unit = kRollupWidths[level];
  return {level, (needed + unit - 1) / unit * unit};
}

}  // namespace lossguard::store
