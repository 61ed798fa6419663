#include "lossguard/analyzers/detectors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "analyzers/records.h"

namespace lossguard::analyzers {
namespace detectors_test {

using ::testing::HasSubstr;
constexpr double kInf = std::numeric_limits<double>::infinity();

using testing::Step;

TEST(NonFinite, FiresOnTheVeryStepAndNamesWhat) {
  NonFiniteDetector detector;
  EXPECT_FALSE(detector.Observe(Step(0, 2.0)));
  auto nan_loss = Step(1, NAN);
  auto finding = detector.Observe(nan_loss);
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->severity, Severity::kCritical);
  EXPECT_THAT(finding->message, HasSubstr("loss is NaN"));
  EXPECT_EQ(finding->evidence["loss"], "NaN");
  auto inf_grad = Step(2, 2.0);
  inf_grad.grad_norm = INFINITY;
  EXPECT_THAT(detector.Observe(inf_grad)->message, HasSubstr("grad_norm is Infinity"));
  auto neg_ref = Step(3, 2.0);
  neg_ref.ref_loss = -INFINITY;
  EXPECT_THAT(detector.Observe(neg_ref)->message, HasSubstr("ref_loss is -Infinity"));
  auto grads = Step(4, 2.0);
  grads.nonfinite_grads = 12;
  EXPECT_THAT(detector.Observe(grads)->message, HasSubstr("12 gradient elements"));
  grads.nonfinite_grads = 0;
  EXPECT_FALSE(detector.Observe(grads));
}

TEST(LossScale, GaBugWithRefLossIsExplainedByGaSteps) {
  LossScaleDetector detector;
  std::optional<Finding> finding;
  for (int s = 0; s < 3; ++s) {
    auto r = Step(s, 83.7 - s, 8);
    r.ref_loss = (83.7 - s) / 8;
    finding = detector.Observe(r);
    if (s < 2) {
      EXPECT_FALSE(finding) << "needs confirm_steps consecutive steps";
    }
  }
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->severity, Severity::kCritical);
  EXPECT_EQ(finding->evidence["explained_by"], "ga_steps");
  EXPECT_NEAR(finding->evidence["factor"].get<double>(), 8.0, 1e-9);
  EXPECT_EQ(finding->evidence["reference_method"], "ref_loss");
  EXPECT_EQ(finding->message,
            "loss is 8x the token-normalised loss 10.2: micro-batch losses are summed over "
            "ga_steps=8 without dividing");
}

TEST(LossScale, MicroBatchDataIsAReferenceToo) {
  LossScaleDetector detector;
  std::optional<Finding> finding;
  for (int s = 0; s < 3; ++s) {
    auto r = Step(s, 4.0 * 2, 1, 2);  // per-rank token counts under DDP: world_size x
    r.micro = {wire::MicroBatch{3.0, 100, 300.0}, wire::MicroBatch{5.0, 100, std::nullopt}};
    finding = detector.Observe(r);
  }
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->evidence["reference_method"], "micro_batches");
  EXPECT_EQ(finding->evidence["explained_by"], "world_size");
}

TEST(LossScale, ExplanationsForEachConfigurationValue) {
  auto r = Step(0, 1.0, 4, 2);
  r.micro_batch_size = 2;
  r.tokens = 4 * 2 * 300;  // 300 label tokens per sequence
  EXPECT_EQ(MatchLossFactor(8.0, LossFactorsOf(r))->name, "ga_steps*world_size");
  EXPECT_EQ(MatchLossFactor(4.1, LossFactorsOf(r))->name, "ga_steps");
  EXPECT_EQ(MatchLossFactor(0.25, LossFactorsOf(r))->name, "1/ga_steps");
  EXPECT_EQ(MatchLossFactor(0.5, LossFactorsOf(r))->name, "1/world_size");
  EXPECT_EQ(MatchLossFactor(297.0, LossFactorsOf(r))->name, "tokens_per_sequence");
  EXPECT_EQ(MatchLossFactor(1.3, LossFactorsOf(r)), std::nullopt);
}

