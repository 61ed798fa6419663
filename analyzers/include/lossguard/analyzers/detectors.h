#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "lossguard/analyzers/alert_event.h"
#include "lossguard/analyzers/loss_factor.h"
#include "lossguard/analyzers/robust_window.h"
#include "lossguard/wire/step_record.h"

namespace lossguard::analyzers {

// The configuration values a loss's normalisation depends on.
struct RunConfig {
  std::int64_t ga_steps = 1;
  std::int64_t micro_batch_size = 1;
  std::int64_t world_size = 1;
  bool operator==(const RunConfig&) const = default;
};
RunConfig ConfigOf(const wire::StepRecord& record);

// Each detector judges one rank's records, fed in step order, and keeps bounded state. Observe()
// returns a Finding while its condition holds on that step.

// `nonfinite` (critical): loss, ref_loss or grad_norm is NaN/Inf, or nonfinite_grads > 0.
class NonFiniteDetector {
 public:
  std::optional<Finding> Observe(const wire::StepRecord& record);
};

struct LossScaleOptions {
  double tolerance = 0.05;  // |loss / reference - 1| above this is a mismatch
  int confirm_steps = 3;    // consecutive mismatching steps before it fires
  // How close a factor must be to a configuration value (loss_factor.h) to be explained by it.
  double explain_tolerance = kLossFactorTolerance;
  // Without reference data, the run's first init_steps steps are judged against ln(vocab_size),
  // the loss of an untrained causal LM (within about 10%; the loss falls fast after that), and
  // only a factor within init_tolerance of a configuration value counts.
  std::int64_t init_steps = 3;
  double init_tolerance = 0.15;
  std::size_t level_shift_steps = 5;    // steps after a configuration change to judge its level
  double level_shift_tolerance = 0.25;  // a level ratio this close to the configuration ratio
};

// `loss_scale_mismatch` (critical): the reported loss is off the correctly normalised loss by a
// stable factor. The reference is ref_loss, else the token-weighted mean of the micro-batches,
// else (first init_steps steps only) ln(vocab_size), a causal LM's loss at initialisation. Evidence
// names the factor and the configuration value it matches (explained_by). A loss equal to the mean
// of micro-batch means is left to TokenWeightingDetector.
//
// Without reference data after the first steps, one thing is still known: a correctly normalised
// loss does not change level when ga_steps or world_size changes. A jump by the ratio of the old
// and new values at such a change (judged over level_shift_steps steps on each side) fires too,
// and keeps firing until the configuration changes again.
class LossScaleDetector {
 public:
  explicit LossScaleDetector(LossScaleOptions options = {})
      : options_(options), recent_(options.level_shift_steps * 4) {}
  std::optional<Finding> Observe(const wire::StepRecord& record);

  // The run's first step, when this detector starts later (after a restart).
  void SetFirstStep(std::int64_t step) { first_step_ = step; }
  // The configuration changed at `step`: judge the loss level across the change.
  void ConfigChanged(const RunConfig& before, const RunConfig& after, std::int64_t step);

 private:
  struct Reference {
    double value;
    const char* method;
    bool from_init;  // ln(vocab_size) in the run's first steps, not carried by the record
  };
  // The correctly normalised loss this record lets us know (or ln(vocab_size) in the first steps).
  std::optional<Reference> ReferenceFor(const wire::StepRecord& record) const;
  // The configuration value that explains `factor`, "unexplained" when none does. `mean_of_means`
  // is the record's mean of micro-batch means, if it has micro-batch data.
  std::string ExplainedBy(double factor, const wire::StepRecord& record, bool from_init,
                          std::optional<double> mean_of_means) const;
  // The alert of a confirmed mismatch (kept as init_verdict_ when judged against ln(vocab_size)).
  Finding Verdict(const wire::StepRecord& record, double factor, const Reference& reference,
                  const std::string& explained_by);
  std::optional<Finding> JudgeLevelShift(const wire::StepRecord& record);

