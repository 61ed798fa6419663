#include <cmath>

#include "format.h"
#include "lossguard/analyzers/detectors.h"
#include "micro_means.h"

namespace lossguard::analyzers {

std::optional<Finding> TokenWeightingDetector::Observe(const wire::StepRecord& r) {
  std::optional<double> weighted = TokenWeightedMicroMean(r), means = MeanOfMicroMeans(r);
  if (!weighted || !means || !std::isfinite(r.loss)) return std::nullopt;
  const double separation = std::abs(*means - *weighted);
  if (separation <= options_.min_separation * *weighted) return std::nullopt;  // says nothing

  // Which of the two the reported loss sits next to; neither when it is far from both (a scale
  // problem, the loss_scale_mismatch detector's).
  int verdict = 0;
  if (std::abs(r.loss - *means) < 0.25 * separation) verdict = +1;
  if (std::abs(r.loss - *weighted) < 0.25 * separation) verdict = -1;
  verdicts_.push_back(verdict);
  following_means_ += verdict == +1;
  following_tokens_ += verdict == -1;
  if (verdicts_.size() > options_.window) {
    following_means_ -= verdicts_.front() == +1;
    following_tokens_ -= verdicts_.front() == -1;
    verdicts_.pop_front();
  }

  const auto informative = static_cast<double>(verdicts_.size());
  if (verdicts_.size() < options_.min_informative ||
      following_means_ < options_.share * informative) {
    return std::nullopt;
  }
  return Finding{
      Severity::kWarning,
      "the reported loss follows the mean of per-micro-batch means, not the token-weighted mean, "
      "on " +
          std::to_string(following_means_) + " of the last " + std::to_string(verdicts_.size()) +
          " steps whose micro-batches differ in token count (this step: " + FormatNumber(r.loss) +
          " vs token-weighted " + FormatNumber(*weighted) +
          "): short micro-batches weigh as much as long ones",
      {{"loss", r.loss},
       {"token_weighted", *weighted},
       {"mean_of_means", *means},
       {"informative_steps", verdicts_.size()},
       {"following_mean_of_means", following_means_},
       {"following_token_weighted", following_tokens_}}};
}

}  // namespace lossguard::analyzers
