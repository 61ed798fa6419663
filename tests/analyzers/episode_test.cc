#include "lossguard/analyzers/episode.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>
#include <set>

#include "lossguard/analyzers/detectors.h"
#include "lossguard/analyzers/robust_window.h"

namespace lossguard::analyzers {
namespace episode_test {

Finding Fire(Severity severity = Severity::kWarning, std::string message = "bad") {
  return Finding{severity, std::move(message), {{"x", 1}}};
}

TEST(Episode, OpensExtendsResolvesAndReopensAsANewEpisode) {
  Episode episode(Kind::kLossSpike, std::nullopt, /*resolve_after=*/3);
  EXPECT_FALSE(episode.Judge(0, std::nullopt));
  auto open = episode.Judge(1, Fire());
  ASSERT_TRUE(open);
  EXPECT_EQ(open->action, AlertEvent::Action::kOpen);
  EXPECT_EQ(open->first_step, 1);
  auto extend = episode.Judge(2, Fire(Severity::kWarning, "worse"));
  ASSERT_TRUE(extend);
  EXPECT_EQ(extend->action, AlertEvent::Action::kExtend);
  EXPECT_EQ(extend->last_step, 2);
  EXPECT_EQ(extend->message, open->message) << "the message says what happened first";
  EXPECT_EQ(extend->evidence["latest_message"], "worse");
  EXPECT_EQ(extend->evidence["latest_step"], 2);
  EXPECT_FALSE(episode.Judge(3, std::nullopt));
  EXPECT_FALSE(episode.Judge(4, std::nullopt));
  auto resolve = episode.Judge(5, std::nullopt);
  ASSERT_TRUE(resolve);
  EXPECT_EQ(resolve->action, AlertEvent::Action::kResolve);
  EXPECT_EQ(resolve->first_step, 1);
  EXPECT_EQ(resolve->last_step, 2) << "the episode ends at its last firing step";
  EXPECT_FALSE(episode.open());
  auto again = episode.Judge(9, Fire());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->action, AlertEvent::Action::kOpen);
  EXPECT_EQ(again->first_step, 9);
}

TEST(Episode, AFiringStepInTheClearStretchKeepsItOpen) {
  Episode episode(Kind::kGradExplosion, 2, 3);
  episode.Judge(0, Fire());
  episode.Judge(1, std::nullopt);
  episode.Judge(2, std::nullopt);
  auto extend = episode.Judge(3, Fire());
  ASSERT_TRUE(extend);
  EXPECT_EQ(extend->action, AlertEvent::Action::kExtend);
  EXPECT_EQ(extend->rank, 2);
  EXPECT_FALSE(episode.Judge(4, std::nullopt));
  EXPECT_FALSE(episode.Judge(5, std::nullopt));
  EXPECT_TRUE(episode.Judge(6, std::nullopt));
}

TEST(Episode, DuplicateAndOutOfOrderStepsAreIgnored) {
  Episode episode(Kind::kGradExplosion, std::nullopt, 2);
  EXPECT_TRUE(episode.Judge(10, Fire()));
  EXPECT_FALSE(episode.Judge(10, Fire())) << "a duplicate step";
  EXPECT_FALSE(episode.Judge(7, Fire())) << "a late step cannot extend the past";
  EXPECT_FALSE(episode.Judge(11, std::nullopt));
  EXPECT_TRUE(episode.Judge(12, std::nullopt));
}

TEST(Episode, SeverityOnlyEscalatesWithinAnEpisode) {
  Episode episode(Kind::kGradExplosion, std::nullopt, 2);
  episode.Judge(0, Fire(Severity::kWarning));
  EXPECT_EQ(episode.Judge(1, Fire(Severity::kCritical))->severity, Severity::kCritical);
  EXPECT_EQ(episode.Judge(2, Fire(Severity::kWarning))->severity, Severity::kCritical);
}

// The one name table: every kind and severity has a distinct name that parses back to it, and
// nothing else parses (an unknown name is never read as some default).
TEST(AlertKind, NamesRoundTripAndUnknownNamesAreRefused) {
  std::set<std::string_view> names;
  for (Kind kind : kAllKinds) {
    EXPECT_EQ(ParseKind(KindName(kind)), kind) << KindName(kind);
    names.insert(KindName(kind));
  }
  EXPECT_EQ(names.size(), kKindCount);
  EXPECT_EQ(KindName(Kind::kLossScaleMismatch), "loss_scale_mismatch");
  EXPECT_EQ(KindName(Kind::kConfigChange), "config_change");
  for (Severity severity : kAllSeverities)
    EXPECT_EQ(ParseSeverity(SeverityName(severity)), severity);
  EXPECT_EQ(SeverityName(Severity::kCritical), "critical");
  for (const char* unknown : {"", "Critical", "fatal", "nonfinite "}) {
    EXPECT_EQ(ParseSeverity(unknown), std::nullopt) << unknown;
    EXPECT_EQ(ParseKind(unknown), std::nullopt) << unknown;
  }
}

// The incremental statistics against sorting a copy, over random data with many duplicates.
TEST(RobustWindow, MatchesBruteForceStatistics) {
  std::mt19937 rng(4);
  for (std::size_t capacity : {1u, 2u, 3u, 8u, 64u, 129u}) {
    RobustWindow window(capacity);
    std::deque<double> kept;
    std::uniform_int_distribution<int> coarse(0, 9);  // duplicates
    std::normal_distribution<double> fine(0.0, 3.0);
    for (int i = 0; i < 2000; ++i) {
      double value = i % 3 == 0 ? coarse(rng) : fine(rng);
      window.Add(value);
      kept.push_back(value);
      if (kept.size() > capacity) kept.pop_front();
      std::vector<double> sorted(kept.begin(), kept.end());
      std::sort(sorted.begin(), sorted.end());
      auto median_of = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        std::size_t n = v.size();
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
      };
      double median = median_of(sorted);
      std::vector<double> deviations;
      for (double v : sorted) deviations.push_back(std::abs(v - median));
      ASSERT_DOUBLE_EQ(*window.Median(), median) << "capacity " << capacity << " i " << i;
      ASSERT_NEAR(*window.Mad(), median_of(deviations), 1e-12) << "capacity " << capacity;
      ASSERT_DOUBLE_EQ(*window.Max(), sorted.back());
      double sum = 0, squares = 0;
      for (double v : sorted) sum += v;
      const double mean = sum / static_cast<double>(sorted.size());
      for (double v : sorted) squares += (v - mean) * (v - mean);
      ASSERT_NEAR(*window.Mean(), mean, 1e-9);
      ASSERT_NEAR(*window.StdDev(), std::sqrt(squares / static_cast<double>(sorted.size())), 1e-6);
      ASSERT_EQ(window.size(), kept.size());
    }
  }
}

