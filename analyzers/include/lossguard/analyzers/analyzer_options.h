#pragma once

#include <cstdint>

#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

// Every threshold of the analyzers, with the defaults the scenario corpus was measured with
// (tests/scenarios; the README's precision/recall table). The server exposes each as a flag.
struct AnalyzerOptions {
  LossScaleOptions loss_scale;
  TokenWeightingOptions token_weighting;
  GradExplosionOptions grad_explosion;
  LossSpikeOptions loss_spike;
  VanishingGradOptions vanishing_grad;
  RankDivergenceOptions rank_divergence;
  // An episode resolves once its condition has been clear for this many judged steps: long enough
  // that a flapping condition stays one episode, short enough that a fixed run shows resolved.
  std::int64_t resolve_after = 20;
  // A step waits for its ranks until a step this much later arrives; then it is judged with the
  // ranks it has (a rank that lags or never reports does not stall judgement).
  std::int64_t max_wait_steps = 4;
  // A rank whose records arrive after its step was judged without it lags more than that: the wait
  // grows to the lag seen (and the rank is expected again), up to this many steps. Pending steps
  // stay bounded by max_wait_cap x ranks.
  std::int64_t max_wait_cap = 64;
  // An episode whose onset falls within this many steps of another's explains it (a grad-norm jump
  // where a loss-scale factor or a configuration change appears, a loss spike or NaN riding on an
  // explosion): it carries evidence.caused_by and severity info.
  std::int64_t link_steps = 8;

  // How many judged steps a restarted analyzer must re-read to rebuild its detectors' state: the
  // longest window, with room to spare.
  std::int64_t WarmupSteps() const;
};

}  // namespace lossguard::analyzers
