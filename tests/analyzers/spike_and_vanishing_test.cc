// loss_spike and vanishing_grad.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "analyzers/records.h"
#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {
namespace spike_and_vanishing_test {

using ::testing::HasSubstr;
using testing::Step;

TEST(LossSpike, NoisyFallingCurveDoesNotFire) {
  // Tiny noisy batches and a fast fall from ln(V): the healthy shape of an early run.
  LossSpikeDetector detector;
  std::mt19937 rng(1);
  std::lognormal_distribution<double> noise(0.0, 0.15);
  for (int s = 0; s < 2000; ++s) {
    double loss = (2.0 + 8.0 * std::exp(-s / 50.0)) * noise(rng);
    EXPECT_FALSE(detector.Observe(Step(s, loss))) << "step " << s << " loss " << loss;
  }
}

TEST(LossSpike, JumpFiresKeepsFiringAndDoesNotRaiseTheBaseline) {
  LossSpikeDetector detector;
  std::mt19937 rng(2);
  std::normal_distribution<double> noise(0.0, 0.02);
  int s = 0;
  for (; s < 200; ++s) ASSERT_FALSE(detector.Observe(Step(s, 2.0 + noise(rng))));
  for (int i = 0; i < 20; ++i, ++s) {
    auto finding = detector.Observe(Step(s, 6.0));
    ASSERT_TRUE(finding) << "step " << s;
    // Evidence decides: a lone spike is info, one that persists (3 of 6) a warning, a loss that
    // stays up (7 of 8) critical.
    EXPECT_EQ(finding->severity,
              i < 2 ? Severity::kInfo : (i < 6 ? Severity::kWarning : Severity::kCritical))
        << i;
    EXPECT_NEAR(finding->evidence["ratio"].get<double>(), 3.0, 0.1);
  }
  EXPECT_THAT(detector.Observe(Step(s++, 6.0))->message, HasSubstr("is 3x its recent median 2"));
  EXPECT_FALSE(detector.Observe(Step(s++, 2.01)));
}

TEST(LossSpike, FlatCurveNeedsTheRatioFloor) {
  // sigma ~ 0: mean + 6 sigma alone would fire on a 1% wobble.
  LossSpikeDetector detector;
  for (int s = 0; s < 100; ++s) ASSERT_FALSE(detector.Observe(Step(s, 2.0)));
  EXPECT_FALSE(detector.Observe(Step(100, 2.02)));
  EXPECT_FALSE(detector.Observe(Step(101, 2.9)));
  EXPECT_TRUE(detector.Observe(Step(102, 3.1)));
}

TEST(LossSpike, NeedsHistoryAndResetForgetsIt) {
  LossSpikeDetector short_history;
  for (int s = 0; s < 31; ++s) short_history.Observe(Step(s, 1.0));
  EXPECT_FALSE(short_history.Observe(Step(31, 100.0))) << "31 < min_history steps of baseline";

  LossSpikeDetector detector;
  for (int s = 0; s < 32; ++s) detector.Observe(Step(s, 1.0));
  EXPECT_TRUE(detector.Observe(Step(32, 100.0)));
  detector.Reset();
  EXPECT_FALSE(detector.Observe(Step(33, 100.0)));
}

TEST(LossSpike, NonFiniteAndHugeValuesAreHandled) {
  LossSpikeDetector detector;
  for (int s = 0; s < 50; ++s) detector.Observe(Step(s, 1e-30 * (1 + s % 3)));
  EXPECT_FALSE(detector.Observe(Step(50, std::nan(""))));
  EXPECT_FALSE(detector.Observe(Step(51, INFINITY)));
  auto huge = detector.Observe(Step(52, 1e300));
  ASSERT_TRUE(huge) << "1e300 over a 1e-30 baseline";
  EXPECT_TRUE(std::isinf(huge->evidence["ratio"].get<double>())) << "the ratio overflows: kept";
}

wire::StepRecord GradStep(std::int64_t s, double norm, double loss = 2.0) {
  auto r = Step(s, loss);
  r.grad_norm = norm;
  r.tokens = 512;
  return r;
}

TEST(VanishingGrad, ZeroNormWithTokensAndLossFiresAfterConfirmation) {
  VanishingGradDetector detector;
  EXPECT_FALSE(detector.Observe(GradStep(0, 1.0)));
  EXPECT_FALSE(detector.Observe(GradStep(1, 0.0))) << "confirm_steps = 2";
  auto finding = detector.Observe(GradStep(2, 0.0));
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->severity, Severity::kCritical);
  EXPECT_THAT(finding->message, HasSubstr("grad_norm is 0 for 2 steps"));
  EXPECT_EQ(finding->evidence["tokens"], 512);
  EXPECT_FALSE(detector.Observe(GradStep(3, 0.9))) << "gradients are back";
}

TEST(VanishingGrad, CollapseByOrdersOfMagnitudeFires) {
  VanishingGradDetector detector;
  for (int s = 0; s < 30; ++s) ASSERT_FALSE(detector.Observe(GradStep(s, 1.0 + 0.01 * (s % 5))));
  EXPECT_FALSE(detector.Observe(GradStep(30, 0.05))) << "20x lower is still learning";
  EXPECT_FALSE(detector.Observe(GradStep(31, 1e-5)));
  auto finding = detector.Observe(GradStep(32, 1e-5));
  ASSERT_TRUE(finding);
  EXPECT_THAT(finding->message, HasSubstr("its recent median"));
}

TEST(VanishingGrad, StepsThatShouldNotLearnDoNotCount) {
  VanishingGradDetector detector;
  for (int s = 0; s < 10; ++s) {
    auto no_tokens = GradStep(s, 0.0);
    no_tokens.tokens = 0;  // an all-padding step: zero gradient is right
    EXPECT_FALSE(detector.Observe(no_tokens));
    EXPECT_FALSE(detector.Observe(GradStep(s, 0.0, 0.0)));  // zero loss: nothing to learn
    EXPECT_FALSE(detector.Observe(GradStep(s, std::nan(""))));
    auto no_norm = Step(s, 2.0);  // grad_norm not sent
    EXPECT_FALSE(detector.Observe(no_norm));
  }
}

}  // namespace spike_and_vanishing_test
}  // namespace lossguard::analyzers
