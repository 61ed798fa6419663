#include <cmath>

#include "format.h"
#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

std::optional<Finding> GradExplosionDetector::Observe(const wire::StepRecord& r) {
  if (!r.grad_norm || !std::isfinite(*r.grad_norm) || *r.grad_norm <= 0) return std::nullopt;
  const double norm = *r.grad_norm, log_norm = std::log(norm);

  if (previous_ && norm >= options_.growth_factor * *previous_) {
    if (growing_++ == 0) streak_start_ = *previous_;
  } else {
    growing_ = 0;
  }
  previous_ = norm;

  std::optional<Finding> finding;
  if (baseline_.size() >= options_.min_history) {
    double median = *baseline_.Median(), mad = std::max(*baseline_.Mad(), 0.05);
    double baseline_norm = std::exp(median);
    if (norm > options_.ratio * baseline_norm && log_norm > median + options_.mads * mad) {
      finding = Finding{Severity::kCritical,
                        "grad_norm " + FormatNumber(norm) + " is " +
                            FormatNumber(norm / baseline_norm) + "x its recent median " +
                            FormatNumber(baseline_norm) + " at step " + std::to_string(r.step),
                        {{"grad_norm", norm},
                         {"baseline_median", baseline_norm},
                         {"ratio", norm / baseline_norm},
                         {"mads_above", (log_norm - median) / mad},
                         {"rule", "robust_baseline"}}};
    }
  }
  if (!finding && growing_ >= options_.growth_steps &&
      norm >= options_.growth_total * streak_start_) {
    finding = Finding{Severity::kCritical,
                      "grad_norm grew " + FormatNumber(norm / streak_start_) + "x over " +
                          std::to_string(growing_) + " consecutive steps (to " +
                          FormatNumber(norm) + " at step " + std::to_string(r.step) + ")",
                      {{"grad_norm", norm},
                       {"growth", norm / streak_start_},
                       {"steps", growing_},
                       {"rule", "geometric_growth"}}};
  }
  // Firing steps stay out of the baseline, so that an explosion cannot become the new normal.
  if (!finding) baseline_.Add(log_norm);
  return finding;
}

}  // namespace lossguard::analyzers
