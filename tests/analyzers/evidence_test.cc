// Severity that follows evidence, noise-aware spikes, the ln(vocab_size) plausibility bound, and
// symptoms linked to their cause.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lossguard/analyzers/detectors.h"
#include "lossguard/analyzers/run_analyzer.h"
#include "records.h"

namespace lossguard::analyzers::testing {
namespace evidence_test {

using ::testing::HasSubstr;

// A healthy run's gradient norms: lognormal noise around 1.
std::vector<double> Norms(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<double> noise(0.0, 0.15);
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(noise(rng));
  return out;
}

TEST(GradExplosionSeverity, AnIsolatedSpikeThatTheRunAbsorbsIsInfo) {
  GradExplosionDetector detector;
  auto norms = Norms(200, 3);
  for (int s = 0; s < 200; ++s) {
    auto r = Step(s, 3.0);
    // Two lone spikes far apart (micro_batch 1 runs have them; clipping handles them).
    r.grad_norm = (s == 100 || s == 150) ? 7.7 : norms[s];
    auto finding = detector.Observe(r);
    if (s == 100 || s == 150) {
      ASSERT_TRUE(finding) << s;
      EXPECT_EQ(finding->severity, Severity::kInfo);
      EXPECT_EQ(finding->evidence["severity_reason"], "isolated");
    } else {
      EXPECT_FALSE(finding) << s;
    }
  }
}

TEST(GradExplosionSeverity, PersistenceMakesItCriticalWithinThreeSteps) {
  GradExplosionDetector detector;
  auto norms = Norms(100, 4);
  for (int s = 0; s < 100; ++s) {
    auto r = Step(s, 3.0);
    r.grad_norm = norms[s];
    ASSERT_FALSE(detector.Observe(r));
  }
  // An lr blow-up: the norm stays up, the loss does not move at first.
  std::vector<Severity> seen;
  for (int s = 100; s < 104; ++s) {
    auto r = Step(s, 3.0);
    r.grad_norm = 20.0;
    seen.push_back(detector.Observe(r)->severity);
  }
  EXPECT_EQ(seen, (std::vector<Severity>{Severity::kInfo, Severity::kInfo, Severity::kCritical,
                                         Severity::kCritical}));
}

TEST(GradExplosionSeverity, ALossThatRespondsMakesItCriticalAtOnce) {
  GradExplosionDetector detector;
  auto norms = Norms(100, 5);
  for (int s = 0; s < 100; ++s) {
    auto r = Step(s, 2.0);
    r.grad_norm = norms[s];
    ASSERT_FALSE(detector.Observe(r));
  }
  auto r = Step(100, 9.0);  // 4.5x the loss median
  r.grad_norm = 12.0;
  auto finding = detector.Observe(r);
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->severity, Severity::kCritical);
  EXPECT_EQ(finding->evidence["severity_reason"], "loss_responded");

  // The norm is back, but the loss broke: still the explosion's.
  auto broken = Step(101, std::nan(""));
  broken.grad_norm = 1.0;
  finding = detector.Observe(broken);
  ASSERT_TRUE(finding);
  EXPECT_EQ(finding->severity, Severity::kCritical);
  EXPECT_EQ(finding->evidence["rule"], "breakdown_after_spike");
}

TEST(GradExplosionSeverity, ANanWithoutASpikeBeforeItIsNotAnExplosion) {
  GradExplosionDetector detector;
  auto norms = Norms(60, 6);
  for (int s = 0; s < 60; ++s) {
    auto r = Step(s, 2.0);
    r.grad_norm = norms[s];
    detector.Observe(r);
  }
  auto r = Step(60, std::nan(""));
  r.grad_norm = std::nan("");
  EXPECT_FALSE(detector.Observe(r)) << "the nonfinite detector's alone";
}

TEST(LossSpikeNoise, AStepOfFewTokensIsJudgedAtItsOwnNoise) {
  LossSpikeDetector detector;
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 0.05);
  for (int s = 0; s < 100; ++s) {
    auto r = Step(s, 3.0 + noise(rng));
    r.tokens = 2000;
    ASSERT_FALSE(detector.Observe(r));
  }
  auto short_step = Step(100, 5.5);  // 1.8x the median, but 20 tokens: sqrt(100)=10x the noise
  short_step.tokens = 20;
  EXPECT_FALSE(detector.Observe(short_step));
  auto full_step = Step(101, 5.5);
  full_step.tokens = 2000;
  EXPECT_TRUE(detector.Observe(full_step));
}

