// token_weighting_bias, config_change, and loss_scale_mismatch's level shift at a change.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "analyzers/records.h"
#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {
namespace weighting_and_level_test {

using ::testing::HasSubstr;
using testing::Step;

// A GA-8 step whose micro-batches differ in length; `report` picks what the trainer reports.
enum class Report { kTokenWeighted, kMeanOfMeans, kScaled };
wire::StepRecord GaStep(std::int64_t s, std::mt19937& rng, Report report) {
  std::uniform_int_distribution<int> length(15, 63);
  std::uniform_real_distribution<double> level(2.0, 3.0);
  auto r = Step(s, 0, 8);
  double sum = 0, means = 0;
  std::int64_t tokens = 0;
  for (int i = 0; i < 8; ++i) {
    wire::MicroBatch mb;
    mb.tokens = length(rng);
    mb.loss = level(rng);
    mb.loss_sum = mb.loss * static_cast<double>(mb.tokens);
    sum += *mb.loss_sum;
    means += mb.loss;
    tokens += mb.tokens;
    r.micro.push_back(mb);
  }
  const double weighted = sum / static_cast<double>(tokens);
  r.loss = report == Report::kTokenWeighted ? weighted
           : report == Report::kMeanOfMeans ? means / 8
                                            : 8 * weighted;
  r.tokens = tokens;
  return r;
}

TEST(TokenWeighting, MeanOfMeansFiresAfterMinInformativeSteps) {
  TokenWeightingDetector detector;
  std::mt19937 rng(1);
  std::optional<Finding> finding;
  int s = 0;
  for (; s < 100 && !finding; ++s) finding = detector.Observe(GaStep(s, rng, Report::kMeanOfMeans));
  ASSERT_TRUE(finding);
  EXPECT_EQ(s, 8) << "every step is informative here; fires at min_informative";
  EXPECT_EQ(finding->severity, Severity::kWarning);
  EXPECT_THAT(finding->message, HasSubstr("mean of per-micro-batch means"));
  EXPECT_EQ(finding->evidence["following_mean_of_means"], 8);
}

TEST(TokenWeighting, CorrectAndScaledLossesDoNotFire) {
  std::mt19937 rng(2);
  for (Report report : {Report::kTokenWeighted, Report::kScaled}) {
    TokenWeightingDetector detector;
    for (int s = 0; s < 300; ++s) EXPECT_FALSE(detector.Observe(GaStep(s, rng, report))) << s;
  }
}

TEST(TokenWeighting, EqualTokenCountsSayNothing) {
  // With equal micro-batch lengths the two means coincide: no verdict either way.
  TokenWeightingDetector detector;
  for (int s = 0; s < 100; ++s) {
    auto r = Step(s, 2.5, 4);
    for (int i = 0; i < 4; ++i)
      r.micro.push_back(wire::MicroBatch{2.0 + i * 0.3, 50, std::nullopt});
    r.loss = (2.0 + 2.3 + 2.6 + 2.9) / 4;
    EXPECT_FALSE(detector.Observe(r));
  }
}

TEST(TokenWeighting, SingleMicroBatchZeroTokensAndNaNAreNotJudged) {
  TokenWeightingDetector detector;
  for (int s = 0; s < 50; ++s) {
    auto single = Step(s, 2.0);
    single.micro = {wire::MicroBatch{2.0, 40, std::nullopt}};
    EXPECT_FALSE(detector.Observe(single));
    auto empty = Step(s, 2.0, 2);
    empty.micro = {wire::MicroBatch{0.0, 0, 0.0}, wire::MicroBatch{0.0, 0, 0.0}};
    EXPECT_FALSE(detector.Observe(empty));
    auto nan = Step(s, std::nan(""), 2);
    nan.micro = {wire::MicroBatch{std::nan(""), 10, std::nullopt},
                 wire::MicroBatch{1.0, 30, std::nullopt}};
    EXPECT_FALSE(detector.Observe(nan));
  }
}

TEST(ConfigChange, ReportsEachChangedValueOnce) {
  ConfigChangeDetector detector;
  auto a = Step(0, 2.0, 2);
  EXPECT_FALSE(detector.Observe(a));
  a.step = 1;
  EXPECT_FALSE(detector.Observe(a));
  auto b = Step(2, 2.0, 8, 2);
  auto finding = detector.Observe(b);
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->severity, Severity::kInfo);
  EXPECT_EQ(finding->message,
            "configuration changed at step 2: ga_steps 2 -> 8, world_size 1 -> 2");
  EXPECT_EQ(finding->evidence["ga_steps"]["before"], 2);
  EXPECT_EQ(finding->evidence["world_size"]["after"], 2);
  EXPECT_FALSE(finding->evidence.contains("micro_batch_size"));
  EXPECT_EQ(detector.before().ga_steps, 2);
  b.step = 3;
  EXPECT_FALSE(detector.Observe(b));
}

// Minimal records (no reference) across a GA change 1 -> 8 at step 40.
std::optional<Finding> RunAcrossChange(LossScaleDetector& detector, bool bug, int& fired_at) {
  std::mt19937 rng(5);
  std::normal_distribution<double> noise(0, 0.05);
  std::optional<Finding> last;
  fired_at = -1;
  for (int s = 0; s < 80; ++s) {
    const std::int64_t ga = s < 40 ? 1 : 8;
    const double correct = 3.0 - s * 0.01 + noise(rng);
    auto r = Step(s, bug ? correct * static_cast<double>(ga) : correct, ga);
    if (s == 40) detector.ConfigChanged(RunConfig{1, 1, 1}, RunConfig{8, 1, 1}, s);
    last = detector.Observe(r);
    if (last && fired_at < 0) fired_at = s;
  }
  return last;
}

TEST(LossScaleLevelShift, LossJumpingByTheGaRatioAtAChangeFires) {
  LossScaleDetector detector;
  int fired_at;
  auto finding = RunAcrossChange(detector, /*bug=*/true, fired_at);
  ASSERT_TRUE(finding) << "keeps firing while the configuration holds";
  EXPECT_EQ(fired_at, 44) << "judged over level_shift_steps = 5 steps after the change";
  EXPECT_EQ(finding->evidence["explained_by"], "ga_steps");
  EXPECT_EQ(finding->evidence["reference_method"], "level_before_config_change");
  EXPECT_NEAR(finding->evidence["factor"].get<double>(), 8.0, 0.8);
  EXPECT_THAT(finding->message, HasSubstr("when ga_steps 1 -> 8 at step 40"));
}

TEST(LossScaleLevelShift, ACorrectLossKeepsItsLevelAndDoesNotFire) {
  LossScaleDetector detector;
  int fired_at;
  EXPECT_FALSE(RunAcrossChange(detector, /*bug=*/false, fired_at));
  EXPECT_EQ(fired_at, -1);
}

TEST(LossScaleLevelShift, AChangeWithoutHistoryIsNotJudged) {
  LossScaleDetector detector;
  auto r = Step(0, 3.0, 1);
  detector.Observe(r);
  detector.ConfigChanged(RunConfig{1, 1, 1}, RunConfig{8, 1, 1}, 1);
  for (int s = 1; s < 20; ++s) EXPECT_FALSE(detector.Observe(Step(s, 24.0, 8)));
}

}  // namespace weighting_and_level_test
}  // namespace lossguard::analyzers
