#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "lossguard/analyzers/detectors.h"
#include "lossguard/analyzers/run_analyzer.h"
#include "records.h"

namespace lossguard::analyzers::testing {
namespace rank_divergence_test {

using ::testing::HasSubstr;

std::vector<wire::StepRecord> Ranks(std::int64_t step, int world, double grad_norm) {
  std::vector<wire::StepRecord> out;
  for (int rank = 0; rank < world; ++rank) {
    auto r = Step(step, 2.0 + 0.1 * rank, 2, world, rank);
    r.grad_norm = grad_norm;
    r.tokens = 1000 + 37 * rank;
    out.push_back(r);
  }
  return out;
}

TEST(RankDivergence, EqualNormsAndEvenRanksAreQuiet) {
  RankDivergenceDetector detector;
  for (int s = 0; s < 100; ++s) EXPECT_FALSE(detector.Observe(Ranks(s, 4, 1.0 + s * 1e-3))) << s;
  // Float reduction order: a relative difference of 1e-6 is noise.
  auto ranks = Ranks(100, 4, 1.0);
  ranks[2].grad_norm = 1.000001;
  EXPECT_FALSE(detector.Observe(ranks));
}

TEST(RankDivergence, ARankThatMissedTheAllReduceIsNamed) {
  RankDivergenceDetector detector;
  auto ranks = Ranks(7, 4, 1.0);
  ranks[3].grad_norm = 1.9;  // its local gradients, not the average
  auto divergence = detector.Observe(ranks);
  ASSERT_TRUE(divergence);
  EXPECT_EQ(divergence->first.severity, Severity::kCritical);
  EXPECT_EQ(divergence->second, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(divergence->first.evidence["rule"], "grad_norm");
  EXPECT_THAT(divergence->first.message, HasSubstr("ranks [3] missed"));
}

TEST(RankDivergence, ARankOnAnotherConfigurationIsCritical) {
  RankDivergenceDetector detector;
  auto ranks = Ranks(7, 4, 1.0);
  ranks[1].ga_steps = 4;
  ranks[1].micro_batch_size = 2;
  auto divergence = detector.Observe(ranks);
  ASSERT_TRUE(divergence);
  EXPECT_EQ(divergence->first.severity, Severity::kCritical);
  EXPECT_EQ(divergence->second, (std::vector<std::int64_t>{1}));
  EXPECT_EQ(divergence->first.evidence["rule"], "config");
  EXPECT_THAT(divergence->first.message, HasSubstr("ga_steps {\"0\":2,\"1\":4"));
}

TEST(RankDivergence, TokenImbalanceOverAWindowIsAnInfoNote) {
  RankDivergenceDetector detector;
  std::optional<std::pair<Finding, std::vector<std::int64_t>>> divergence;
  for (int s = 0; s < 40; ++s) {
    auto ranks = Ranks(s, 2, 1.0);
    ranks[1].tokens = 5000;  // 5x rank 0's
    divergence = detector.Observe(ranks);
    if (s < 31) {
      EXPECT_FALSE(divergence) << "a full window first; step " << s;
    }
  }
  ASSERT_TRUE(divergence);
  EXPECT_EQ(divergence->first.severity, Severity::kInfo);
  EXPECT_EQ(divergence->second, (std::vector<std::int64_t>{1}));
}

TEST(RankDivergence, TheRunAnalyzerMarksTheDivergingRank) {
  RunAnalyzer analyzer;
  std::vector<AlertEvent> events;
  for (int s = 0; s < 60; ++s) {
    for (auto& r : Ranks(s, 4, 1.0)) {
      if (s >= 30 && r.rank == 2) r.grad_norm = 1.4;
      for (auto& e : analyzer.Add(r)) events.push_back(e);
    }
  }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().kind, Kind::kRankDivergence);
  EXPECT_EQ(events.front().first_step, 30);
  EXPECT_EQ(events.front().severity, Severity::kCritical);
  EXPECT_EQ(events.front().evidence["ranks"], nlohmann::json::array({2}));
}

TEST(RankDivergence, SeveralDivergingRanksAreOneEpisodeWithTheDetectorsEvidence) {
  RunAnalyzer analyzer;
  std::vector<AlertEvent> events;
  for (int s = 0; s < 40; ++s) {
    for (auto& r : Ranks(s, 8, 1.0)) {
      if (s >= 30 && (r.rank == 2 || r.rank == 5 || r.rank == 6)) r.grad_norm = 1.3 + 0.1 * r.rank;
      for (auto& e : analyzer.Add(r)) events.push_back(e);
    }
  }
  ASSERT_FALSE(events.empty());
  const AlertEvent& episode = events.front();
  EXPECT_EQ(episode.kind, Kind::kRankDivergence);
  EXPECT_EQ(episode.first_step, 30);
  EXPECT_EQ(episode.severity, Severity::kCritical);
  EXPECT_EQ(episode.evidence["ranks"], nlohmann::json::array({2, 5, 6}));
  // What the detector found, once, whichever rank the episode lists first.
  EXPECT_EQ(episode.evidence["rule"], "grad_norm");
  EXPECT_EQ(episode.evidence["diverging_ranks"], nlohmann::json::array({2, 5, 6}));
  EXPECT_EQ(episode.evidence["grad_norms"].size(), 8u);
  EXPECT_THAT(episode.message, HasSubstr("grad_norm differs across ranks at step 30"));
  EXPECT_THAT(episode.message, HasSubstr("[ranks [2,5,6]]"));
}

TEST(RankDivergence, OneReportingRankIsNeverJudged) {
  RankDivergenceDetector detector;
  for (int s = 0; s < 50; ++s) EXPECT_FALSE(detector.Observe(Ranks(s, 1, s % 2 ? 1.0 : 5.0)));
}

}  // namespace rank_divergence_test
}  // namespace lossguard::analyzers::testing
