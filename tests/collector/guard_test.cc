// The guard's policy format and its decisions, from the step's own signals and from server
// verdicts (no LibTorch, no server: the verdicts are what an acknowledgement carries).
#include "lossguard/collector/guard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace lossguard::collector {
namespace guard_test {

using analyzers::Kind;
using analyzers::Severity;
using ::testing::HasSubstr;

struct GuardUnderTest {
  explicit GuardUnderTest(std::string_view spec)
      : guard(GuardOptions().policy(GuardPolicy::Parse(spec)).warn([this](std::string_view line) {
          lines.emplace_back(line);
        })) {}
  GuardDecision Healthy(std::int64_t step) {
    return guard.Check(step, {.loss = 2.0, .ref_loss = 2.0, .grad_norm = 1.0}, nullptr);
  }
  std::vector<std::string> lines;
  Guard guard;
};

client::RunVerdicts Verdicts(std::int64_t through, std::vector<client::OpenEpisode> open) {
  return client::RunVerdicts{.through_step = through, .open = std::move(open)};
}

client::OpenEpisode Episode(std::int64_t id, const char* kind, const char* severity,
                            std::int64_t first_step, std::int64_t last_step) {
  return client::OpenEpisode{.id = id,
                             .kind = kind,
                             .severity = severity,
                             .rank = std::nullopt,
                             .first_step = first_step,
                             .last_step = last_step,
                             .acked = false,
                             .message = "from the server"};
}

TEST(GuardPolicy, ParsesTheDocumentedFormatAndPrintsItBack) {
  GuardPolicy policy = GuardPolicy::Parse(
      " loss_scale_mismatch=stop, nonfinite=skip_step,grad_explosion:warning=lower_lr:0.25,"
      "*=warn, max_rollbacks=2 ");
  ASSERT_EQ(policy.rules.size(), 4u);
  EXPECT_EQ(policy.max_rollbacks, 2);
  EXPECT_EQ(policy.max_lr_lowerings, 3);
  const GuardRule* explosion = policy.RuleFor(Kind::kGradExplosion, Severity::kCritical);
  ASSERT_NE(explosion, nullptr);
  EXPECT_EQ(explosion->response, GuardResponse::kLowerLr);
  EXPECT_DOUBLE_EQ(explosion->lr_factor, 0.25);
  EXPECT_EQ(policy.RuleFor(Kind::kLossScaleMismatch, Severity::kWarning), nullptr)
      << "the stop rule and the * rule start at critical";
  const GuardRule* spike = policy.RuleFor(Kind::kLossSpike, Severity::kCritical);
  ASSERT_NE(spike, nullptr);
  EXPECT_EQ(spike->response, GuardResponse::kWarn) << "* covers the kinds without a rule";
  EXPECT_EQ(policy.RuleFor(Kind::kLossScaleMismatch, Severity::kCritical)->response,
            GuardResponse::kStop)
      << "a kind's own rule before *";
  EXPECT_TRUE(policy.Acts());
  GuardPolicy again = GuardPolicy::Parse(policy.ToString());
  EXPECT_EQ(again.ToString(), policy.ToString());
  EXPECT_FALSE(GuardPolicy::Parse("*=warn").Acts());
  EXPECT_TRUE(GuardPolicy::Parse("").rules.empty());
  EXPECT_FALSE(GuardPolicy::Parse("local=off").local_checks);
  EXPECT_EQ(GuardPolicy::Parse("local=off").ToString(),
            "max_rollbacks=3,max_lr_lowerings=3,max_consecutive_skips=10,local=off");
}

TEST(GuardPolicy, BadEntriesAreRefusedWithTheEntryAndWhatWasExpected) {
  auto refusal = [](std::string_view spec) {
    try {
      GuardPolicy::Parse(spec);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_THAT(refusal("loss_scale=stop"), HasSubstr("unknown kind \"loss_scale\""));
  EXPECT_THAT(refusal("loss_scale=stop"), HasSubstr("loss_scale_mismatch"));
  EXPECT_THAT(refusal("nonfinite=halt"), HasSubstr("unknown response \"halt\""));
  EXPECT_THAT(refusal("nonfinite:info=stop"), HasSubstr("warning or critical"));
  EXPECT_THAT(refusal("nonfinite=lower_lr:1.5"), HasSubstr("(0, 1)"));
  EXPECT_THAT(refusal("nonfinite=stop:2"), HasSubstr("only lower_lr takes a factor"));
  EXPECT_THAT(refusal("nonfinite=stop,nonfinite=warn"), HasSubstr("a second rule"));
  EXPECT_THAT(refusal("max_rollbacks=-1"), HasSubstr("integer from 0"));
  EXPECT_THAT(refusal("stop"), HasSubstr("expected KIND[:SEVERITY]=RESPONSE"));
  EXPECT_THAT(refusal("local=maybe"), HasSubstr("on or off"));
}

TEST(Guard, AHealthyRunGetsNoAction) {
  GuardUnderTest g("*:warning=stop");
  for (std::int64_t step = 0; step < 100; ++step) {
    GuardDecision decision = g.guard.Check(step,
                                           {.loss = 2.0 + 0.01 * std::sin(step),
                                            .ref_loss = 2.0 + 0.01 * std::sin(step),
                                            .grad_norm = 1.0},
                                           nullptr);
    EXPECT_FALSE(decision.action) << step;
    EXPECT_TRUE(decision.step_optimizer());
  }
  EXPECT_TRUE(g.lines.empty());
}

TEST(Guard, ANonFiniteStepIsSkippedLocallyEachTimeAndWarnedAboutOncePerEpisode) {
  GuardUnderTest skip("nonfinite=skip_step");
  skip.Healthy(0);
  GuardDecision nan = skip.guard.Check(1, {.loss = std::nan(""), .grad_norm = 1.0}, nullptr);
  ASSERT_TRUE(nan.action);
  EXPECT_FALSE(nan.step_optimizer());
  EXPECT_EQ(nan.action->action, "skip_step");
  EXPECT_EQ(nan.action->kind, "nonfinite");
  EXPECT_EQ(nan.action->source, "local");
  EXPECT_EQ(nan.action->first_step, 1);
  GuardDecision inf = skip.guard.Check(2, {.loss = 2.0, .grad_norm = INFINITY}, nullptr);
  ASSERT_TRUE(inf.action) << "a non-finite gradient norm alone is enough";
  EXPECT_FALSE(inf.step_optimizer());
  EXPECT_FALSE(skip.Healthy(3).action);
  EXPECT_EQ(skip.guard.stats().responses.at(GuardResponse::kSkipStep), 2);

  GuardUnderTest warn("");
  EXPECT_TRUE(warn.guard.Check(1, {.loss = std::nan("")}, nullptr).action)
      << "without a rule a critical verdict is warned about";
  EXPECT_FALSE(warn.guard.Check(2, {.loss = std::nan("")}, nullptr).action)
      << "once an episode, not a line a step";
  EXPECT_EQ(warn.lines.size(), 1u);
  EXPECT_THAT(warn.lines[0], HasSubstr("critical nonfinite since step 1"));
}

TEST(Guard, ALossOffItsReferenceOnThreeStepsInARowIsACriticalMismatchActedOnOnce) {
  GuardUnderTest g("loss_scale_mismatch=stop");
  auto bug = [&](std::int64_t step) {
    return g.guard.Check(step, {.loss = 16.0, .ref_loss = 2.0, .grad_norm = 1.0}, nullptr);
  };
  g.Healthy(0);
  EXPECT_FALSE(bug(1).action);
  EXPECT_FALSE(bug(2).action);
  GuardDecision third = bug(3);
  ASSERT_TRUE(third.stop());
  EXPECT_EQ(third.action->first_step, 1);
  EXPECT_THAT(third.action->message, HasSubstr("8x the token-normalised loss 2"));
  EXPECT_FALSE(g.guard.Check(4, {.loss = 2.01, .ref_loss = 2.0}, nullptr).action)
      << "within the tolerance (5%)";

  GuardUnderTest warn("loss_scale_mismatch=warn");
  for (std::int64_t step = 0; step < 10; ++step)
    warn.guard.Check(step, {.loss = 16.0, .ref_loss = 2.0}, nullptr);
  EXPECT_EQ(warn.lines.size(), 1u) << "one episode";
  for (std::int64_t step = 10; step < 30; ++step) warn.Healthy(step);
  for (std::int64_t step = 30; step < 33; ++step)
    warn.guard.Check(step, {.loss = 16.0, .ref_loss = 2.0}, nullptr);
  EXPECT_EQ(warn.lines.size(), 2u) << "20 clear steps end an episode; the next is new";
}

TEST(Guard, ServerEpisodesAreActedOnOncePerSeverityUnlessAcknowledgedOrOver) {
  GuardUnderTest g("grad_explosion:warning=lower_lr:0.5,grad_explosion=stop");
  g.Healthy(10);
  client::RunVerdicts warning = Verdicts(12, {Episode(7, "grad_explosion", "warning", 11, 12)});
  GuardDecision lowered = g.guard.Check(13, {.loss = 2.0}, &warning);
  ASSERT_TRUE(lowered.action);
  EXPECT_EQ(lowered.response, GuardResponse::kLowerLr);
  EXPECT_DOUBLE_EQ(lowered.lr_factor, 0.5);
  EXPECT_EQ(lowered.action->episode, 7);
  EXPECT_EQ(lowered.action->seen_through, 12);
  EXPECT_EQ(lowered.action->source, "server");
  EXPECT_TRUE(lowered.step_optimizer());
  EXPECT_FALSE(g.guard.Check(14, {.loss = 2.0}, &warning).action) << "the same episode again";
  client::RunVerdicts critical = Verdicts(15, {Episode(7, "grad_explosion", "critical", 11, 15)});
  EXPECT_TRUE(g.guard.Check(16, {.loss = 2.0}, &critical).stop()) << "it escalated";
  EXPECT_DOUBLE_EQ(g.guard.lr_scale(), 0.5);

  GuardUnderTest h("*:warning=stop");
  h.Healthy(100);
  client::RunVerdicts old = Verdicts(101, {Episode(1, "loss_spike", "critical", 10, 50)});
  EXPECT_FALSE(h.guard.Check(101, {.loss = 2.0}, &old).action)
      << "an episode whose last step is before the guard started is history";
  client::OpenEpisode acked = Episode(2, "loss_spike", "critical", 100, 101);
  acked.acked = true;
  client::RunVerdicts with_acked = Verdicts(101, {acked});
  EXPECT_FALSE(h.guard.Check(102, {.loss = 2.0}, &with_acked).action)
      << "a person acknowledged it: they decided";
  client::RunVerdicts unknown = Verdicts(101, {Episode(3, "new_kind", "critical", 100, 101)});
  EXPECT_FALSE(h.guard.Check(103, {.loss = 2.0}, &unknown).action);
}

TEST(Guard, WithLocalChecksOffOnlyServerVerdictsCount) {
  GuardUnderTest g("nonfinite=skip_step,local=off");
  EXPECT_FALSE(g.guard.Check(0, {.loss = std::nan("")}, nullptr).action);
  client::RunVerdicts server = Verdicts(0, {Episode(1, "nonfinite", "critical", 0, 0)});
  EXPECT_EQ(g.guard.Check(1, {.loss = 2.0}, &server).response, GuardResponse::kSkipStep);
}

TEST(Guard, AServerEpisodeOfWhatTheGuardActedOnLocallyIsNotActedOnTwice) {
  GuardUnderTest g("nonfinite=skip_step");
  g.Healthy(0);
  EXPECT_FALSE(g.guard.Check(5, {.loss = std::nan("")}, nullptr).step_optimizer());
  client::RunVerdicts server = Verdicts(6, {Episode(4, "nonfinite", "critical", 5, 5)});
  GuardDecision later = g.guard.Check(7, {.loss = 2.0}, &server);
  EXPECT_FALSE(later.action) << "the server's episode is the NaN skipped at step 5";
  EXPECT_TRUE(later.step_optimizer());
}

TEST(Guard, TheStrongestResponseOfTheStepWins) {
  GuardUnderTest g("nonfinite=skip_step,loss_spike:warning=stop");
  g.Healthy(0);
  client::RunVerdicts spike = Verdicts(1, {Episode(9, "loss_spike", "warning", 1, 1)});
  GuardDecision both = g.guard.Check(2, {.loss = std::nan("")}, &spike);
  ASSERT_TRUE(both.stop());
  EXPECT_EQ(both.action->kind, "loss_spike");
  EXPECT_THAT(g.lines.back(), HasSubstr("1 more verdict"));
}

TEST(Guard, RollbackGoesToTheLastCheckpointBeforeTheEpisodeWithinItsBound) {
  GuardUnderTest g("loss_spike=rollback,max_rollbacks=1");
  g.guard.Checkpointed(-1);
  g.guard.Checkpointed(24);
  g.guard.Checkpointed(49);
  g.Healthy(40);
  client::RunVerdicts spike = Verdicts(52, {Episode(3, "loss_spike", "critical", 45, 52)});
  GuardDecision back = g.guard.Check(53, {.loss = 2.0}, &spike);
  ASSERT_TRUE(back.rollback());
  EXPECT_EQ(back.rollback_to, 24) << "49 was taken inside the episode";
  EXPECT_FALSE(back.step_optimizer());
  EXPECT_EQ(back.action->rollback_to, 24);
  client::RunVerdicts again = Verdicts(60, {Episode(4, "loss_spike", "critical", 58, 60)});
  GuardDecision bounded = g.guard.Check(61, {.loss = 2.0}, &again);
  EXPECT_TRUE(bounded.stop());
  EXPECT_THAT(bounded.action->message, HasSubstr("max_rollbacks"));

  GuardUnderTest none("loss_spike=rollback");
  none.Healthy(0);
  client::RunVerdicts early = Verdicts(3, {Episode(1, "loss_spike", "critical", 2, 3)});
  GuardDecision stop = none.guard.Check(4, {.loss = 2.0}, &early);
  EXPECT_TRUE(stop.stop());
  EXPECT_THAT(stop.action->message, HasSubstr("no checkpoint before step 2"));
}

TEST(Guard, LoweringsAndSkipsAreBounded) {
  GuardUnderTest lr("grad_explosion=lower_lr:0.5,max_lr_lowerings=2");
  lr.Healthy(0);
  for (std::int64_t id = 1; id <= 3; ++id) {
    client::RunVerdicts v =
        Verdicts(id * 10, {Episode(id, "grad_explosion", "critical", id * 10, id * 10)});
    GuardDecision d = lr.guard.Check(id * 10 + 1, {.loss = 2.0}, &v);
    ASSERT_TRUE(d.action);
    EXPECT_EQ(d.response, id <= 2 ? GuardResponse::kLowerLr : GuardResponse::kWarn) << id;
  }
  EXPECT_DOUBLE_EQ(lr.guard.lr_scale(), 0.25);

  GuardUnderTest skip("nonfinite=skip_step,max_consecutive_skips=3");
  skip.Healthy(0);
  for (std::int64_t step = 1; step <= 3; ++step)
    EXPECT_EQ(skip.guard.Check(step, {.loss = std::nan("")}, nullptr).response,
              GuardResponse::kSkipStep);
  GuardDecision fourth = skip.guard.Check(4, {.loss = std::nan("")}, nullptr);
  EXPECT_TRUE(fourth.stop()) << "a run that cannot take a step is not training";
  EXPECT_THAT(fourth.action->message, HasSubstr("3 steps in a row skipped"));
}

}  // namespace guard_test
}  // namespace lossguard::collector
