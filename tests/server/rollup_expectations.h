// Brute-force expectations for the rollup tests: what a step contributes to a block, what a
// downsampled answer must hold, and the comparisons that name what differs.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/rollup.h"
#include "store/store.h"

namespace lossguard::store {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
inline constexpr double kInf = std::numeric_limits<double>::infinity();

// A learning rate as trainers send it: mostly a schedule's value, sometimes absent, rarely a
// blow-up to a huge, infinite or NaN value.
inline std::optional<double> RandomLearningRate(std::mt19937_64& rng) {
  const double roll = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (roll < 0.2) return std::nullopt;
  if (roll < 0.201) return kNaN;
  if (roll < 0.202) return kInf;
  if (roll < 0.204) return 10.0;
  return 1e-4 * (1.0 + roll);
}

// Brute force: what one step contributes to its bucket, from the record itself.
inline BlockStats OneStep(const wire::StepRecord& r) {
  BlockStats one;
  one.first_step = one.last_step = r.step;
  one.n = 1;
  one.loss.Add(r.loss);
  one.ref_loss.Add(r.ref_loss);
  one.grad_norm.Add(r.grad_norm);
  if (r.tokens) one.tokens.Add(static_cast<double>(*r.tokens));
  one.lr.Add(r.lr);
  return one;
}

// Brute force: what every output bucket must hold, from the records themselves.
inline std::map<std::int64_t, BlockStats> Expected(
    const std::map<std::int64_t, wire::StepRecord>& steps, std::int64_t from, std::int64_t to,
    std::int64_t width) {
  std::map<std::int64_t, BlockStats> out;
  for (auto it = steps.lower_bound(from); it != steps.end() && it->first <= to; ++it) {
    out[it->first / width].Merge(OneStep(it->second));
  }
  return out;
}

inline void ExpectSame(const SeriesStats& actual, const SeriesStats& expected,
                       const std::string& what) {
  EXPECT_EQ(actual.min, expected.min) << what;
  EXPECT_EQ(actual.max, expected.max) << what;
  EXPECT_EQ(actual.nan, expected.nan) << what;
}

inline void ExpectBlock(const BlockStats& actual, const BlockStats& want, const std::string& what) {
  EXPECT_EQ(actual.first_step, want.first_step) << what;
  EXPECT_EQ(actual.last_step, want.last_step) << what;
  EXPECT_EQ(actual.n, want.n) << what;
  ExpectSame(actual.loss, want.loss, what + " loss");
  ExpectSame(actual.ref_loss, want.ref_loss, what + " ref_loss");
  ExpectSame(actual.grad_norm, want.grad_norm, what + " grad_norm");
  ExpectSame(actual.tokens, want.tokens, what + " tokens");
  ExpectSame(actual.lr, want.lr, what + " lr");
}

// The buckets a query returned against the brute-force expectation, bucket by bucket.
inline void ExpectBuckets(const std::vector<BlockStats>& buckets,
                          const std::map<std::int64_t, BlockStats>& expected,
                          const std::string& what) {
  ASSERT_EQ(buckets.size(), expected.size()) << what;
  auto it = expected.begin();
  for (const BlockStats& bucket : buckets) ExpectBlock(bucket, (it++)->second, what);
}

// A downsampled answer for `run`, of one rank (`only`) or all, against brute force over `truth`
// (rank -> step -> record): every rank with steps in range answers, each with the right buckets.
inline void ExpectAnswersAsBruteForce(
    Store& store, const std::string& run,
    const std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>>& truth,
    std::int64_t from, std::int64_t to, std::optional<std::int64_t> only, std::int64_t max_buckets,
    const std::string& what) {
  auto series = store.runs().Downsampled(run, from, to, only, max_buckets);
  ASSERT_TRUE(series.has_value()) << what;
  std::size_t nonempty = 0;
  for (const auto& [rank, steps] : truth) {
    if (only && rank != *only) continue;
    if (!Expected(steps, from, to, series->bucket_width).empty()) ++nonempty;
  }
  ASSERT_EQ(series->ranks.size(), nonempty) << what;
  for (const auto& rank : series->ranks) {
    auto steps = truth.find(rank.rank);
    ASSERT_NE(steps, truth.end()) << what << ": rank " << rank.rank << " was never sent";
    ExpectBuckets(rank.buckets, Expected(steps->second, from, to, series->bucket_width),
                  what + " rank " + std::to_string(rank.rank));
  }
}

}  // namespace lossguard::store
