#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lossguard/wire/step_record.h"

namespace lossguard::analyzers {

// One story of why a reported loss is off the correctly normalised one by a stable factor: a
// normalisation mistake scales the loss by a configuration value. Told the same way by the server's
// loss_scale_mismatch alerts and by the collector's warning in the trainer's log.

// A factor a mis-normalised loss is typically off by, named by the configuration value it is:
// "ga_steps*world_size", "ga_steps", "world_size", "1/ga_steps", "1/world_size",
// "tokens_per_sequence".
struct LossFactor {
  std::string name;
  double value = 1;
};

// How close (relative) a loss ratio must be to a factor to be explained by it.
inline constexpr double kLossFactorTolerance = 0.03;

// The factors for a record's configuration: ga_steps and world_size (each > 1, and their product
// when both are), their inverses, and label tokens per sequence when the record has tokens.
std::vector<LossFactor> LossFactorsOf(const wire::StepRecord& record);

// The factors for a change of configuration, from the ratios new/old of ga_steps and world_size: a
// loss missing a division scales by the ratio of what it misses.
std::vector<LossFactor> LossFactorsOfChange(double ga_steps_ratio, double world_size_ratio);

// The factor `ratio` is closest to within `tolerance` (relative); nullopt when none is.
std::optional<LossFactor> MatchLossFactor(double ratio, const std::vector<LossFactor>& factors,
                                          double tolerance = kLossFactorTolerance);

// What the factor named `name` means for `record`'s configuration, e.g. "micro-batch losses are
// summed over ga_steps=8 without dividing"; for an unknown name (or "unexplained"), that no
// configuration value explains it.
std::string ExplainLossFactor(std::string_view name, const wire::StepRecord& record);

}  // namespace lossguard::analyzers
