#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lossguard/analyzers/detectors.h"
#include "lossguard/client/ingest_client.h"
#include "lossguard/collector/arg.h"
#include "lossguard/collector/guard_policy.h"
#include "lossguard/wire/guard_action.h"

namespace lossguard::collector {

struct GuardOptions {
  LOSSGUARD_ARG(GuardPolicy, policy);
  // The local loss-scale check: a loss off ref_loss by more than this fraction on this many
  // consecutive steps is a critical loss_scale_mismatch (the server's defaults: one rule).
  LOSSGUARD_ARG(double, loss_scale_tolerance) = analyzers::LossScaleOptions{}.tolerance;
  LOSSGUARD_ARG(std::int64_t,
                loss_scale_confirm_steps) = analyzers::LossScaleOptions{}.confirm_steps;
  // A local episode ends after this many clear steps (as the server's: resolve_after).
  LOSSGUARD_ARG(std::int64_t, clear_steps) = 20;
  // Where the guard's lines go (one per action); default: stderr.
  LOSSGUARD_ARG(std::function<void(std::string_view)>, warn);
};

// What the trainer knows of a step before optimizer.step().
struct StepSignals {
  double loss = 0;                              // as the trainer reports it
  std::optional<double> ref_loss;               // the correctly normalised loss, if computed
  std::optional<double> grad_norm;              // before clipping
  std::optional<std::int64_t> nonfinite_grads;  // gradient elements that are NaN or Inf
};

// What to do at this step. `action` is set when a verdict was acted on (also for warn): it goes
// into the step's record as its "guard" field.
struct GuardDecision {
  GuardResponse response = GuardResponse::kWarn;
  std::optional<wire::GuardAction> action;
  double lr_factor = 1;                     // kLowerLr: multiply the learning rate by this
  std::optional<std::int64_t> rollback_to;  // kRollback: restore the checkpoint of this step

  // Whether optimizer.step() should run on this step's gradients.
  bool step_optimizer() const {
    return !action || response == GuardResponse::kWarn || response == GuardResponse::kLowerLr;
  }
  bool stop() const { return action && response == GuardResponse::kStop; }
  bool rollback() const { return action && response == GuardResponse::kRollback; }
};

struct GuardStats {
  std::map<GuardResponse, std::int64_t> responses;  // actions taken, by response
  std::int64_t rollbacks = 0, lr_lowerings = 0, consecutive_skips = 0;
  double lr_scale = 1;  // the product of the lowerings so far
};

// Turns verdicts into actions, once per step, before optimizer.step(). Two sources:
//  - the step itself (the local fast path, no server needed): a non-finite loss or gradient norm
//    (critical nonfinite, judged on every step), and a loss off ref_loss on
//    loss_scale_confirm_steps steps in a row (critical loss_scale_mismatch);
//  - the server's open episodes at warning or critical, from the latest ingest acknowledgement of
//    the run (client::RunVerdicts), acted on once per episode and severity. Episodes a person
//    acknowledged, or that ended before this guard's first step, are left alone, as is a server
//    episode of a kind the guard already acted on locally within it.
// The policy says which response each gets; the strongest response of the step wins, within the
// policy's bounds (see GuardPolicy). Not thread-safe: call it from the training loop.
class Guard {
 public:
  explicit Guard(GuardOptions options);

  // `server`: the run's latest verdicts (nullptr: none, the server is down or predates them).
  GuardDecision Check(std::int64_t step, const StepSignals& signals,
                      const client::RunVerdicts* server);
  // The trainer saved a checkpoint of the state after `step` (a rollback target) / removed one.
  void Checkpointed(std::int64_t step);
  void CheckpointRemoved(std::int64_t step);
  // The product of the lr_factors taken so far: multiply the scheduled learning rate by it.
  double lr_scale() const { return stats_.lr_scale; }
  const GuardStats& stats() const { return stats_; }
  const GuardPolicy& policy() const { return options_.policy(); }

 private:
  struct Verdict {
    analyzers::Kind kind;
    analyzers::Severity severity;
    std::int64_t first_step;
    std::optional<std::int64_t> episode;
    std::optional<std::int64_t> seen_through;
    std::string what;     // for the message
    bool repeat = false;  // a later step of a local episode already acted on
  };
  // A condition judged on the trainer's own steps, as an episode: open while it lasts and until
  // clear_steps clear steps follow.
  struct LocalEpisode {
    std::int64_t run = 0;                    // consecutive steps with the condition
    std::optional<std::int64_t> first_step;  // of the current run of steps
    std::optional<std::int64_t> open_since;  // confirmed: the episode's first step
    std::int64_t clear = 0;
  };
  void Observe(LocalEpisode& episode, bool condition, std::int64_t step, std::int64_t confirm);
  void LocalVerdicts(std::int64_t step, const StepSignals& signals, std::vector<Verdict>& out);
  void ServerVerdicts(const client::RunVerdicts& server, std::vector<Verdict>& out);
  // The policy's response to one verdict, before the bounds.
  GuardDecision Decide(const Verdict& verdict) const;
  // Applies the bounds: a rollback beyond max_rollbacks or without a checkpoint before the
  // episode, or a skip beyond max_consecutive_skips, is a stop; a lowering beyond
  // max_lr_lowerings a warning.
  GuardDecision Bound(GuardDecision decision, const Verdict& verdict, std::string& why);

  GuardOptions options_;
  GuardStats stats_;
  std::optional<std::int64_t> first_step_;
  LocalEpisode nonfinite_, loss_scale_;
  bool loss_scale_acted_ = false;  // the open local loss_scale_mismatch episode was acted on
  std::map<analyzers::Kind, std::int64_t> last_local_action_;   // step, by kind
  std::map<std::int64_t, analyzers::Severity> acted_episodes_;  // server episode id -> severity
  std::set<std::int64_t> checkpoints_;
};

}  // namespace lossguard::collector
