#include <cmath>
#include <utility>
#include <vector>

#include "format.h"
#include "lossguard/analyzers/detectors.h"
#include "micro_means.h"

namespace lossguard::analyzers {

namespace {
std::string NameOf(const std::optional<LossFactor>& match) {
  return match ? match->name : "unexplained";
}
}  // namespace

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
  bound_verdict_.reset();
  above_bound_ = 0;
  above_bound_steps_ = 0;
}

void LossScaleDetector::Resume(const Finding& held) {
  const std::string method = held.evidence.value("reference_method", "");
  if (method == "ln_vocab_size_at_init") {
    init_verdict_ = held;
  } else if (method == "ln_vocab_size_bound") {
    bound_verdict_ = held;
    above_bound_since_ = held.evidence.value("since_step", std::int64_t{0});
  } else if (method == "level_before_config_change") {
    Shift shift{held.evidence.value("level_before", 0.0),
                {},
                {},
                held.evidence.value("changed_at", std::int64_t{0}),
                RobustWindow(1)};
    shift.judged = true;
    shift.verdict = held;
    shift_ = std::move(shift);
  }
}

std::optional<Finding> LossScaleDetector::JudgeBound(const wire::StepRecord& r,
                                                     std::int64_t covers) {
  if (!r.vocab_size || *r.vocab_size < 2) return std::nullopt;
  const double uniform = std::log(static_cast<double>(*r.vocab_size));
  const double bound = options_.bound_margin * uniform;
  // Confirmation counts the steps the records cover, and never fewer than two records.
  // A verdict a configuration value explains is structural: it holds until the configuration
  // changes, though the loss may later fall under the bound. An unexplained one holds while the
  // loss stays above ln(vocab_size).
  if (bound_verdict_ &&
      (bound_verdict_->evidence["explained_by"] != "unexplained" || r.loss > uniform)) {
    bound_verdict_->evidence["loss"] = r.loss;
    bound_verdict_->evidence["factor"] = r.loss / uniform;
    return bound_verdict_;
  }
  bound_verdict_.reset();
  if (r.loss <= bound) {
    above_bound_ = 0;
    above_bound_steps_ = 0;
    return std::nullopt;
  }
  if (above_bound_++ == 0) above_bound_since_ = r.step;
  above_bound_steps_ += above_bound_ == 1 ? 1 : covers;
  const bool early = r.step - *first_step_ < options_.bound_early_steps;
  const bool long_enough = r.step - above_bound_since_ >= options_.bound_late_span;
  if (above_bound_ < 2 || above_bound_steps_ < options_.confirm_steps || (!early && !long_enough))
    return std::nullopt;

  // The configuration value that brings the loss under the bound, the commonest mistake first.
  std::string explained_by = "unexplained";
  double plausible = r.loss;
  for (const char* name : {"ga_steps", "ga_steps*world_size", "world_size"}) {
    for (const LossFactor& f : LossFactorsOf(r)) {
      if (f.name == name && f.value > 1 && r.loss / f.value <= bound &&
          explained_by == "unexplained") {
        explained_by = f.name;
        plausible = r.loss / f.value;
      }
    }
  }
  const bool explained = explained_by != "unexplained";
  std::string message = "loss " + FormatNumber(r.loss) + " is " + FormatNumber(r.loss / uniform) +
                        "x ln(vocab_size)=" + FormatNumber(uniform) +
                        ", the loss of a uniform prediction, for " + std::to_string(above_bound_) +
                        " records since step " + std::to_string(above_bound_since_) + ": ";
  message += explained ? ExplainLossFactor(explained_by, r) + " (loss / " + explained_by + " = " +
                             FormatNumber(plausible) + " is plausible)"
                       : "a token-mean cross entropy cannot be this high; the loss is not "
                         "normalised per label token";
  bound_verdict_ = Finding{explained ? Severity::kCritical : Severity::kWarning,
                           message,
                           {{"factor", r.loss / uniform},
                            {"explained_by", explained_by},
                            {"loss", r.loss},
                            {"reference", uniform},
                            {"reference_method", "ln_vocab_size_bound"},
                            {"bound", bound},
                            {"since_step", above_bound_since_},
                            {"ga_steps", r.ga_steps},
                            {"world_size", r.world_size}}};
  return bound_verdict_;
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
    for (const LossFactor& c : LossFactorsOfChange(ga, ws)) {
      if (std::abs(c.value - 1) <= options_.level_shift_tolerance) continue;  // too small to tell
      if (std::abs(ratio / c.value - 1) > options_.level_shift_tolerance) continue;
      std::string what = c.name.find("ga") != std::string::npos
                             ? "ga_steps " + std::to_string(s.before.ga_steps) + " -> " +
                                   std::to_string(s.after.ga_steps)
                             : "world_size " + std::to_string(s.before.world_size) + " -> " +
                                   std::to_string(s.after.world_size);
      s.verdict = Finding{
          Severity::kCritical,
          "loss level changed " + FormatNumber(ratio) + "x when " + what + " at step " +
              std::to_string(s.changed_at) +
              "; a correctly normalised loss keeps its level: " + ExplainLossFactor(c.name, r),
          {{"factor", ratio},
           {"explained_by", c.name},
           {"reference_method", "level_before_config_change"},
           {"level_before", s.level_before},
           {"level_after", *s.losses_after.Median()},
           {"changed_at", s.changed_at},
           {"since_step", s.changed_at},
           {"ga_steps", r.ga_steps},
           {"world_size", r.world_size}}};
      break;
    }
  }
  if (s.verdict) s.verdict->evidence["loss"] = r.loss;
  return s.verdict;
}

