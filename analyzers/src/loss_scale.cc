#include <cmath>
#include <vector>

#include "format.h"
#include "lossguard/analyzers/detectors.h"
#include "micro_means.h"

namespace lossguard::analyzers {

namespace {
struct Reference {
  double value;
  const char* method;
};

// The correctly normalised loss this record allows us to know, if any.
std::optional<Reference> ReferenceOf(const wire::StepRecord& r) {
  if (r.ref_loss && std::isfinite(*r.ref_loss) && *r.ref_loss > 0)
    return Reference{*r.ref_loss, "ref_loss"};
  if (std::optional<double> mean = TokenWeightedMicroMean(r))
    return Reference{*mean, "micro_batches"};
  return std::nullopt;
}

std::string Explanation(const std::string& explained_by, const wire::StepRecord& r) {
  if (explained_by == "ga_steps") {
    return "micro-batch losses are summed over ga_steps=" + std::to_string(r.ga_steps) +
           " without dividing";
  }
  if (explained_by == "ga_steps*world_size") {
    return "micro-batch losses are summed over ga_steps=" + std::to_string(r.ga_steps) +
           " and world_size=" + std::to_string(r.world_size) + " without dividing";
  }
  if (explained_by == "world_size") {
    return "token counts are taken per rank instead of across world_size=" +
           std::to_string(r.world_size) + " ranks";
  }
  if (explained_by == "1/ga_steps")
    return "the loss is divided by ga_steps=" + std::to_string(r.ga_steps) + " once too often";
  if (explained_by == "1/world_size") {
    return "the loss is divided by world_size=" + std::to_string(r.world_size) + " once too often";
  }
  if (explained_by == "tokens_per_sequence")
    return "the loss is divided by the number of sequences, not tokens";
  return "no configuration value explains the factor";
}

struct Candidate {
  const char* name;
  double value;
};

// The configuration values a mis-normalised loss is typically off by, for this record.
std::vector<Candidate> CandidatesOf(const wire::StepRecord& r) {
  const double ga = static_cast<double>(r.ga_steps), ws = static_cast<double>(r.world_size);
  std::vector<Candidate> candidates;
  if (r.ga_steps > 1 && r.world_size > 1) candidates.push_back({"ga_steps*world_size", ga * ws});
  if (r.ga_steps > 1) candidates.push_back({"ga_steps", ga});
  if (r.world_size > 1) candidates.push_back({"world_size", ws});
  if (r.ga_steps > 1) candidates.push_back({"1/ga_steps", 1 / ga});
  if (r.world_size > 1) candidates.push_back({"1/world_size", 1 / ws});
  if (r.tokens && *r.tokens > 0) {
    // Label tokens per sequence on this rank: dividing by sequences inflates the loss by this.
    candidates.push_back(
        {"tokens_per_sequence",
         static_cast<double>(*r.tokens) / (ga * static_cast<double>(r.micro_batch_size))});
  }
  return candidates;
}

// The candidate `factor` is closest to, within `tolerance` (relative), or "unexplained".
const char* BestMatch(double factor, const std::vector<Candidate>& candidates, double tolerance) {
  const char* best = "unexplained";
  double best_error = tolerance;
  for (const Candidate& c : candidates) {
    double error = std::abs(factor / c.value - 1);
    if (error <= best_error) {
      best = c.name;
      best_error = error;
    }
  }
  return best;
}
}  // namespace

std::string ExplainFactor(double factor, const wire::StepRecord& r, double tolerance) {
  return BestMatch(factor, CandidatesOf(r), tolerance);
}

void LossScaleDetector::ConfigChanged(const RunConfig& before, const RunConfig& after,
                                      std::int64_t step) {
  bool normalisation_changed =
      before.ga_steps != after.ga_steps || before.world_size != after.world_size;
  if (normalisation_changed && recent_.size() >= options_.level_shift_steps / 2 + 1) {
    shift_ =
        Shift{*recent_.Median(), before, after, step, RobustWindow(options_.level_shift_steps)};
  } else if (normalisation_changed) {
    shift_.reset();  // too little history before the change to know the level
  }
  recent_ = RobustWindow(options_.level_shift_steps * 4);
  init_verdict_.reset();
}

std::optional<Finding> LossScaleDetector::JudgeLevelShift(const wire::StepRecord& r) {
  if (!shift_) return std::nullopt;
  Shift& s = *shift_;
  if (!s.judged) {
    s.losses_after.Add(r.loss);
    if (s.losses_after.size() < options_.level_shift_steps) return std::nullopt;
    s.judged = true;
    double ratio = *s.losses_after.Median() / s.level_before;
    // A loss missing a division by ga_steps (or world_size) scales with it.
    const double ga =
        static_cast<double>(s.after.ga_steps) / static_cast<double>(s.before.ga_steps);
    const double ws =
        static_cast<double>(s.after.world_size) / static_cast<double>(s.before.world_size);
    // The product only when both changed (else it equals one of them).
    const Candidate candidates[] = {{"ga_steps*world_size", ga != 1 && ws != 1 ? ga * ws : 1.0},
                                    {"ga_steps", ga},
                                    {"world_size", ws},
                                    {"1/ga_steps", 1 / ga},
                                    {"1/world_size", 1 / ws}};
    for (const Candidate& c : candidates) {
      if (std::abs(c.value - 1) <= options_.level_shift_tolerance) continue;  // no change there
      if (std::abs(ratio / c.value - 1) > options_.level_shift_tolerance) continue;
      std::string what = std::string(c.name).find("ga") != std::string::npos
                             ? "ga_steps " + std::to_string(s.before.ga_steps) + " -> " +
                                   std::to_string(s.after.ga_steps)
                             : "world_size " + std::to_string(s.before.world_size) + " -> " +
                                   std::to_string(s.after.world_size);
      s.verdict =
          Finding{Severity::kCritical,
                  "loss level changed " + FormatNumber(ratio) + "x when " + what + " at step " +
                      std::to_string(s.changed_at) +
                      "; a correctly normalised loss keeps its level: " + Explanation(c.name, r),
                  {{"factor", ratio},
                   {"explained_by", c.name},
                   {"reference_method", "level_before_config_change"},
                   {"level_before", s.level_before},
                   {"level_after", *s.losses_after.Median()},
                   {"changed_at", s.changed_at},
                   {"ga_steps", r.ga_steps},
                   {"world_size", r.world_size}}};
      break;
    }
  }
  if (s.verdict) s.verdict->evidence["loss"] = r.loss;
  return s.verdict;
}

std::optional<Finding> LossScaleDetector::Observe(const wire::StepRecord& r) {
  if (!first_step_) first_step_ = r.step;
  if (!std::isfinite(r.loss) || r.loss <= 0)
    return std::nullopt;  // NaN is the nonfinite detector's
  std::optional<Reference> reference = ReferenceOf(r);
  std::optional<Finding> level_shift;
  if (!reference) level_shift = JudgeLevelShift(r);
  recent_.Add(r.loss);
  const bool from_init = !reference && r.vocab_size && *r.vocab_size > 1 &&
                         r.step - *first_step_ < options_.init_steps;
  if (from_init) {
    reference = Reference{std::log(static_cast<double>(*r.vocab_size)), "ln_vocab_size_at_init"};
  }
  if (!reference) {
    mismatching_ = 0;
    if (init_verdict_) {
      init_verdict_->evidence["loss"] = r.loss;
      return init_verdict_;
    }
    return level_shift;
  }
  double factor = r.loss / reference->value;
  if (std::abs(factor - 1) <= options_.tolerance) {  // the common case: nothing to explain
    mismatching_ = 0;
    explained_before_.clear();
    return level_shift;
  }
  // ln(vocab_size) is only approximately the initial loss: only a factor a configuration value
  // explains is evidence against it. A loss equal to the mean of micro-batch means is a weighting
  // problem (token_weighting_bias), not a scale one.
  const double tolerance = from_init ? options_.init_tolerance : options_.explain_tolerance;
  const std::vector<Candidate> candidates = CandidatesOf(r);
  std::string explained_by = BestMatch(factor, candidates, tolerance);
  std::optional<double> mean_of_means = MeanOfMicroMeans(r);
  if (explained_by == "unexplained" && mean_of_means) {
    // Summing per-micro-batch means (Axolotl) is off by ga_steps from the mean of means exactly,
    // and from the token-weighted loss only roughly.
    explained_by = BestMatch(r.loss / *mean_of_means, candidates, tolerance);
  }
  if (explained_by == "unexplained" && !explained_before_.empty()) {
    // Keep the episode's explanation while the factor stays near its value: a per-rank or
    // per-micro-batch weighting wobbles the factor by a few percent from step to step.
    for (const Candidate& c : candidates) {
      if (c.name == explained_before_ && std::abs(factor / c.value - 1) <= options_.init_tolerance)
        explained_by = explained_before_;
    }
  }
  bool weighting_only =
      mean_of_means && std::abs(r.loss / *mean_of_means - 1) <= options_.tolerance;
  bool mismatch = (!from_init || explained_by != "unexplained") && !weighting_only;
  mismatching_ = mismatch ? mismatching_ + 1 : 0;
  explained_before_ = mismatch && explained_by != "unexplained" ? explained_by : "";
  const int confirm =
      from_init
          ? static_cast<int>(std::min<std::int64_t>(options_.confirm_steps, options_.init_steps))
          : options_.confirm_steps;
  if (mismatching_ < confirm) return level_shift;
  nlohmann::json evidence = {{"factor", factor},
                             {"explained_by", explained_by},
                             {"loss", r.loss},
                             {"reference", reference->value},
                             {"reference_method", reference->method},
                             {"ga_steps", r.ga_steps},
                             {"world_size", r.world_size},
                             {"consecutive_steps", mismatching_}};
  std::string against = from_init ? "ln(vocab_size)=" + FormatNumber(reference->value) +
                                        ", a causal LM's loss at initialisation"
                                  : "the token-normalised loss " + FormatNumber(reference->value);
  Finding finding{
      Severity::kCritical,
      "loss is " + FormatNumber(factor) + "x " + against + ": " + Explanation(explained_by, r),
      evidence};
  if (from_init) init_verdict_ = finding;
  return finding;
}

}  // namespace lossguard::analyzers
