#include <cmath>

#include "format.h"
#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

namespace {
// The standard error of the step's loss from the spread of its micro-batch means, relative to
// their mean; nullopt with fewer than two micro-batches with tokens.
std::optional<double> RelativeMicroStandardError(const wire::StepRecord& r) {
  double sum = 0, sum_squares = 0;
  int n = 0;
  for (const wire::MicroBatch& mb : r.micro) {
    if (mb.tokens <= 0 || !std::isfinite(mb.loss)) continue;
    sum += mb.loss;
    sum_squares += mb.loss * mb.loss;
    ++n;
  }
  if (n < 2 || sum <= 0) return std::nullopt;
  const double mean = sum / n;
  const double variance = std::max(0.0, (sum_squares - n * mean * mean) / (n - 1));
  return std::sqrt(variance / n) / mean;
}
}  // namespace

std::optional<Finding> LossSpikeDetector::Observe(const wire::StepRecord& r) {
  if (!std::isfinite(r.loss)) {
    if (!recent_.Any()) return std::nullopt;  // the nonfinite detector's
    recent_.Push(true);
    sustained_.Push(true);
    return Finding{Severity::kCritical,
                   "loss is non-finite at step " + std::to_string(r.step) + ", within " +
                       std::to_string(options_.persist_n) + " steps of a loss spike",
                   {{"loss", r.loss}, {"rule", "breakdown_after_spike"}}};
  }
  // A trainer logging every N steps: its last `window` records reach back N x window steps, into
  // the run's early descent, and mean + 6 sigma over them is far above any recent level. Sparse
  // records are judged against the records of the last `window` steps instead, once those cover
  // min_history steps.
  const bool sparse = previous_step_ && r.step - *previous_step_ > 1;
  previous_step_ = r.step;
  const RobustWindow* baseline = &baseline_;
  bool enough = baseline_.size() >= options_.min_history;
  RobustWindow recent_steps(options_.window);
  if (sparse) {
    const auto window = static_cast<std::int64_t>(options_.window);
    std::optional<std::int64_t> oldest;
    for (const auto& [step, loss] : history_) {
      if (step <= r.step - window) continue;
      if (!oldest) oldest = step;
      recent_steps.Add(loss);
    }
    baseline = &recent_steps;
    enough = recent_steps.size() >= 3 && oldest &&
             r.step - *oldest >= static_cast<std::int64_t>(options_.min_history);
  }
  std::optional<Finding> finding;
  if (enough) {
    const double mean = *baseline->Mean(), sigma = *baseline->StdDev(),
                 median = *baseline->Median();
    const double threshold = std::max(mean + options_.sigmas * sigma, options_.min_ratio * median);
    // A step of few tokens is noisier by sqrt(median tokens / its tokens): judge its distance from
    // the median at the noise level of a typical step.
    double noise_scale = 1;
    if (r.tokens && *r.tokens > 0 &&
        tokens_.size() >= std::min(options_.min_history, kTokenMedianWindow)) {
      noise_scale = std::min(1.0, std::sqrt(static_cast<double>(*r.tokens) / *tokens_.Median()));
    }
    const double judged = median + (r.loss - median) * noise_scale;
    const std::optional<double> micro_se = RelativeMicroStandardError(r);
    const bool beyond_own_noise =
        !micro_se || r.loss - median > options_.micro_se_multiple * *micro_se * r.loss;
    if (judged > threshold && r.loss > options_.min_ratio * median && beyond_own_noise) {
      finding = Finding{Severity::kInfo,
                        "loss " + FormatNumber(r.loss) + " at step " + std::to_string(r.step) +
                            " is " + FormatNumber(r.loss / median) + "x its recent median " +
                            FormatNumber(median) + " (threshold " + FormatNumber(threshold) +
                            ": mean + " + FormatNumber(options_.sigmas) + " sigma over the last " +
                            std::to_string(baseline->size()) + (sparse ? " records)" : " steps)"),
                        {{"loss", r.loss},
                         {"baseline_mean", mean},
                         {"baseline_std", sigma},
                         {"baseline_median", median},
                         {"threshold", threshold},
                         {"ratio", r.loss / median},
                         {"noise_scale", noise_scale}}};
      if (micro_se) finding->evidence["micro_relative_se"] = *micro_se;
    }
  }
  const int recent = recent_.Push(finding.has_value());
  const int sustained = sustained_.Push(finding.has_value());
  if (finding) {
    finding->evidence["spikes_in_window"] = recent;
    if (sustained >= options_.sustain_k) {
      finding->severity = Severity::kCritical;
      finding->message += "; the loss has stayed up for " + std::to_string(sustained) + " of " +
                          std::to_string(options_.sustain_n) + " steps";
    } else if (recent >= options_.persist_k) {
      finding->severity = Severity::kWarning;
      finding->message += "; " + std::to_string(recent) + " of the last " +
                          std::to_string(options_.persist_n) + " steps spiked";
    } else {
      finding->message += "; isolated so far";
    }
  }
  // A spike must not raise the baseline it is judged against.
  if (!finding) {
    baseline_.Add(r.loss);
    history_.emplace_back(r.step, r.loss);
    if (history_.size() > options_.window) history_.pop_front();
    if (r.tokens && *r.tokens > 0) tokens_.Add(static_cast<double>(*r.tokens));
  }
  return finding;
}

}  // namespace lossguard::analyzers
