#include "lossguard/analyzers/loss_factor.h"

#include <cmath>

namespace lossguard::analyzers {

namespace {
// Within this of 1 a ratio is no change at all (a ratio of equal integers is exactly 1).
constexpr double kUnchanged = 1e-9;

std::vector<LossFactor> FactorsOf(double ga_steps, double world_size) {
  const bool ga = std::abs(ga_steps - 1) > kUnchanged, ws = std::abs(world_size - 1) > kUnchanged;
  std::vector<LossFactor> factors;
  if (ga && ws) factors.push_back({"ga_steps*world_size", ga_steps * world_size});
  if (ga) factors.push_back({"ga_steps", ga_steps});
  if (ws) factors.push_back({"world_size", world_size});
  if (ga) factors.push_back({"1/ga_steps", 1 / ga_steps});
  if (ws) factors.push_back({"1/world_size", 1 / world_size});
  return factors;
}
}  // namespace

std::vector<LossFactor> LossFactorsOf(const wire::StepRecord& r) {
  std::vector<LossFactor> factors =
      FactorsOf(static_cast<double>(r.ga_steps), static_cast<double>(r.world_size));
  if (r.tokens && *r.tokens > 0) {
    // Label tokens per sequence on this rank: dividing by sequences inflates the loss by this.
    factors.push_back({"tokens_per_sequence",
                       static_cast<double>(*r.tokens) / (static_cast<double>(r.ga_steps) *
                                                         static_cast<double>(r.micro_batch_size))});
  }
  return factors;
}

std::vector<LossFactor> LossFactorsOfChange(double ga_steps_ratio, double world_size_ratio) {
  return FactorsOf(ga_steps_ratio, world_size_ratio);
}

std::optional<LossFactor> MatchLossFactor(double ratio, const std::vector<LossFactor>& factors,
                                          double tolerance) {
  std::optional<LossFactor> best;
  double best_error = tolerance;
  for (const LossFactor& factor : factors) {
    const double error = std::abs(ratio / factor.value - 1);
    if (error <= best_error) {
      best = factor;
      best_error = error;
    }
  }
  return best;
}

std::string ExplainLossFactor(std::string_view name, const wire::StepRecord& r) {
  const std::string ga = std::to_string(r.ga_steps), ws = std::to_string(r.world_size);
  if (name == "ga_steps")
    return "micro-batch losses are summed over ga_steps=" + ga + " without dividing";
  if (name == "ga_steps*world_size") {
    return "micro-batch losses are summed over ga_steps=" + ga + " and world_size=" + ws +
           " without dividing";
  }
  if (name == "world_size")
    return "token counts are taken per rank instead of across world_size=" + ws + " ranks";
  if (name == "1/ga_steps") return "the loss is divided by ga_steps=" + ga + " once too often";
  if (name == "1/world_size") return "the loss is divided by world_size=" + ws + " once too often";
  if (name == "tokens_per_sequence")
    return "the loss is divided by the number of sequences, not tokens";
  return "no configuration value explains the factor; the loss may be averaged per micro-batch or "
         "per sequence instead of per token";
}

}  // namespace lossguard::analyzers
