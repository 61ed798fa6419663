#include "store/rollup.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace lossguard::store {
namespace rollup_test {

void ExpectExactTiling(std::int64_t first, std::int64_t last, int max_level) {
  std::vector<BlockRange> plan = PlanCover(first, last, max_level);
  std::int64_t next = first;
  std::vector<int> ranges_per_level(kLevels, 0);
  for (const BlockRange& range : plan) {
    ASSERT_LE(range.level, max_level);
    ASSERT_LE(range.first_bucket, range.last_bucket);
    std::int64_t width = kRollupWidths[range.level];
    EXPECT_EQ(range.first_bucket * width, next)
        << "contiguous, no overlap, at " << first << ".." << last;
    next = (range.last_bucket + 1) * width;
    ++ranges_per_level[range.level];
  }
  EXPECT_EQ(next, last + 1);
  for (int level = 0; level < max_level; ++level) EXPECT_LE(ranges_per_level[level], 2);
  EXPECT_LE(ranges_per_level[max_level], 1);
}

TEST(PlanCover, TilesExactlyWithFewRanges) {
  ExpectExactTiling(0, 0, 4);
  ExpectExactTiling(0, 65535, 4);
  ExpectExactTiling(1, 65534, 4);
  ExpectExactTiling(15, 16, 1);
  ExpectExactTiling(5, 9, 3);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::int64_t a = static_cast<std::int64_t>(rng() % 1'000'000);
    std::int64_t b = a + static_cast<std::int64_t>(rng() % 300'000);
    ExpectExactTiling(a, b, static_cast<int>(rng() % kLevels));
  }
}

TEST(PlanCover, UsesTheCoarsestLevelForTheMiddle) {
  auto plan = PlanCover(0, 1'048'575, 4);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].level, 4);
  EXPECT_EQ(plan[0].last_bucket, 15);
}

TEST(ChooseResolution, NeverMoreBucketsThanAskedAndWidthIsAMultipleOfTheLevel) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 5000; ++i) {
    std::int64_t a = static_cast<std::int64_t>(rng() % 2'000'000);
    std::int64_t b = a + static_cast<std::int64_t>(rng() % 2'000'000);
    std::int64_t max_buckets = 2 + static_cast<std::int64_t>(rng() % 5000);
    Resolution r = ChooseResolution(a, b, max_buckets);
    ASSERT_GE(r.bucket_width, 1);
    EXPECT_EQ(r.bucket_width % kRollupWidths[r.level], 0);
    EXPECT_LE(b / r.bucket_width - a / r.bucket_width + 1, max_buckets)
        << a << ".." << b << " / " << max_buckets;
    if (r.level + 1 < kLevels) {
      EXPECT_LT(r.bucket_width, kRollupWidths[r.level + 1] * 16);
    }
  }
}

TEST(ChooseResolution, SmallRangesAreNotDownsampled) {
  Resolution r = ChooseResolution(100, 199, 1000);
  EXPECT_EQ(r.level, 0);
  EXPECT_EQ(r.bucket_width, 1);
}

TEST(ChooseResolution, MillionStepsInAThousandBuckets) {
  Resolution r = ChooseResolution(0, 999'999, 1000);
  EXPECT_EQ(r.level, 2);  // blocks of 256 steps: about 4,000 rows read, not 1,000,000
  EXPECT_EQ(r.bucket_width, 1024);
}

// Databases from before the wire format's 2^53-1 bound may hold steps up to INT64_MAX: the plan and
// the resolution must not overflow there (the issue: max_points was ignored, 180 MB came back).
TEST(ChooseResolution, TheWidestRangeStaysWithinMaxBuckets) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  for (std::int64_t first : {std::int64_t{0}, std::int64_t{1}, kMax / 2, kMax - 1, kMax}) {
    Resolution r = ChooseResolution(first, kMax, 1000);
    ASSERT_GE(r.bucket_width, 1);
    EXPECT_LE(kMax / r.bucket_width - first / r.bucket_width + 1, 1000) << first;
  }
}

TEST(PlanCover, TilesUpToTheLargestStep) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  for (std::int64_t first : {std::int64_t{0}, std::int64_t{5}, kMax - 100, kMax}) {
    auto plan = PlanCover(first, kMax, 4);
    ASSERT_FALSE(plan.empty());
    std::int64_t next = first;
    for (const BlockRange& range : plan) {
      const std::int64_t width = kRollupWidths[range.level];
      EXPECT_EQ(range.first_bucket * width, next);
      const std::int64_t last = range.last_bucket * width + (width - 1);
      if (last == kMax) {
        EXPECT_EQ(&range, &plan.back());
        next = kMax;
        break;
      }
      next = last + 1;
    }
    EXPECT_EQ(next, kMax) << "the plan reaches the last step from " << first;
  }
}

TEST(SeriesStats, NanIsCountedAndInfinityIsAnExtreme) {
  SeriesStats stats;
  stats.Add(std::nullopt);
  stats.Add(NAN);
  stats.Add(2.0);
  stats.Add(INFINITY);
  stats.Add(-1.0);
  EXPECT_EQ(stats.nan, 1);
  EXPECT_EQ(*stats.min, -1.0);
  EXPECT_EQ(*stats.max, INFINITY);
  SeriesStats other;
  other.Add(NAN);
  other.Add(-5.0);
  stats.Merge(other);
  EXPECT_EQ(stats.nan, 2);
  EXPECT_EQ(*stats.min, -5.0);
}

}  // namespace rollup_test
}  // namespace lossguard::store
