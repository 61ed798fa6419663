// lossguard's spike severity against the public rules it was measured against, on the scenario
// corpus (rank 0 of every dense run): alarms on healthy runs, and the delay from an lr blow-up to
// the first alarm. lossguard must be better on both axes: no more alarms than any rule, and no
// later detection. The rules, as their projects implement them:
// - OLMo-core's StabilityMonitorCallback: a value above the mean of the last 128 by more than 6
//   standard deviations (loss and grad_norm);
// - llm-foundry's KillLossSpike: loss above 2x the mean of the last 100 losses for 4 steps in a
// row;
// - Megatron-LM's rerun state machine: loss above 10x the largest loss seen;
// - ZClip: grad_norm z-score above 2.5 against an EMA (alpha 0.97, 25 warm-up steps) of the clipped
//   norms.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "lossguard/analyzers/robust_window.h"
#include "lossguard/analyzers/run_analyzer.h"
#include "lossguard/wire/record_codec.h"

namespace lossguard::analyzers::testing {
namespace public_rules_test {

const std::string kCorpus = std::string(LOSSGUARD_SOURCE_DIR) + "/tests/scenarios/";

class Rule {
 public:
  virtual ~Rule() = default;
  // Whether this step raises the rule's alarm.
  virtual bool Alarm(const wire::StepRecord& r) = 0;
};

class OlmoCore : public Rule {
 public:
  bool Alarm(const wire::StepRecord& r) override {
    const bool loss = Spike(loss_, r.loss);
    const bool grad = r.grad_norm && Spike(grad_, *r.grad_norm);
    return loss || grad;
  }

 private:
  static bool Spike(RobustWindow& w, double v) {
    if (!std::isfinite(v)) return true;
    const bool spike = w.size() >= 32 && v > *w.Mean() + 6 * *w.StdDev();
    w.Add(v);
    return spike;
  }
  RobustWindow loss_{128}, grad_{128};
};

class LlmFoundry : public Rule {
 public:
  bool Alarm(const wire::StepRecord& r) override {
    const bool outlier =
        !std::isfinite(r.loss) || (losses_.size() >= 100 && r.loss >= 2 * *losses_.Mean());
    outliers_ = outlier ? outliers_ + 1 : 0;
    if (std::isfinite(r.loss)) losses_.Add(r.loss);
    return outliers_ >= 4;
  }

 private:
  RobustWindow losses_{100};
  int outliers_ = 0;
};

class Megatron : public Rule {
 public:
  bool Alarm(const wire::StepRecord& r) override {
    const bool spike = !std::isfinite(r.loss) || (max_ > 0 && r.loss > 10 * max_);
    if (std::isfinite(r.loss)) max_ = std::max(max_, r.loss);
    return spike;
  }

 private:
  double max_ = 0;
};

class ZClip : public Rule {
 public:
  bool Alarm(const wire::StepRecord& r) override {
    if (!r.grad_norm) return false;
    const double g = *r.grad_norm;
    if (!std::isfinite(g)) return true;
    if (warmup_.size() < 25) {
      warmup_.push_back(g);
      if (warmup_.size() == 25) {
        mean_ = std::accumulate(warmup_.begin(), warmup_.end(), 0.0) / 25;
        for (double v : warmup_) var_ += (v - mean_) * (v - mean_) / 25;
      }
      return false;
    }
    const double std = std::sqrt(var_) + 1e-6;
    const double z = (g - mean_) / std;
    const double clipped = z > 2.5 ? mean_ + 2.5 * std : g;
    mean_ = 0.97 * mean_ + 0.03 * clipped;
    var_ = 0.97 * var_ + 0.03 * (clipped - mean_) * (clipped - mean_);
    return z > 2.5;
  }

