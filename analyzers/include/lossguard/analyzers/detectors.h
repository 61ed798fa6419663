#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <utility>
#include <vector>

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
  // At any step: a token-mean cross entropy above ln(vocab_size), the loss of a uniform
  // prediction, is not what a trained model reports, and an untrained one starts within about 10%
  // of it (the corpus's healthy runs peak at 1.08 ln V). Above bound_margin x ln(vocab_size) for
  // records covering confirm_steps steps (at least two records: sparse logs cover many steps each),
  // within bound_early_steps of the run's first step or spanning bound_late_span steps later (a
  // diverging run's excursion above it is short and is grad_explosion's), the loss is mis-scaled:
  // critical when a configuration value brings it under the bound (and then until the
  // configuration changes), warning otherwise (while the loss stays above ln(vocab_size)).
  double bound_margin = 1.25;
  std::int64_t bound_early_steps = 50;
  std::int64_t bound_late_span = 50;
};

// `loss_scale_mismatch` (critical): the reported loss is off the correctly normalised loss by a
// stable factor. The reference is ref_loss, else the token-weighted mean of the micro-batches,
// else (first init_steps steps only) ln(vocab_size), a causal LM's loss at initialisation. Without
// any, the plausibility bound at ln(vocab_size) applies at any step (LossScaleOptions). Evidence
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
  // Resuming (a restart, or another server judged the run meanwhile): `held` is the finding of
  // the open loss_scale_mismatch episode, as this detector reported it. A verdict this detector
  // holds beyond what any window of records shows again (one found against ln(vocab_size) in the
  // first steps, above the plausibility bound, or across a configuration change) is held again,
  // so that the episode goes on as if judged without interruption. Call before the history is
  // replayed.
  void Resume(const Finding& held);

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
  // The plausibility bound at ln(vocab_size), for records without reference data; `covers`: the
  // steps since the previous record.
  std::optional<Finding> JudgeBound(const wire::StepRecord& record, std::int64_t covers);

  LossScaleOptions options_;
  std::optional<std::int64_t> first_step_;
  int mismatching_ = 0;
  std::int64_t mismatch_since_ = 0;  // the first step of the current mismatching streak
  std::string explained_before_;     // the previous mismatching step's explanation
  // A mismatch found against ln(vocab_size) is structural: repeated until the configuration
  // changes, although later steps have no reference to show it again.
  std::optional<Finding> init_verdict_;
  // Records above the plausibility bound in a row, since which step; the confirmed verdict holds
  // while the loss stays above ln(vocab_size).
  int above_bound_ = 0;
  std::int64_t above_bound_steps_ = 0;  // the steps those records cover
  std::int64_t above_bound_since_ = 0;
  std::optional<std::int64_t> previous_step_;  // the previous record's step
  std::optional<Finding> bound_verdict_;
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

// How many of the last `n` judged records showed a condition: the persistence that turns a spike
// into an incident.
class RecentCount {
 public:
  explicit RecentCount(std::size_t n) : n_(n) {}
  // Records this step's flag; returns how many of the last n (this one included) were set.
  int Push(bool flag);
  // Whether any of the last n records (before the next Push) had the flag.
  bool Any() const { return count_ > 0; }

 private:
  std::size_t n_;
  std::vector<bool> flags_;  // a ring of the last n flags; the next Push overwrites `next_`
  std::size_t next_ = 0;
  int count_ = 0;
};

struct GradExplosionOptions {
  std::size_t window = 64;       // steps in the baseline
  std::size_t min_history = 20;  // no judgement before this many baseline steps
  double ratio = 5.0;            // grad_norm above ratio x baseline median...
  double mads = 6.0;             // ...and this many MADs above it, in log space
  int growth_steps = 4;          // or: this many consecutive steps each growing by...
  double growth_factor = 1.5;    // ...at least this factor, and
  double growth_total = 10.0;    // ...by this much in all
  // Severity follows evidence: a spike is critical when spikes persist (persist_k of the last
  // persist_n records) or the loss responds (non-finite, or loss_response x its median at a
  // spiking step or within persist_n records after one: above the 1.6-2.5x that single short steps
  // reach at micro_batch 1); an isolated spike is info.
  int persist_k = 3;
  std::size_t persist_n = 6;
  double loss_response = 3.0;
};

// `grad_explosion`: grad_norm far above its own robust baseline (median/MAD of log grad_norm over
// recent healthy steps), or growing geometrically. Early large, falling norms of a healthy run do
// not fire: judgement starts after min_history steps, against their median. Critical when it
// persists or the loss responds (see GradExplosionOptions); info for a lone spike the run absorbs
// (routine at small batch sizes, and what gradient clipping is for).
class GradExplosionDetector {
 public:
  explicit GradExplosionDetector(GradExplosionOptions options = {})
      : options_(options),
        baseline_(options.window),
        losses_(kLossMedianWindow),
        recent_(options.persist_n) {}
  std::optional<Finding> Observe(const wire::StepRecord& record);