TEST(LossSpikeNoise, OneOddMicroBatchIsNotASpike) {
  LossSpikeDetector detector;
  for (int s = 0; s < 100; ++s) ASSERT_FALSE(detector.Observe(Step(s, 3.0 + 0.01 * (s % 5))));
  auto step_with = [](std::int64_t s, std::vector<double> micro_losses) {
    auto r = Step(s, 0);
    for (double loss : micro_losses) {
      r.micro.push_back({loss, 100, std::nullopt});
      r.loss += loss / static_cast<double>(micro_losses.size());
    }
    return r;
  };
  // Mean 5.0 (1.7x), one micro-batch at 17: the step's own standard error is 3.
  EXPECT_FALSE(detector.Observe(step_with(100, {3.0, 3.0, 2.0, 17.0})));
  // Mean 5.0, every micro-batch up: a spike.
  EXPECT_TRUE(detector.Observe(step_with(101, {5.1, 4.9, 5.0, 5.0})));
}

TEST(LossSpikeNoise, RecordsEveryTenStepsAreJudgedAgainstTheirRecentStepsNotTheEarlyDescent) {
  // Interval-averaged losses logged every 10 steps: a fast early descent, a long flat stretch,
  // then a blow-up averaged into one record (5x the median).
  LossSpikeDetector detector;
  std::optional<Finding> finding;
  for (int step = 9; step < 900; step += 10) {
    const double loss = 0.35 + 4.2 * std::exp(-step / 60.0) + 0.004 * ((step / 10) % 3);
    finding = detector.Observe(Step(step, loss));
    ASSERT_FALSE(finding) << step;
  }
  finding = detector.Observe(Step(909, 1.8));
  ASSERT_TRUE(finding);
  EXPECT_THAT(finding->message, HasSubstr("records)"));
  EXPECT_LT(finding->evidence["baseline_median"].get<double>(), 0.4);
}

// A fine-tuned model's loss (far below ln V) reported with the GA bug: summed over 8 micro-batches.
void ExpectBoundFinds(std::int64_t vocab, double true_loss, std::int64_t every) {
  LossScaleDetector detector;
  std::mt19937 rng(static_cast<unsigned>(vocab));
  std::normal_distribution<double> noise(0.0, 0.05);
  std::optional<Finding> finding;
  std::int64_t step = every;
  for (int i = 0; i < 10 && !finding; ++i, step += every) {
    auto r = Step(step, 8 * true_loss * (1 + noise(rng)), /*ga=*/8);
    r.vocab_size = vocab;
    finding = detector.Observe(r);
  }
  ASSERT_TRUE(finding) << "V=" << vocab << " every " << every;
  EXPECT_EQ(finding->severity, Severity::kCritical);
  EXPECT_EQ(finding->evidence["explained_by"], "ga_steps");
  EXPECT_EQ(finding->evidence["reference_method"], "ln_vocab_size_bound");
  EXPECT_LE(step - every, 4 * every) << "confirmed on the third record";
}

TEST(LossScaleBound, TheGaBugInFineTuningIsFoundWithoutReferenceData) {
  ExpectBoundFinds(256, 1.9, 1);     // ln V = 5.5; reported 15.2
  ExpectBoundFinds(32000, 2.1, 1);   // ln V = 10.4; reported 16.8
  ExpectBoundFinds(32000, 2.1, 10);  // logged every 10 steps
}

TEST(LossScaleBound, APlausibleLossAndAShortDivergenceDoNotFire) {
  LossScaleDetector detector;
  const std::int64_t vocab = 256;  // ln V = 5.55, bound 6.93
  for (int s = 0; s < 300; ++s) {
    double loss = 4.3 * std::exp(-s / 80.0) + 1.5;  // from scratch: starts at 1.05 ln V
    if (s >= 200 && s < 220) loss = 12.0;           // a blow-up, recovered within 20 steps
    auto r = Step(s, loss, 4);
    r.vocab_size = vocab;
    EXPECT_FALSE(detector.Observe(r)) << s;
  }
}

// Found on the held-out fine-tuning run: a trained model's loss at step 0 can sit near
// ln(vocab_size) / ga_steps by coincidence (a fine-tuned LLM at 1.3 nats with V = 32,000 and
// ga_steps 8); below ln(vocab_size) is no evidence of a division too many.
TEST(LossScaleBound, ALossBelowLnVocabAtTheStartIsAFineTunedModelNotABug) {
  LossScaleDetector detector;
  for (int s = 0; s < 20; ++s) {
    auto r = Step(s, std::log(32000.0) / 8 * (1 - 0.002 * s), 8);
    r.vocab_size = 32000;
    EXPECT_FALSE(detector.Observe(r)) << s;
  }
}

TEST(LossScaleBound, AnUnexplainedLossAboveTheBoundIsAWarningLaterInARun) {
  LossScaleDetector detector;
  std::optional<Finding> finding;
  int s = 0;
  for (; s < 200; ++s) {
    auto r = Step(s, s < 100 ? 2.0 : 60.0);  // a custom compute_loss starts summing at step 100
    r.vocab_size = 256;
    finding = detector.Observe(r);
    if (s < 150) {
      EXPECT_FALSE(finding) << s;
    } else if (finding) {
      break;
    }
  }
  ASSERT_TRUE(finding);
  EXPECT_EQ(s, 150) << "after bound_late_span steps";
  EXPECT_EQ(finding->severity, Severity::kWarning);
  EXPECT_EQ(finding->evidence["explained_by"], "unexplained");
  EXPECT_THAT(finding->message, HasSubstr("not normalised per label token"));
}

