#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <vector>

namespace lossguard::store {

// Downsampling works on aligned blocks of steps. Level 0 is a single step (the steps table);
// level k > 0 is a block of kRollupWidths[k] steps starting at a multiple of that width (the
// step_rollups table). Every width divides the next, so blocks of any level nest.
inline constexpr std::array<std::int64_t, 5> kRollupWidths = {1, 16, 256, 4096, 65536};
inline constexpr int kLevels = static_cast<int>(kRollupWidths.size());
// Every level's width is this many times the one below.
inline constexpr std::int64_t kFanOut = 16;
static_assert(kRollupWidths[1] == kFanOut && kRollupWidths[2] == kFanOut * kRollupWidths[1] &&
              kRollupWidths[3] == kFanOut * kRollupWidths[2] &&
              kRollupWidths[4] == kFanOut * kRollupWidths[3]);

// Level-1 blocks below this bucket are a whole block behind the run's newest step (`newest_step`):
// the ranks that lag have had a block's time to report. The writer refreshes them a group at a time
// (DueBuckets). 0 while the run is younger than two blocks.
inline std::int64_t SettledBuckets(std::int64_t newest_step) {
  return std::max<std::int64_t>(0, newest_step / kRollupWidths[1] - 1);
}

// Settled level-1 blocks are written kDueGroup at a time: the rows a rank gets in one transaction
// then share a page, where a block at a time rewrites each rank's page for every block (at world
// size 1,024, a thousand pages for one block's rows). Blocks settled but not yet due stay pending
// (queries read them from their steps). kDueGroup divides the fan-out, so that every child of a
// complete coarser block (CompleteBlocksBelow) is due.
inline constexpr std::int64_t kDueGroup = 4;
static_assert(kFanOut % kDueGroup == 0);
inline std::int64_t DueBuckets(std::int64_t newest_step) {
  return SettledBuckets(newest_step) / kDueGroup * kDueGroup;
}

// A block of `level` >= 2 is stored only once it is complete, every level-1 block in it settled
// (SettledBuckets), and from then on holds all its children: the blocks of `level` below the one
// returned. The block still filling (and its ancestors) are read from the level below, so that a
// new level-1 block costs one row, not one per level (at world size 1,024 the ancestors' upserts
// were most of the rollups' time).
inline std::int64_t CompleteBlocksBelow(int level, std::int64_t settled_buckets) {
  return settled_buckets / (kRollupWidths[static_cast<std::size_t>(level)] / kRollupWidths[1]);
}

// Min and max over the non-NaN values of one series (+-Inf included), and the number of NaNs, so
// that spikes and NaNs both survive any amount of downsampling. Absent values are not counted.
struct SeriesStats {
  std::optional<double> min;
  std::optional<double> max;
  std::int64_t nan = 0;

  void Add(std::optional<double> value);
  void Merge(const SeriesStats& other);
};

// What one block (or one output bucket) of steps holds.
struct BlockStats {
  std::int64_t first_step = 0;
  std::int64_t last_step = 0;
  std::int64_t n = 0;  // records (steps of this rank) in the block
  SeriesStats loss, ref_loss, grad_norm, tokens, lr;

  void Merge(const BlockStats& other);
};

// A contiguous run of aligned level-`level` blocks: buckets first..last (bucket = step / width).
struct BlockRange {
  int level = 0;
  std::int64_t first_bucket = 0;
  std::int64_t last_bucket = 0;
};

// The fewest block ranges, using levels up to `max_level`, whose blocks exactly tile steps
// [first_step, last_step]: the range of level max_level in the middle, finer levels at the ragged
// edges (at most two ranges per level). Requires 0 <= first_step <= last_step.
std::vector<BlockRange> PlanCover(std::int64_t first_step, std::int64_t last_step, int max_level);

// How to downsample steps [first_step, last_step] into at most `max_buckets` output buckets
// aligned to multiples of `bucket_width`: read blocks of `level` (the coarsest whose width does
// not exceed the bucket width, which it divides). Requires max_buckets >= 2.
struct Resolution {
  int level = 0;
  std::int64_t bucket_width = 1;
};
Resolution ChooseResolution(std::int64_t first_step, std::int64_t last_step,
                            std::int64_t max_buckets);

}  // namespace lossguard::store
