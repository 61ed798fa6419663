#pragma once

#include <cstdint>
#include <optional>

#include "lossguard/analyzers/alert_event.h"
#include "lossguard/analyzers/robust_window.h"
#include "lossguard/wire/step_record.h"

namespace lossguard::analyzers {

// Each detector judges one rank's records, fed in step order, and keeps bounded state. Observe()
// returns a Finding while its condition holds on that step.

// `nonfinite` (critical): loss, ref_loss or grad_norm is NaN/Inf, or nonfinite_grads > 0.
class NonFiniteDetector {
 public:
  std::optional<Finding> Observe(const wire::StepRecord& record);
};

struct LossScaleOptions {
  double tolerance = 0.05;          // |loss / reference - 1| above this is a mismatch
  int confirm_steps = 3;            // consecutive mismatching steps before it fires
  double explain_tolerance = 0.03;  // how close a factor must be to a configuration value
  std::int64_t init_steps = 20;  // without reference data: judge against ln(vocab_size) this long
};

// `loss_scale_mismatch` (critical): the reported loss is off the correctly normalised loss by a
// stable factor. The reference is ref_loss, else the token-weighted mean of the micro-batches,
// else (first init_steps steps only) ln(vocab_size), a causal LM's loss at initialisation. Evidence
// names the factor and the configuration value it matches (explained_by).
class LossScaleDetector {
 public:
  explicit LossScaleDetector(LossScaleOptions options = {}) : options_(options) {}
  std::optional<Finding> Observe(const wire::StepRecord& record);

 private:
  LossScaleOptions options_;
  std::optional<std::int64_t> first_step_;
  int mismatching_ = 0;
};

// The configuration value `factor` matches within `tolerance` (relative): "ga_steps",
// "world_size", "ga_steps*world_size", "1/ga_steps", "1/world_size", "tokens_per_sequence", or
// "unexplained".
std::string ExplainFactor(double factor, const wire::StepRecord& record, double tolerance);

struct GradExplosionOptions {
  std::size_t window = 64;       // steps in the baseline
  std::size_t min_history = 20;  // no judgement before this many baseline steps
  double ratio = 5.0;            // grad_norm above ratio x baseline median...
  double mads = 6.0;             // ...and this many MADs above it, in log space
  int growth_steps = 4;          // or: this many consecutive steps each growing by...
  double growth_factor = 1.5;    // ...at least this factor, and
  double growth_total = 10.0;    // ...by this much in all
};

// `grad_explosion` (critical): grad_norm far above its own robust baseline (median/MAD of log
// grad_norm over recent healthy steps), or growing geometrically. Early large, falling norms of a
// healthy run do not fire: judgement starts after min_history steps, against their median.
class GradExplosionDetector {
 public:
  explicit GradExplosionDetector(GradExplosionOptions options = {})
      : options_(options), baseline_(options.window) {}
  std::optional<Finding> Observe(const wire::StepRecord& record);

 private:
  GradExplosionOptions options_;
  RobustWindow baseline_;  // log grad_norm of steps that did not fire
  std::optional<double> previous_;
  int growing_ = 0;
  double streak_start_ = 0;
};

}  // namespace lossguard::analyzers
