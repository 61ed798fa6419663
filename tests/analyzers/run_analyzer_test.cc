// RunAnalyzer: step judgement across ranks, late/duplicate/out-of-order records, episodes, resume.
#include "lossguard/analyzers/run_analyzer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <malloc.h>

#include <map>
#include <random>
#include <set>

#include "analyzers/records.h"

namespace lossguard::analyzers {
namespace run_analyzer_test {

using Action = AlertEvent::Action;
using testing::Step;

wire::StepRecord Healthy(std::int64_t s, std::int64_t world = 1, std::int64_t rank = 0) {
  auto r = Step(s, 3.0 - 0.001 * static_cast<double>(s), 1, world, rank);
  r.grad_norm = 1.0 + 0.01 * static_cast<double>(s % 7);
  r.tokens = 400;
  r.ref_loss = r.loss;
  return r;
}

std::vector<AlertEvent> OfKind(const std::vector<AlertEvent>& events, const std::string& kind) {
  std::vector<AlertEvent> out;
  for (const AlertEvent& e : events) {
    if (KindName(e.kind) == kind) out.push_back(e);
  }
  return out;
}

TEST(RunAnalyzer, OneStepRunIsJudgedAtOnce) {
  RunAnalyzer analyzer;
  auto r = Healthy(0);
  r.loss = std::nan("");
  auto events = analyzer.Add(r);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(KindName(events[0].kind), "nonfinite");
  EXPECT_EQ(events[0].action, Action::kOpen);
  EXPECT_EQ(events[0].first_step, 0);
  EXPECT_FALSE(events[0].rank) << "episodes are judged across ranks";
  EXPECT_EQ(analyzer.judged_through(), 0);
  EXPECT_TRUE(analyzer.Flush().empty());
}

TEST(RunAnalyzer, AStepWaitsForItsRanksAndNamesTheFiringOne) {
  RunAnalyzer analyzer;
  // Rank 0 runs ahead; rank 1's step 0 (NaN on rank 1 only) arrives after rank 0's step 2.
  for (int s = 0; s < 3; ++s) EXPECT_TRUE(analyzer.Add(Healthy(s, 2, 0)).empty());
  EXPECT_FALSE(analyzer.judged_through());
  auto late = Healthy(0, 2, 1);
  late.grad_norm = INFINITY;
  auto events = analyzer.Add(late);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(KindName(events[0].kind), "nonfinite");
  EXPECT_EQ(events[0].evidence["ranks"], nlohmann::json::array({1}));
  EXPECT_EQ(analyzer.judged_through(), 0) << "step 1 still waits for rank 1";
  analyzer.Add(Healthy(1, 2, 1));
  EXPECT_EQ(analyzer.judged_through(), 1);
}

TEST(RunAnalyzer, ARankThatNeverReportsDelaysOnlyUntilTheBoundedWait) {
  // world_size 8, but only rank 0 sends records (a common way to log).
  RunAnalyzer analyzer;
  for (int s = 0; s < 4; ++s) analyzer.Add(Healthy(s, 8, 0));
  EXPECT_FALSE(analyzer.judged_through()) << "step 0 waits max_wait_steps = 4";
  analyzer.Add(Healthy(4, 8, 0));
  EXPECT_EQ(analyzer.judged_through(), 4) << "then the run is known to report from 1 rank";
  analyzer.Add(Healthy(5, 8, 0));
  EXPECT_EQ(analyzer.judged_through(), 5) << "and later steps are judged at once";
}

TEST(RunAnalyzer, ARankThatLagsMakesTheWaitGrowAndIsExpectedAgain) {
  // Two ranks whose records come in the batches of two senders: rank 1 is 10 steps behind.
  RunAnalyzer analyzer;
  for (int s = 0; s < 10; ++s) analyzer.Add(Healthy(s, 2, 0));
  EXPECT_EQ(analyzer.judged_through(), 9) << "step 0 judged without rank 1 after 4 steps, then "
                                             "the run looked like one reporting from rank 0 only";
  analyzer.Add(Healthy(0, 2, 1));  // late by 10 steps: wait 10 + 4, and expect rank 1 again
  for (int s = 10; s < 20; ++s) analyzer.Add(Healthy(s, 2, 0));
  EXPECT_EQ(analyzer.judged_through(), 9) << "steps 10-19 wait for rank 1 now";
  for (int s = 1; s < 20; ++s) analyzer.Add(Healthy(s, 2, 1));
  EXPECT_EQ(analyzer.judged_through(), 19) << "each step judged once both ranks are in";
  // Still bounded: a rank that stops reporting holds judgement back by the grown wait only.
  for (int s = 20; s < 34; ++s) analyzer.Add(Healthy(s, 2, 0));
  EXPECT_EQ(analyzer.judged_through(), 19);
  analyzer.Add(Healthy(34, 2, 0));
  EXPECT_EQ(analyzer.judged_through(), 34);
}

TEST(RunAnalyzer, LateDuplicateAndOutOfOrderRecordsCannotRewriteThePast) {
  RunAnalyzer analyzer;
  for (int s = 0; s < 10; ++s) analyzer.Add(Healthy(s));
  auto late_nan = Healthy(3);
  late_nan.loss = std::nan("");
  EXPECT_TRUE(analyzer.Add(late_nan).empty()) << "step 3 was judged";
  EXPECT_TRUE(analyzer.Add(Healthy(9)).empty()) << "duplicate";
  EXPECT_EQ(analyzer.ignored_records(), 2);
  // A jump ahead judges everything before it; the gap is simply not there.
  auto far = Healthy(1000);
  far.loss = std::nan("");
  auto events = analyzer.Add(far);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first_step, 1000);
}

TEST(RunAnalyzer, EpisodeOpensExtendsResolvesAndReopens) {
  AnalyzerOptions options;
  options.resolve_after = 5;
  RunAnalyzer analyzer(options);
  std::vector<AlertEvent> events;
  for (int s = 0; s < 40; ++s) {
    auto r = Healthy(s);
    if ((s >= 10 && s < 13) || s == 30) r.loss = std::nan("");
    for (auto& e : analyzer.Add(r)) events.push_back(e);
  }
  auto nonfinite = OfKind(events, "nonfinite");
  ASSERT_EQ(nonfinite.size(), 6u);
  EXPECT_EQ(nonfinite[0].action, Action::kOpen);
  EXPECT_EQ(nonfinite[2].action, Action::kExtend);
  EXPECT_EQ(nonfinite[2].last_step, 12);
  EXPECT_EQ(nonfinite[3].action, Action::kResolve);
  EXPECT_EQ(nonfinite[3].first_step, 10);
  EXPECT_EQ(nonfinite[3].last_step, 12);
  EXPECT_EQ(nonfinite[4].action, Action::kOpen);
  EXPECT_EQ(nonfinite[4].first_step, 30);
  EXPECT_EQ(nonfinite[5].action, Action::kResolve) << "after 5 clear steps: 31..35";
  EXPECT_EQ(events.size(), nonfinite.size()) << "nothing else fires on a healthy run";
}

TEST(RunAnalyzer, NonFiniteEvidenceIsKeptInTheWireSpelling) {
  // JSON has no Infinity: evidence spells it as the wire format does, instead of null.
  RunAnalyzer analyzer;
  std::vector<AlertEvent> events;
  for (int s = 0; s < 40; ++s) analyzer.Add(Step(s, 1e-300));
  events = analyzer.Add(Step(40, 1e300));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(KindName(events[0].kind), "loss_spike");
  EXPECT_EQ(events[0].evidence["ratio"], "Infinity");
  EXPECT_EQ(events[0].evidence["loss"], 1e300);
}

TEST(RunAnalyzer, ZeroTokenStepsRaiseNothing) {
  RunAnalyzer analyzer;
  for (int s = 0; s < 50; ++s) {
    auto r = Healthy(s);
    if (s % 10 == 5) {  // an all-padding step: no tokens, zero loss and gradient
      r.tokens = 0;
      r.loss = 0;
      r.ref_loss.reset();
      r.grad_norm = 0;
    }
    EXPECT_TRUE(analyzer.Add(r).empty()) << "step " << s;
  }
}

// A run with every kind of trouble, for the resume test.
std::vector<wire::StepRecord> TroubledRun() {
  std::mt19937 rng(7);
  std::lognormal_distribution<double> noise(0.0, 0.1);
  std::vector<wire::StepRecord> run;
  for (int s = 0; s < 400; ++s) {
    const double grad_norm = noise(rng);  // all-reduced: the same on every rank
    for (int rank = 0; rank < 2; ++rank) {
      auto r = Step(s, (2.0 + 3.0 * std::exp(-s / 40.0)) * noise(rng), s < 200 ? 1 : 4, 2, rank);
      r.grad_norm = grad_norm;
      if (s >= 150 && s < 155 && rank == 1) r.grad_norm = grad_norm * 1.5;  // a missed all-reduce
      r.tokens = 300;
      if (s >= 120 && s < 135) r.grad_norm = *r.grad_norm * 50;  // explosion
      if (s >= 120 && s < 128) r.loss *= 4;                      // and a loss spike
      if (s >= 200) r.loss *= 4;                                 // GA bug from the change on
      if (s == 260 || (s >= 300 && s < 305 && rank == 1)) r.loss = std::nan("");
      if (s >= 350) r.grad_norm = 0;  // gradients stop
      run.push_back(r);
    }
  }
  return run;
}

std::vector<AlertEvent> Feed(RunAnalyzer& analyzer, const std::vector<wire::StepRecord>& records) {
  std::vector<AlertEvent> events;
  for (const auto& r : records) {
    for (auto& e : analyzer.Add(r)) events.push_back(e);
  }
  return events;
}

// The episodes that `events` leave open, each in its latest state: what the store holds.
std::vector<AlertEvent> OpenEpisodes(const std::vector<AlertEvent>& events) {
  std::map<Kind, AlertEvent> open;
  for (const auto& e : events) {
    if (e.action == Action::kResolve) {
      open.erase(e.kind);
    } else {
      open[e.kind] = e;
    }
  }
  std::vector<AlertEvent> out;
  for (auto& [kind, e] : open) out.push_back(e);
  return out;
}

std::string Describe(const AlertEvent& e) {
  return std::string(KindName(e.kind)) + " " + std::to_string(static_cast<int>(e.action)) + " " +
         std::to_string(e.first_step) + "-" + std::to_string(e.last_step) + " " + e.message;
}

TEST(RunAnalyzer, ResumeContinuesExactlyWhereAnUninterruptedAnalyzerIs) {
  const auto run = TroubledRun();
  RunAnalyzer uninterrupted;
  const auto all_events = Feed(uninterrupted, run);
  std::set<std::string> kinds;
  for (const auto& e : all_events) kinds.insert(std::string(KindName(e.kind)));
  EXPECT_EQ(kinds, (std::set<std::string>{"config_change", "grad_explosion", "loss_scale_mismatch",
                                          "loss_spike", "nonfinite", "vanishing_grad",
                                          "rank_divergence"}));

  for (std::size_t split : {1u, 241u, 250u, 281u, 301u, 521u, 541u, 605u, 701u}) {
    SCOPED_TRACE("restart after record " + std::to_string(split));
    RunAnalyzer before;
    const std::vector<wire::StepRecord> first(run.begin(), run.begin() + split);
    auto events = Feed(before, first);
    // What the store holds at the restart: the judged records and the open episodes.
    const std::vector<AlertEvent> open_list = OpenEpisodes(events);
    const std::int64_t judged = before.judged_through().value_or(-1);
    std::vector<wire::StepRecord> judged_records, pending;
    for (const auto& r : first) (r.step <= judged ? judged_records : pending).push_back(r);

    RunAnalyzer resumed;
    resumed.Resume(0, judged, judged_records, open_list);
    for (auto& e : Feed(resumed, pending)) events.push_back(e);
    for (auto& e : Feed(resumed, {run.begin() + split, run.end()})) events.push_back(e);
    ASSERT_EQ(events.size(), all_events.size());
    for (std::size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(Describe(events[i]), Describe(all_events[i])) << "event " << i;
    }
  }
}

// What the store gives a resuming analyzer: only the last WarmupSteps() judged steps. A verdict the
// loss-scale detector found in the first steps (a GA-summed loss against ln(vocab_size), no
// reference data) lies before them: the open episode brings it back, message and all.
TEST(RunAnalyzer, ResumeFromTheLastStepsOnlyKeepsAVerdictFoundInTheFirstSteps) {
  const AnalyzerOptions options;
  std::vector<wire::StepRecord> run;
  for (int s = 0; s < 3000; ++s) {
    // A small model's token loss (ln 96 = 4.56 at first, falling to 1.2), summed over ga_steps=4.
    auto r = Step(s, 4 * (1.2 + 3.36 * std::exp(-s / 300.0)), 4, 1, 0);
    r.vocab_size = 96;
    r.grad_norm = 1.0;
    r.tokens = 300;
    run.push_back(r);
  }
  RunAnalyzer uninterrupted(options);
  const auto all_events = Feed(uninterrupted, run);
  ASSERT_FALSE(OfKind(all_events, "loss_scale_mismatch").empty());
  EXPECT_THAT(OfKind(all_events, "loss_scale_mismatch").back().message,
              ::testing::HasSubstr("at initialisation"));

  for (std::size_t split : {900u, 1500u, 2400u}) {
    SCOPED_TRACE("resumed after record " + std::to_string(split));
    RunAnalyzer before(options);
    auto events = Feed(before, {run.begin(), run.begin() + split});
    const std::vector<AlertEvent> open_list = OpenEpisodes(events);
    const std::int64_t judged = *before.judged_through();
    const auto history_begin =
        run.begin() + std::max<std::int64_t>(0, judged + 1 - options.WarmupSteps());
    RunAnalyzer resumed(options);
    resumed.Resume(0, judged, {history_begin, run.begin() + judged + 1}, open_list);
    for (auto& e : Feed(resumed, {run.begin() + judged + 1, run.end()})) events.push_back(e);
    ASSERT_EQ(events.size(), all_events.size());
    for (std::size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(Describe(events[i]), Describe(all_events[i])) << "event " << i;
    }
  }
}

// Memory does not grow with run length: the heap in use after 300,000 steps (two ranks, with an
// open episode extending all along) is what it was after 20,000. Measured with glibc's mallinfo2.
TEST(RunAnalyzer, StateIsBoundedWhateverTheRunLength) {
  RunAnalyzer analyzer;
  std::mt19937 rng(9);
  std::lognormal_distribution<double> noise(0.0, 0.1);
  auto feed = [&](std::int64_t from, std::int64_t to) {
    for (std::int64_t s = from; s < to; ++s) {
      for (std::int64_t rank = 0; rank < 2; ++rank) {
        auto r = Step(s, 2.0 * noise(rng), 8, 2, rank);
        r.ref_loss = r.loss / 8;  // a GA bug: loss_scale_mismatch stays open the whole run
        r.grad_norm = noise(rng);
        r.tokens = 1000;
        for (int m = 0; m < 8; ++m) r.micro.push_back(wire::MicroBatch{2.0, 100 + m, std::nullopt});
        analyzer.Add(r);
      }
    }
  };
  feed(0, 20'000);
  const std::size_t early = mallinfo2().uordblks;
  feed(20'000, 300'000);
  const std::size_t late = mallinfo2().uordblks;
  EXPECT_LT(late, early + 64 * 1024) << "early " << early << " bytes, late " << late;
  EXPECT_EQ(analyzer.judged_through(), 299'999);
}

}  // namespace run_analyzer_test
}  // namespace lossguard::analyzers