// A run with reference data whose trainer switches to the GA bug mid-run (no configuration change):
// the loss-scale mismatch is the incident, the gradient jump it causes is its symptom.
TEST(Incidents, AGradJumpAtALossScaleFactorIsItsSymptom) {
  RunAnalyzer analyzer;
  auto norms = Norms(160, 8);
  std::vector<AlertEvent> events;
  for (int s = 0; s < 160; ++s) {
    const bool bug = s >= 100;
    auto r = Step(s, 3.0 * (bug ? 8 : 1), 8);
    r.ref_loss = 3.0;
    r.grad_norm = norms[s] * (bug ? 8 : 1);
    for (auto& e : analyzer.Add(r)) events.push_back(e);
  }
  std::optional<AlertEvent> scale, grad;
  for (const auto& e : events) {
    if (e.kind == Kind::kLossScaleMismatch) scale = e;
    if (e.kind == Kind::kGradExplosion) grad = e;
  }
  ASSERT_TRUE(scale && grad);
  EXPECT_EQ(scale->severity, Severity::kCritical);
  EXPECT_EQ(grad->severity, Severity::kInfo);
  EXPECT_EQ(grad->evidence["caused_by"],
            (nlohmann::json{{"kind", "loss_scale_mismatch"}, {"first_step", scale->first_step}}));
  EXPECT_THAT(grad->message, HasSubstr("a symptom of the loss_scale_mismatch episode"));
}

TEST(Incidents, ALossSpikeAndANanRidingOnAnExplosionAreItsSymptoms) {
  RunAnalyzer analyzer;
  auto norms = Norms(130, 9);
  std::vector<AlertEvent> events;
  for (int s = 0; s < 130; ++s) {
    double loss = 2.0 + 0.01 * (s % 7), norm = norms[s];
    if (s >= 100) norm = 30.0 * (s - 99);  // an lr blow-up
    if (s >= 102) loss = 9.0;
    if (s >= 106) loss = norm = std::nan("");
    auto r = Step(s, loss);
    r.grad_norm = norm;
    for (auto& e : analyzer.Add(r)) events.push_back(e);
  }
  std::map<Kind, AlertEvent> latest;
  for (const auto& e : events) latest[e.kind] = e;
  ASSERT_TRUE(latest.count(Kind::kGradExplosion));
  const AlertEvent& grad = latest[Kind::kGradExplosion];
  EXPECT_EQ(grad.severity, Severity::kCritical);
  EXPECT_LE(grad.first_step, 100);
  for (Kind symptom : {Kind::kLossSpike, Kind::kNonFinite}) {
    if (!latest.count(symptom)) continue;  // the spike detector may not have had the history
    EXPECT_EQ(latest[symptom].severity, Severity::kInfo) << KindName(symptom);
    EXPECT_EQ(latest[symptom].evidence["caused_by"]["kind"], "grad_explosion");
  }
  ASSERT_TRUE(latest.count(Kind::kNonFinite));
}

TEST(Incidents, ANanWithoutAnExplosionIsItsOwnIncident) {
  RunAnalyzer analyzer;
  auto norms = Norms(80, 10);
  std::vector<AlertEvent> events;
  for (int s = 0; s < 80; ++s) {
    auto r = Step(s, s == 60 ? std::nan("") : 2.0);
    r.grad_norm = norms[s];
    for (auto& e : analyzer.Add(r)) events.push_back(e);
  }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().kind, Kind::kNonFinite);
  EXPECT_EQ(events.front().severity, Severity::kCritical);
  EXPECT_FALSE(events.front().evidence.contains("caused_by"));
}

TEST(AlertMessages, NameTheFirstStepAndLeaveTheLatestToTheEvidence) {
  RunAnalyzer analyzer;
  std::optional<AlertEvent> latest;
  for (int s = 0; s < 200; ++s) {
    auto r = Step(s, s >= 120 ? std::nan("") : 2.0);
    for (auto& e : analyzer.Add(r)) {
      if (e.kind == Kind::kNonFinite) latest = e;
    }
  }
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->first_step, 120);
  EXPECT_EQ(latest->last_step, 199);
  EXPECT_THAT(latest->message, HasSubstr("at step 120"));
  EXPECT_THAT(latest->message, ::testing::Not(HasSubstr("199")));
  EXPECT_EQ(latest->evidence["latest_step"], 199);
  EXPECT_THAT(latest->evidence["latest_message"].get<std::string>(), HasSubstr("at step 199"));
}

}  // namespace evidence_test
}  // namespace lossguard::analyzers::testing
