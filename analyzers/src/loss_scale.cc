#include <cmath>
#include <cstdio>
#include <vector>

#include "format.h"
#include "lossguard/analyzers/detectors.h"

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
  double sum = 0;
  std::int64_t tokens = 0;
  for (const wire::MicroBatch& mb : r.micro) {
    sum += mb.loss_sum ? *mb.loss_sum : mb.loss * static_cast<double>(mb.tokens);
    tokens += mb.tokens;
  }
  if (tokens > 0 && std::isfinite(sum) && sum > 0) {
    return Reference{sum / static_cast<double>(tokens), "micro_batches"};
  }
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
}  // namespace

std::string ExplainFactor(double factor, const wire::StepRecord& r, double tolerance) {
  struct Candidate {
    const char* name;
    double value;
  };
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

std::optional<Finding> LossScaleDetector::Observe(const wire::StepRecord& r) {
  if (!first_step_) first_step_ = r.step;
  if (!std::isfinite(r.loss) || r.loss <= 0)
    return std::nullopt;  // NaN is the nonfinite detector's
  std::optional<Reference> reference = ReferenceOf(r);
  bool from_init = false;
  if (!reference && r.vocab_size && r.step - *first_step_ < options_.init_steps) {
    reference = Reference{std::log(static_cast<double>(*r.vocab_size)), "ln_vocab_size_at_init"};
    from_init = true;
  }
  if (!reference) {
    mismatching_ = 0;
    return std::nullopt;
  }
  double factor = r.loss / reference->value;
  std::string explained_by = ExplainFactor(factor, r, options_.explain_tolerance);
  // Against ln(vocab_size) only a factor a configuration value explains is evidence: a run's
  // first losses legitimately differ from ln(V) by a little, and fall quickly.
  bool mismatch =
      std::abs(factor - 1) > options_.tolerance && (!from_init || explained_by != "unexplained");
  mismatching_ = mismatch ? mismatching_ + 1 : 0;
  if (mismatching_ < options_.confirm_steps) return std::nullopt;
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
  return Finding{
      Severity::kCritical,
      "loss is " + FormatNumber(factor) + "x " + against + ": " + Explanation(explained_by, r),
      evidence};
}

}  // namespace lossguard::analyzers