std::optional<LossScaleDetector::Reference> LossScaleDetector::ReferenceFor(
    const wire::StepRecord& r) const {
  if (r.ref_loss && std::isfinite(*r.ref_loss) && *r.ref_loss > 0)
    return Reference{*r.ref_loss, "ref_loss", /*from_init=*/false};
  if (std::optional<double> mean = TokenWeightedMicroMean(r))
    return Reference{*mean, "micro_batches", /*from_init=*/false};
  if (r.vocab_size && *r.vocab_size > 1 && r.step - *first_step_ < options_.init_steps) {
    return Reference{std::log(static_cast<double>(*r.vocab_size)), "ln_vocab_size_at_init",
                     /*from_init=*/true};
  }
  return std::nullopt;
}

std::string LossScaleDetector::ExplainedBy(double factor, const wire::StepRecord& r, bool from_init,
                                           std::optional<double> mean_of_means) const {
  // ln(vocab_size) is only approximately the initial loss: it needs a wider tolerance.
  const double tolerance = from_init ? options_.init_tolerance : options_.explain_tolerance;
  const std::vector<LossFactor> factors = LossFactorsOf(r);
  std::string explained_by = NameOf(MatchLossFactor(factor, factors, tolerance));
  if (explained_by == "unexplained" && mean_of_means) {
    // Summing per-micro-batch means (Axolotl) is off by ga_steps from the mean of means exactly,
    // and from the token-weighted loss only roughly.
    explained_by = NameOf(MatchLossFactor(r.loss / *mean_of_means, factors, tolerance));
  }
  if (explained_by == "unexplained" && !explained_before_.empty()) {
    // Keep the episode's explanation while the factor stays near its value: a per-rank or
    // per-micro-batch weighting wobbles the factor by a few percent from step to step.
    for (const LossFactor& c : factors) {
      if (c.name == explained_before_ && std::abs(factor / c.value - 1) <= options_.init_tolerance)
        explained_by = explained_before_;
    }
  }
  return explained_by;
}

Finding LossScaleDetector::Verdict(const wire::StepRecord& r, double factor,
                                   const Reference& reference, const std::string& explained_by) {
  nlohmann::json evidence = {{"factor", factor},
                             {"explained_by", explained_by},
                             {"loss", r.loss},
                             {"reference", reference.value},
                             {"reference_method", reference.method},
                             {"ga_steps", r.ga_steps},
                             {"world_size", r.world_size},
                             {"consecutive_steps", mismatching_},
                             {"since_step", mismatch_since_}};
  std::string against = reference.from_init
                            ? "ln(vocab_size)=" + FormatNumber(reference.value) +
                                  ", a causal LM's loss at initialisation"
                            : "the token-normalised loss " + FormatNumber(reference.value);
  Finding finding{Severity::kCritical,
                  "loss is " + FormatNumber(factor) + "x " + against + ": " +
                      ExplainLossFactor(explained_by, r),
                  evidence};
  if (reference.from_init) init_verdict_ = finding;
  return finding;
}

std::optional<Finding> LossScaleDetector::Observe(const wire::StepRecord& r) {
  if (!first_step_) first_step_ = r.step;
  // A record stands for the steps since the previous one (a trainer logging every N steps
  // averages over them).
  const std::optional<std::int64_t> previous = std::exchange(previous_step_, r.step);
  const std::int64_t covers = previous ? std::max<std::int64_t>(1, r.step - *previous) : 1;
  if (!std::isfinite(r.loss) || r.loss <= 0)
    return std::nullopt;  // NaN is the nonfinite detector's
  const std::optional<Reference> reference = ReferenceFor(r);
  const bool from_init = reference && reference->from_init;
  std::optional<Finding> level_shift;
  if (!reference || from_init) level_shift = JudgeLevelShift(r);
  recent_.Add(r.loss);
  // The bound needs no reference; a record with one is judged against the reference instead.
  std::optional<Finding> bound;
  if (!reference || from_init) bound = JudgeBound(r, covers);
  if (!reference) {
    mismatching_ = 0;
    if (init_verdict_) {
      init_verdict_->evidence["loss"] = r.loss;
      return init_verdict_;
    }
    return level_shift ? level_shift : bound;
  }
  double factor = r.loss / reference->value;
  if (std::abs(factor - 1) <= options_.tolerance) {  // the common case: nothing to explain
    mismatching_ = 0;
    explained_before_.clear();
    return level_shift ? level_shift : bound;
  }
  // Against ln(vocab_size) only a factor a configuration value explains is evidence. A loss equal
  // to the mean of micro-batch means is a weighting problem (token_weighting_bias), not a scale
  // one.
  const std::optional<double> mean_of_means = MeanOfMicroMeans(r);
  std::string explained_by = ExplainedBy(factor, r, from_init, mean_of_means);
  bool weighting_only =
      mean_of_means && std::abs(r.loss / *mean_of_means - 1) <= options_.tolerance;
  // ln(vocab_size) is an upper bound, not a reference from below: a loss under it at the first
  // steps is a trained model (fine-tuning), never evidence of a division too many.
  const bool below_uniform = from_init && factor < 1;
  bool mismatch =
      (!from_init || explained_by != "unexplained") && !weighting_only && !below_uniform;
  mismatching_ = mismatch ? mismatching_ + 1 : 0;
  if (mismatching_ == 1) mismatch_since_ = r.step;
  explained_before_ = mismatch && explained_by != "unexplained" ? explained_by : "";
  const int confirm =
      from_init
          ? static_cast<int>(std::min<std::int64_t>(options_.confirm_steps, options_.init_steps))
          : options_.confirm_steps;
  if (mismatching_ < confirm) return level_shift ? level_shift : bound;
  return Verdict(r, factor, *reference, explained_by);
}

}  // namespace lossguard::analyzers
