#include <cmath>

#include "format.h"
#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

std::optional<Finding> VanishingGradDetector::Observe(const wire::StepRecord& r) {
  if (!r.grad_norm || !std::isfinite(*r.grad_norm) || !std::isfinite(r.loss)) {
    return std::nullopt;  // nothing to judge, or the nonfinite detector's
  }
  const double norm = *r.grad_norm;
  // Only a step that should have had a gradient counts: one with label tokens and a loss.
  const bool should_learn = r.loss > 0 && (!r.tokens || *r.tokens > 0);
  if (!should_learn) return std::nullopt;

  std::optional<double> baseline;
  if (baseline_.size() >= options_.min_history) baseline = std::exp(*baseline_.Median());
  const bool zero = norm == 0;
  const bool collapsed = baseline && norm < options_.collapse_factor * *baseline;
  if (!zero && !collapsed) {
    vanished_ = 0;
    baseline_.Add(std::log(norm));
    return std::nullopt;
  }
  if (++vanished_ < options_.confirm_steps) return std::nullopt;
  nlohmann::json evidence = {
      {"grad_norm", norm}, {"loss", r.loss}, {"consecutive_steps", vanished_}};
  if (r.tokens) evidence["tokens"] = *r.tokens;
  if (baseline) evidence["baseline_median"] = *baseline;
  std::string what = zero ? "grad_norm is 0"
                          : "grad_norm " + FormatNumber(norm) + " is " +
                                FormatNumber(norm / *baseline) + "x its recent median " +
                                FormatNumber(*baseline);
  return Finding{Severity::kCritical,
                 what + " for " + std::to_string(vanished_) + " steps while the loss is " +
                     FormatNumber(r.loss) +
                     ": gradients no longer reach the model (a kernel returning zero gradients, "
                     "a detached loss, frozen parameters)",
                 evidence};
}

}  // namespace lossguard::analyzers
