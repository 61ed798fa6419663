#include <cmath>

#include "format.h"
#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

std::optional<Finding> GradExplosionDetector::JudgeBreakdown(const wire::StepRecord& r) {
  const bool norm_broken = r.grad_norm && !std::isfinite(*r.grad_norm);
  if (!recent_.Any() || (std::isfinite(r.loss) && !norm_broken)) return std::nullopt;
  recent_.Push(true);  // part of the explosion
  return Finding{Severity::kCritical,
                 std::string(norm_broken ? "grad_norm" : "loss") + " is non-finite at step " +
                     std::to_string(r.step) + ", within " + std::to_string(options_.persist_n) +
                     " steps of a gradient spike",
                 {{"loss", r.loss}, {"rule", "breakdown_after_spike"}}};
}

std::optional<Finding> GradExplosionDetector::Observe(const wire::StepRecord& r) {
  if (!r.grad_norm || !std::isfinite(*r.grad_norm) || !std::isfinite(r.loss))
    return JudgeBreakdown(r);
  if (*r.grad_norm <= 0) return std::nullopt;
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
      finding = Finding{Severity::kInfo,
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
    // Sustained geometric growth is persistent by construction.
    finding = Finding{Severity::kCritical,
                      "grad_norm grew " + FormatNumber(norm / streak_start_) + "x over " +
                          std::to_string(growing_) + " consecutive steps (to " +
                          FormatNumber(norm) + " at step " + std::to_string(r.step) + ")",
                      {{"grad_norm", norm},
                       {"growth", norm / streak_start_},
                       {"steps", growing_},
                       {"rule", "geometric_growth"}}};
  }

  const bool spike_nearby = recent_.Any();
  const int spikes = recent_.Push(finding.has_value());
  const std::optional<double> loss_median = losses_.Median();
  const bool loss_responds = (finding || spike_nearby) && loss_median && *loss_median > 0 &&
                             r.loss >= options_.loss_response * *loss_median;
  if (finding && finding->severity != Severity::kCritical) {
    if (spikes >= options_.persist_k) {
      finding->severity = Severity::kCritical;
      finding->message += "; " + std::to_string(spikes) + " of the last " +
                          std::to_string(options_.persist_n) + " steps spiked";
      finding->evidence["severity_reason"] = "persistent";
    } else if (loss_responds) {
      finding->severity = Severity::kCritical;
      finding->message +=
          "; the loss responded (" + FormatNumber(r.loss / *loss_median) + "x its median)";
      finding->evidence["severity_reason"] = "loss_responded";
    } else {
      finding->message += "; an isolated spike so far (the loss did not respond)";
      finding->evidence["severity_reason"] = "isolated";
    }
    finding->evidence["spikes_in_window"] = spikes;
  } else if (!finding && loss_responds) {
    // The loss rose after a spike that the norm has since left: the run did not absorb it.
    finding =
        Finding{Severity::kCritical,
                "loss " + FormatNumber(r.loss) + " at step " + std::to_string(r.step) + " is " +
                    FormatNumber(r.loss / *loss_median) + "x its median after a gradient spike",
                {{"grad_norm", norm}, {"loss", r.loss}, {"rule", "loss_responded"}}};
  }
  // Firing steps stay out of the baselines, so that an explosion cannot become the new normal.
  if (!finding) {
    baseline_.Add(log_norm);
    losses_.Add(r.loss);
  }
  return finding;
}

}  // namespace lossguard::analyzers