 private:
  std::vector<double> warmup_;
  double mean_ = 0, var_ = 0;
};

struct TracedRun {
  std::string name;
  std::vector<wire::StepRecord> records;  // rank 0
  std::optional<std::int64_t> blowup;     // the onset of an lr blow-up
};

std::vector<TracedRun> LoadRuns() {
  std::ifstream in(kCorpus + "manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(in);
  std::vector<TracedRun> runs;
  for (const nlohmann::json& s : manifest["scenarios"]) {
    const std::string name = s["name"];
    if (name.find(".every") != std::string::npos) continue;  // dense runs only
    TracedRun run{name, {}, std::nullopt};
    bool healthy = !s.contains("fault");
    for (const nlohmann::json& e : s["expected"]) {
      healthy = healthy && e["kind"] == "config_change";
      if (e["kind"] == "grad_explosion" && name.find("lr-") != std::string::npos)
        run.blowup = e["onset"].get<std::int64_t>();
    }
    if (!healthy && !run.blowup) continue;
    std::ifstream file(kCorpus + name + ".ndjson");
    for (std::string line; std::getline(file, line);) {
      auto record = wire::ParseRecordText(line, 0);
      if (!record) throw std::runtime_error(name + ": " + record.error().message);
      if (record.value().rank == 0) run.records.push_back(std::move(record).value());
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

struct Outcome {
  int alarms = 0;                        // alarm episodes (alarms within 20 steps are one)
  std::optional<std::int64_t> detected;  // the first alarm at or after the blow-up's onset
};

Outcome Apply(Rule& rule, const TracedRun& run) {
  Outcome out;
  std::optional<std::int64_t> last_alarm;
  for (const wire::StepRecord& r : run.records) {
    if (!rule.Alarm(r)) continue;
    if (!last_alarm || r.step - *last_alarm > 20) ++out.alarms;
    last_alarm = r.step;
    if (run.blowup && r.step >= *run.blowup && !out.detected) out.detected = r.step;
  }
  return out;
}

// lossguard: a grad_explosion, loss_spike or nonfinite episode; with `pages_only`, one of warning
// or critical severity (its step: when it reached that severity), else any (info included: shown on
// the dashboard and in REST, paging nobody).
Outcome ApplyLossguard(const TracedRun& run, bool pages_only) {
  RunAnalyzer analyzer;
  Outcome out;
  std::map<std::pair<Kind, std::int64_t>, bool> counted;
  auto note = [&](const AlertEvent& e) {
    if (e.kind != Kind::kGradExplosion && e.kind != Kind::kLossSpike && e.kind != Kind::kNonFinite)
      return;
    if (pages_only && e.severity == Severity::kInfo) return;
    const std::int64_t since =
        pages_only ? e.evidence.value("severity_since", e.first_step) : e.first_step;
    if (!counted[{e.kind, e.first_step}]) {
      counted[{e.kind, e.first_step}] = true;
      ++out.alarms;
    }
    if (run.blowup && since >= *run.blowup && (!out.detected || since < *out.detected))
      out.detected = since;
  };
  for (const wire::StepRecord& r : run.records) {
    for (const AlertEvent& e : analyzer.Add(r)) note(e);
  }
  for (const AlertEvent& e : analyzer.Flush()) note(e);
  return out;
}

TEST(PublicRules, LossguardRaisesFewerAlarmsAndDetectsBlowUpsNoLater) {
  const std::vector<TracedRun> runs = LoadRuns();
  struct Named {
    std::string name;
    std::function<std::unique_ptr<Rule>()> make;
  };
  const std::vector<Named> rules = {
      {"OLMo-core (6 sigma / 128)", [] { return std::make_unique<OlmoCore>(); }},
      {"llm-foundry (2x mean / 100, patience 4)", [] { return std::make_unique<LlmFoundry>(); }},
      {"Megatron-LM (10x max)", [] { return std::make_unique<Megatron>(); }},
      {"ZClip (z > 2.5, EMA 0.97)", [] { return std::make_unique<ZClip>(); }},
  };
  std::int64_t healthy_steps = 0;
  int blowups = 0;
  std::vector<Outcome> ours, ours_any;
  for (const TracedRun& run : runs) {
    ours.push_back(ApplyLossguard(run, /*pages_only=*/true));
    ours_any.push_back(ApplyLossguard(run, /*pages_only=*/false));
    if (!run.blowup) healthy_steps += static_cast<std::int64_t>(run.records.size());
    blowups += run.blowup.has_value();
  }
  ASSERT_GE(blowups, 3);
  std::ostringstream table;
  table << "| rule | alarms on " << healthy_steps << " healthy steps | per 10,000 | blow-ups found "
        << "| delay (steps, each) |\n|---|---|---|---|---|\n";
  auto row = [&](const std::string& name, const std::vector<Outcome>& outcomes) {
    int alarms = 0, found = 0;
    std::string delays;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if (!runs[i].blowup) {
        alarms += outcomes[i].alarms;
        continue;
      }
      found += outcomes[i].detected.has_value();
      delays += (delays.empty() ? "" : ", ") +
                (outcomes[i].detected ? std::to_string(*outcomes[i].detected - *runs[i].blowup)
                                      : std::string("missed"));
    }
    table << "| " << name << " | " << alarms << " | " << std::fixed << std::setprecision(1)
          << 1e4 * alarms / static_cast<double>(healthy_steps) << " | " << found << "/" << blowups
          << " | " << delays << " |\n";
    return alarms;
  };
  const int our_alarms = row("lossguard: pages (warning or critical)", ours);
  row("lossguard: any alert (info included)", ours_any);
  for (const Named& rule : rules) {
    std::vector<Outcome> theirs;
    for (const TracedRun& run : runs) {
      auto instance = rule.make();
      theirs.push_back(Apply(*instance, run));
    }
    const int their_alarms = row(rule.name, theirs);
    EXPECT_LE(our_alarms, their_alarms) << rule.name;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if (!runs[i].blowup || !theirs[i].detected) continue;
      // The rules flag a step (a metric or a clipping), like lossguard's info alerts: compared
      // with those. (Its page may come a few steps later: at most 5, asserted below.)
      ASSERT_TRUE(ours_any[i].detected) << runs[i].name << ": " << rule.name << " found it";
      EXPECT_LE(*ours_any[i].detected, *theirs[i].detected) << runs[i].name << " vs " << rule.name;
    }
  }
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (!runs[i].blowup) continue;
    ASSERT_TRUE(ours[i].detected) << runs[i].name;
    EXPECT_LE(*ours[i].detected - *runs[i].blowup, 5) << runs[i].name << ": within 6 steps";
  }
  EXPECT_EQ(our_alarms, 0);
  std::cout << table.str();
}

}  // namespace public_rules_test
}  // namespace lossguard::analyzers::testing