TEST(LossScale, AnUnexplainedStableFactorStillFires) {
  LossScaleDetector detector;
  std::optional<Finding> finding;
  for (int s = 0; s < 5; ++s) {
    auto r = Step(s, 1.3 * 3.0);
    r.ref_loss = 3.0;
    finding = detector.Observe(r);
  }
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->evidence["explained_by"], "unexplained");
  EXPECT_THAT(finding->message, HasSubstr("no configuration value explains the factor"));
}

TEST(LossScale, CorrectLossAndSmallNoiseDoNotFire) {
  LossScaleDetector detector;
  std::mt19937 rng(3);
  std::normal_distribution<double> noise(0.0, 0.01);
  for (int s = 0; s < 500; ++s) {
    auto r = Step(s, 3.0 * (1 + noise(rng)), 8);
    r.ref_loss = 3.0;
    EXPECT_FALSE(detector.Observe(r)) << "step " << s;
  }
}

TEST(LossScale, WithoutReferenceDataUsesLnVocabAtInitAndAsABound) {
  // Axolotl's report: 83.7 at vocab 32000 (ln = 10.37) with GA 8, and nothing else sent.
  LossScaleDetector buggy;
  std::optional<Finding> finding;
  for (int s = 0; s < 3; ++s) {
    auto r = Step(s, 83.7, 8);
    r.vocab_size = 32000;
    finding = buggy.Observe(r);
  }
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->evidence["explained_by"], "ga_steps");
  EXPECT_EQ(finding->evidence["reference_method"], "ln_vocab_size_at_init");
  EXPECT_THAT(finding->message, HasSubstr("a causal LM's loss at initialisation"));

  LossScaleDetector healthy;  // 10.5 at the start is what a correct run reports
  for (int s = 0; s < 30; ++s) {
    auto r = Step(s, 10.5 - 0.2 * s, 8);
    r.vocab_size = 32000;
    EXPECT_FALSE(healthy.Observe(r)) << "step " << s;
  }
  // Long after initialisation, a loss far above ln(vocab_size) is still implausible (the bound),
  // but only once it has stayed there for bound_late_span steps: a run seen from step 1000 on.
  LossScaleDetector late;
  late.SetFirstStep(0);
  std::optional<Finding> late_finding;
  int s = 1000;
  for (; s < 1100 && !late_finding; ++s) {
    auto r = Step(s, 83.7, 8);
    r.vocab_size = 32000;
    late_finding = late.Observe(r);
  }
  ASSERT_TRUE(late_finding);
  EXPECT_EQ(s - 1, 1050);
  EXPECT_EQ(late_finding->evidence["reference_method"], "ln_vocab_size_bound");
  EXPECT_EQ(late_finding->evidence["explained_by"], "ga_steps");
}

TEST(LossScale, EdgeValuesDoNotFireOrCrash) {
  LossScaleDetector detector;
  for (double loss : {std::nan(""), kInf, 0.0, -1.0, 1e-300, 1e300}) {
    auto r = Step(0, loss, 8);
    r.ref_loss = 1.0;
    r.micro = {wire::MicroBatch{0.0, 0, 0.0}};
    detector.Observe(r);
  }
  auto zero_tokens = Step(1, 2.0, 8);
  zero_tokens.micro = {wire::MicroBatch{0.0, 0, 0.0}};
  EXPECT_FALSE(detector.Observe(zero_tokens)) << "no tokens: no reference, no judgement";
}

TEST(GradExplosion, HealthyEarlyRunWithLargeFallingNormsDoesNotFire) {
  GradExplosionDetector detector;
  std::mt19937 rng(1);
  std::lognormal_distribution<double> noise(0.0, 0.2);
  for (int s = 0; s < 400; ++s) {
    auto r = Step(s, 3.0);
    r.grad_norm = (50.0 * std::exp(-s / 15.0) + 0.8) * noise(rng);
    EXPECT_FALSE(detector.Observe(r)) << "step " << s << " grad_norm " << *r.grad_norm;
  }
}