// The ring of flags against counting the last n of every flag pushed.
TEST(RecentCount, CountsTheLastNFlags) {
  std::mt19937 rng(9);
  for (std::size_t n : {0u, 1u, 2u, 5u, 64u}) {
    RecentCount recent(n);
    std::vector<bool> pushed;
    for (int i = 0; i < 500; ++i) {
      const bool flag = std::bernoulli_distribution(i % 100 < 50 ? 0.1 : 0.7)(rng);
      pushed.push_back(flag);
      const std::size_t from = pushed.size() > n ? pushed.size() - n : 0;
      const int expected = static_cast<int>(
          std::count(pushed.begin() + static_cast<long>(from), pushed.end(), true));
      ASSERT_EQ(recent.Push(flag), expected) << "n " << n << " push " << i;
      ASSERT_EQ(recent.Any(), expected > 0);
    }
  }
}

TEST(RobustWindow, StatisticsAndBoundedMemory) {
  RobustWindow window(5);
  EXPECT_FALSE(window.Median());
  for (double v : {1.0, 100.0, 2.0, 3.0}) window.Add(v);
  EXPECT_DOUBLE_EQ(*window.Median(), 2.5);
  EXPECT_DOUBLE_EQ(*window.Mad(), 1.0);  // deviations 1.5, 97.5, 0.5, 0.5 -> median 1.0
  window.Add(NAN);
  window.Add(INFINITY);
  EXPECT_EQ(window.size(), 4u) << "non-finite values are not a baseline";
  for (double v : {4.0, 5.0, 6.0}) window.Add(v);
  EXPECT_EQ(window.size(), 5u);
  EXPECT_TRUE(window.full());
  EXPECT_DOUBLE_EQ(*window.Median(), 4.0);  // 2, 3, 4, 5, 6
  EXPECT_DOUBLE_EQ(*window.Mean(), 4.0);
  EXPECT_DOUBLE_EQ(*window.Max(), 6.0);
  EXPECT_NEAR(*window.StdDev(), std::sqrt(2.0), 1e-12);
}

}  // namespace episode_test
}  // namespace lossguard::analyzers