  LossScaleOptions options_;
  std::optional<std::int64_t> first_step_;
  int mismatching_ = 0;
  std::string explained_before_;  // the previous mismatching step's explanation
  // A mismatch found against ln(vocab_size) is structural: repeated until the configuration
  // changes, although later steps have no reference to show it again.
  std::optional<Finding> init_verdict_;
  RobustWindow recent_;  // recent finite losses, for the level before a configuration change
  struct Shift {
    double level_before;
    RunConfig before, after;
    std::int64_t changed_at;
    RobustWindow losses_after;
    bool judged = false;
    std::optional<Finding> verdict;  // once judged: repeated while the configuration holds
  };
  std::optional<Shift> shift_;
};

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

// `token_weighting_bias` (warning): the reported loss follows the mean of per-micro-batch means
// instead of the token-weighted mean (transformers before its GA fix). Needs micro-batch data; a
// step says something only when the two means differ (micro-batches of different token counts),
// so the verdict is taken over the last `window` such steps.
struct TokenWeightingOptions {
  // |mean of means / token-weighted - 1| below this: the step cannot tell them apart. Far above
  // float32 rounding, below the typical separation with variable-length sequences.
  double min_separation = 5e-4;
  std::size_t window = 32;  // informative steps judged together
  std::size_t min_informative = 8;
  double share = 0.75;  // fraction of informative steps whose loss matches the mean of means
};

class TokenWeightingDetector {
 public:
  explicit TokenWeightingDetector(TokenWeightingOptions options = {}) : options_(options) {}
  std::optional<Finding> Observe(const wire::StepRecord& record);

 private:
  TokenWeightingOptions options_;
  std::deque<int>
      verdicts_;  // per informative step: +1 mean of means, -1 token-weighted, 0 neither
  int following_means_ = 0, following_tokens_ = 0;
};

// `loss_spike` (warning): the loss jumps far above its recent baseline. The published rules differ
// (OLMo-core: mean + 6 sigma over 128 steps; llm-foundry: 2x the window mean; Megatron-LM: 10x the
// largest loss seen); this one takes OLMo-core's window and sigma rule and adds a floor of
// min_ratio x the window median, so that a very flat curve (tiny sigma) does not fire on noise.
// Firing steps stay out of the baseline. Reset() at a configuration change.
struct LossSpikeOptions {
  std::size_t window = 128;
  std::size_t min_history = 32;
  double sigmas = 6.0;
  double min_ratio = 1.5;
};

class LossSpikeDetector {
 public:
  explicit LossSpikeDetector(LossSpikeOptions options = {})
      : options_(options), baseline_(options.window) {}
  std::optional<Finding> Observe(const wire::StepRecord& record);
  void Reset() { baseline_ = RobustWindow(options_.window); }

 private:
  LossSpikeOptions options_;
  RobustWindow baseline_;
};

// `vanishing_grad` (critical): gradients no longer reach the model. grad_norm is zero, or has
// collapsed to collapse_factor x its recent median, while the step had tokens and a positive loss,
// for confirm_steps consecutive steps (a Liger-Kernel-style kernel returning all-zero gradients).
struct VanishingGradOptions {
  int confirm_steps = 2;
  std::size_t window = 64;
  std::size_t min_history = 20;
  double collapse_factor = 1e-3;
};

class VanishingGradDetector {
 public:
  explicit VanishingGradDetector(VanishingGradOptions options = {})
      : options_(options), baseline_(options.window) {}
  std::optional<Finding> Observe(const wire::StepRecord& record);

 private:
  VanishingGradOptions options_;
  RobustWindow baseline_;  // log grad_norm of healthy steps
  int vanished_ = 0;
};

// `config_change` (info): ga_steps, micro_batch_size or world_size differ from the previous judged
// step: context for the other alerts.
class ConfigChangeDetector {
 public:
  std::optional<Finding> Observe(const wire::StepRecord& record);
  // The configuration before the change Observe() last reported.
  const RunConfig& before() const { return before_; }

 private:
  std::optional<RunConfig> current_;
  RunConfig before_;
};

}  // namespace lossguard::analyzers