TEST(GradExplosion, SpikeFarAboveTheBaselineFiresAndDoesNotPoisonIt) {
  GradExplosionDetector detector;
  std::mt19937 rng(2);
  std::lognormal_distribution<double> noise(0.0, 0.1);
  int s = 0;
  for (; s < 100; ++s) {
    auto r = Step(s, 3.0);
    r.grad_norm = 1.0 * noise(rng);
    ASSERT_FALSE(detector.Observe(r));
  }
  for (int i = 0; i < 30; ++i, ++s) {  // a long explosion must keep firing
    auto r = Step(s, 3.0);
    r.grad_norm = 40.0;
    auto finding = detector.Observe(r);
    ASSERT_TRUE(finding) << "step " << s;
    EXPECT_EQ(finding->evidence["rule"], "robust_baseline");
    EXPECT_GT(finding->evidence["ratio"].get<double>(), 30.0);
    EXPECT_EQ(finding->severity, i < 2 ? Severity::kInfo : Severity::kCritical) << "persistent";
  }
  auto calm = Step(s, 3.0);
  calm.grad_norm = 1.1;
  EXPECT_FALSE(detector.Observe(calm));
}

TEST(GradExplosion, GeometricGrowthFiresBeforeTheBaselineRuleWould) {
  GradExplosionDetector detector;
  std::optional<Finding> finding;
  double norm = 0.5;
  for (int s = 0; s < 8 && !finding; ++s) {  // within min_history: only the growth rule can fire
    auto r = Step(s, 3.0);
    r.grad_norm = norm;
    norm *= 2.0;
    finding = detector.Observe(r);
  }
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->evidence["rule"], "geometric_growth");
  EXPECT_GE(finding->evidence["growth"].get<double>(), 10.0);
}

TEST(GradExplosion, MissingZeroAndNonFiniteNormsAreNotJudged) {
  GradExplosionDetector detector;
  auto r = Step(0, 3.0);
  EXPECT_FALSE(detector.Observe(r));
  for (double norm : {0.0, std::nan(""), kInf, -1.0}) {
    r.grad_norm = norm;
    EXPECT_FALSE(detector.Observe(r));
  }
}

}  // namespace detectors_test
}  // namespace lossguard::analyzers

namespace lossguard::analyzers {
namespace detectors_test {

TEST(LossScale, TheExplanationHoldsWhileTheFactorWobblesNearIt) {
  // Per-rank losses against a global ref_loss (DDP with the GA bug): 4x, give or take 6%.
  LossScaleDetector detector;
  std::mt19937 rng(8);
  std::uniform_real_distribution<double> wobble(0.94, 1.06);
  int explained = 0, fired = 0;
  for (int s = 0; s < 200; ++s) {
    auto r = testing::Step(s, 4.0 * 2.0 * wobble(rng), 4, 2);
    r.ref_loss = 2.0;
    if (auto finding = detector.Observe(r)) {
      ++fired;
      explained += finding->evidence["explained_by"] == "ga_steps";
    }
  }
  EXPECT_EQ(fired, 198);
  EXPECT_EQ(explained, fired) << "once explained, a 6% wobble does not make it 'unexplained'";
}

TEST(LossScale, SummedMicroBatchMeansAreExplainedAgainstTheirMean) {
  // Axolotl: the loss is the sum of per-micro-batch means, so it is exactly ga_steps x their mean
  // but only roughly ga_steps x the token-weighted loss.
  LossScaleDetector detector;
  std::optional<Finding> finding;
  for (int s = 0; s < 3; ++s) {
    auto r = testing::Step(s, 0, 2);
    r.micro = {wire::MicroBatch{3.0, 10, std::nullopt}, wire::MicroBatch{2.0, 90, std::nullopt}};
    r.loss = 3.0 + 2.0;  // token-weighted 2.1: factor 2.38, not 2
    finding = detector.Observe(r);
  }
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->evidence["explained_by"], "ga_steps");
  EXPECT_NEAR(finding->evidence["factor"].get<double>(), 5.0 / 2.1, 1e-9);
}

}  // namespace detectors_test
}  // namespace lossguard::analyzers
