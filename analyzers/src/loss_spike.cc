#include <cmath>

#include "format.h"
#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

std::optional<Finding> LossSpikeDetector::Observe(const wire::StepRecord& r) {
  if (!std::isfinite(r.loss)) return std::nullopt;  // the nonfinite detector's
  std::optional<Finding> finding;
  if (baseline_.size() >= options_.min_history) {
    const double mean = *baseline_.Mean(), sigma = *baseline_.StdDev(),
                 median = *baseline_.Median();
    const double threshold = std::max(mean + options_.sigmas * sigma, options_.min_ratio * median);
    if (r.loss > threshold) {
      finding = Finding{Severity::kWarning,
                        "loss " + FormatNumber(r.loss) + " at step " + std::to_string(r.step) +
                            " is " + FormatNumber(r.loss / median) + "x its recent median " +
                            FormatNumber(median) + " (threshold " + FormatNumber(threshold) +
                            ": mean + " + FormatNumber(options_.sigmas) + " sigma over the last " +
                            std::to_string(baseline_.size()) + " steps)",
                        {{"loss", r.loss},
                         {"baseline_mean", mean},
                         {"baseline_std", sigma},
                         {"baseline_median", median},
                         {"threshold", threshold},
                         {"ratio", r.loss / median}}};
    }
  }
  // A spike must not raise the baseline it is judged against.
  if (!finding) baseline_.Add(r.loss);
  return finding;
}

}  // namespace lossguard::analyzers