 private:
  // A non-finite grad_norm or loss within persist_n records of a spike: the explosion broke the
  // run.
  std::optional<Finding> JudgeBreakdown(const wire::StepRecord& record);

  // Only the loss's median is asked for: a short window keeps its upkeep cheap on every step.
  static constexpr std::size_t kLossMedianWindow = 32;
  GradExplosionOptions options_;
  RobustWindow baseline_;  // log grad_norm of steps that did not fire
  RobustWindow losses_;    // losses of recent steps that did not fire
  RecentCount recent_;     // which recent records spiked
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

// `loss_spike`: the loss jumps far above its recent baseline. The published rules differ
// (OLMo-core: mean + 6 sigma over 128 steps; llm-foundry: 2x the window mean with patience 4;
// Megatron-LM: 10x the largest loss seen); this one takes OLMo-core's window and sigma rule, adds a
// floor of min_ratio x the window median (a very flat curve's tiny sigma must not fire on noise),
// and asks the record about its own noise first: a step's loss is a mean over its label tokens, so
// its distance from the median is scaled by sqrt(tokens / median tokens) (a step of few tokens is
// legitimately far off), and with micro-batch data the jump must also exceed micro_se_multiple
// standard errors of the step's own micro-batch spread (one odd micro-batch is not a spike).
// Severity: info for an isolated spike, warning when it persists (persist_k of the last persist_n
// records), critical when the loss stays up (sustain_k of the last sustain_n) or goes non-finite
// after a spike. Firing steps stay out of the baseline. Records logged every N steps are judged
// against the records of the last `window` steps, not the last `window` records. Reset() at a
// configuration change.
struct LossSpikeOptions {
  std::size_t window = 128;
  std::size_t min_history = 32;
  double sigmas = 6.0;
  double min_ratio = 1.5;
  double micro_se_multiple = 4.0;
  int persist_k = 3;
  std::size_t persist_n = 6;
  int sustain_k = 7;
  std::size_t sustain_n = 8;
};

class LossSpikeDetector {
 public:
  explicit LossSpikeDetector(LossSpikeOptions options = {})
      : options_(options),
        baseline_(options.window),
        tokens_(kTokenMedianWindow),
        recent_(options.persist_n),
        sustained_(options.sustain_n) {}
  std::optional<Finding> Observe(const wire::StepRecord& record);
  void Reset() {
    baseline_ = RobustWindow(options_.window);
    tokens_ = RobustWindow(kTokenMedianWindow);
    history_.clear();
  }

 private:
  // The typical step's token count: a median over a short window is enough, and cheap to keep.
  static constexpr std::size_t kTokenMedianWindow = 32;
  LossSpikeOptions options_;
  RobustWindow baseline_;  // losses of steps that did not fire
  RobustWindow tokens_;    // their label-token counts, where records have them
  // The same losses with their steps, for records logged every N steps (see Observe).
  std::deque<std::pair<std::int64_t, double>> history_;
  std::optional<std::int64_t> previous_step_;
  RecentCount recent_, sustained_;
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

// `rank_divergence`: the data-parallel ranks of one step disagree. After the DDP all-reduce every
// rank holds the same gradients, so grad_norm differing by more than grad_tolerance (relative to
// the ranks' median) means a rank missed the all-reduce; ga_steps, micro_batch_size or world_size
// differing means a rank runs another configuration. Both are critical, the differing ranks named
// (those off the majority). Token counts or mean losses apart by more than imbalance_ratio over the
// last imbalance_window steps are an info note (uneven data, not a broken run). A run that reports
// from one rank is never judged. (Sharded gradients, as under FSDP or ZeRO, have per-rank norms
// that legitimately differ: report the global norm, as those frameworks' clipping computes it.)
struct RankDivergenceOptions {
  double grad_tolerance = 1e-3;  // float32 reduction order changes the norm by ~1e-6
  std::size_t imbalance_window = 32;
  double token_imbalance = 2.0;
  double loss_imbalance = 1.5;
};

class RankDivergenceDetector {
 public:
  explicit RankDivergenceDetector(RankDivergenceOptions options = {}) : options_(options) {}
  // `ranks`: one step's records, one per rank. Returns the finding and the diverging ranks.
  std::optional<std::pair<Finding, std::vector<std::int64_t>>> Observe(
      const std::vector<wire::StepRecord>& ranks);

 private:
  std::optional<std::pair<Finding, std::vector<std::int64_t>>> JudgeImbalance(
      const std::vector<wire::StepRecord>& ranks);

  RankDivergenceOptions options_;
  struct Totals {
    std::deque<std::pair<double, double>> window;  // (tokens, loss) per step
    double tokens = 0, loss = 0;
  };
  std::map<std::int64_t, Totals> totals_;  // per rank
};

}  // namespace lossguard::analyzers
