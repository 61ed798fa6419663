#include "analyzer_flags.h"

namespace lossguard {

void AddAnalyzerFlags(CLI::App& app, analyzers::AnalyzerOptions& o) {
  const std::string group = "Analyzers";
  auto add = [&](const std::string& name, auto& value, const std::string& why) {
    return app.add_option(name, value, why)->group(group)->capture_default_str();
  };
  // CLI::PositiveNumber's own message prints the range up to DBL_MAX: say it plainly instead.
  const CLI::Validator positive(
      [](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value) || !(value > 0))
          return "must be a number greater than 0, but got " + text;
        return {};
      },
      "POSITIVE");
  const auto fraction = CLI::Range(0.0, 1.0);

  add("--resolve-after", o.resolve_after,
      "an alert resolves after this many clear steps (a flapping condition stays one episode)")
      ->check(positive);
  add("--max-wait-steps", o.max_wait_steps,
      "a step missing ranks is judged once a step this much later arrives")
      ->check(positive);
  add("--max-wait-cap", o.max_wait_cap,
      "a rank whose records arrive late makes steps wait as long as it lags, up to this many")
      ->check(positive);

  add("--loss-scale-tolerance", o.loss_scale.tolerance,
      "loss_scale_mismatch: |loss/reference - 1| above this (float32 noise is far below)")
      ->check(CLI::Range(0.0, 10.0));
  add("--loss-scale-confirm-steps", o.loss_scale.confirm_steps,
      "loss_scale_mismatch: consecutive mismatching steps before it fires")
      ->check(positive);
  add("--loss-scale-explain-tolerance", o.loss_scale.explain_tolerance,
      "loss_scale_mismatch: how close a factor must be to ga_steps, world_size, ... to name it")
      ->check(fraction);
  add("--loss-scale-init-steps", o.loss_scale.init_steps,
      "loss_scale_mismatch without reference data: judge the first N steps against "
      "ln(vocab_size)")
      ->check(CLI::NonNegativeNumber);
  add("--loss-scale-init-tolerance", o.loss_scale.init_tolerance,
      "loss_scale_mismatch against ln(vocab_size): an untrained model is within ~10% of it")
      ->check(fraction);
  add("--level-shift-steps", o.loss_scale.level_shift_steps,
      "loss_scale_mismatch: steps after a ga_steps/world_size change to judge the new level")
      ->check(positive);
  add("--level-shift-tolerance", o.loss_scale.level_shift_tolerance,
      "loss_scale_mismatch: how close the level ratio must be to the configuration ratio")
      ->check(fraction);
  add("--loss-scale-bound-margin", o.loss_scale.bound_margin,
      "loss_scale_mismatch: a loss above this x ln(vocab_size) is implausible (untrained models "
      "start within ~10% of it)")
      ->check(CLI::Range(1.0, 1e6));
  add("--loss-scale-bound-early-steps", o.loss_scale.bound_early_steps,
      "loss_scale_mismatch: within this many steps of the run's start the bound confirms in 3 "
      "records...")
      ->check(CLI::NonNegativeNumber);
  add("--loss-scale-bound-late-span", o.loss_scale.bound_late_span,
      "loss_scale_mismatch: ...later it must hold this many steps (a diverging run's excursion is "
      "shorter)")
      ->check(CLI::NonNegativeNumber);

  add("--token-weighting-min-separation", o.token_weighting.min_separation,
      "token_weighting_bias: a step counts when its two means differ by this fraction")
      ->check(fraction);
  add("--token-weighting-window", o.token_weighting.window,
      "token_weighting_bias: informative steps judged together")
      ->check(positive);
  add("--token-weighting-min-informative", o.token_weighting.min_informative,
      "token_weighting_bias: informative steps needed before a verdict")
      ->check(positive);
  add("--token-weighting-share", o.token_weighting.share,
      "token_weighting_bias: share of informative steps following the mean of means")
      ->check(fraction);

  add("--grad-explosion-window", o.grad_explosion.window,
      "grad_explosion: healthy steps in the baseline")
      ->check(positive);
  add("--grad-explosion-min-history", o.grad_explosion.min_history,
      "grad_explosion: baseline steps before the baseline rule judges (early norms are large)")
      ->check(positive);
  add("--grad-explosion-ratio", o.grad_explosion.ratio,
      "grad_explosion: grad_norm above this x the baseline median...")
      ->check(positive);
  add("--grad-explosion-mads", o.grad_explosion.mads,
      "grad_explosion: ...and this many MADs above it in log space")
      ->check(positive);
  add("--grad-explosion-growth-steps", o.grad_explosion.growth_steps,
      "grad_explosion: consecutive growing steps for the geometric rule")
      ->check(positive);
  add("--grad-explosion-growth-factor", o.grad_explosion.growth_factor,
      "grad_explosion: each growing by at least this factor...")
      ->check(CLI::Range(1.0, 1e9));
  add("--grad-explosion-growth-total", o.grad_explosion.growth_total,
      "grad_explosion: ...and by this much in all")
      ->check(CLI::Range(1.0, 1e12));

  add("--grad-explosion-persist-k", o.grad_explosion.persist_k,
      "grad_explosion: critical when this many of the last --grad-explosion-persist-n steps "
      "spiked...")
      ->check(positive);
  add("--grad-explosion-persist-n", o.grad_explosion.persist_n,
      "grad_explosion: ...(a lone spike the run absorbs is info)")
      ->check(positive);
  add("--grad-explosion-loss-response", o.grad_explosion.loss_response,
      "grad_explosion: or critical when the loss reaches this x its median at or after a spike")
      ->check(CLI::Range(1.0, 1e9));

  add("--loss-spike-window", o.loss_spike.window, "loss_spike: baseline steps (OLMo-core uses 128)")
      ->check(positive);
  add("--loss-spike-min-history", o.loss_spike.min_history,
      "loss_spike: baseline steps before it judges")
      ->check(positive);
  add("--loss-spike-sigmas", o.loss_spike.sigmas,
      "loss_spike: loss above mean + this many standard deviations (OLMo-core: 6)...")
      ->check(positive);
  add("--loss-spike-min-ratio", o.loss_spike.min_ratio,
      "loss_spike: ...and above this x the median (so a flat curve's wobble does not fire)")
      ->check(CLI::Range(1.0, 1e9));

  add("--loss-spike-micro-se", o.loss_spike.micro_se_multiple,
      "loss_spike: the jump must exceed this many standard errors of the step's own micro-batch "
      "spread")
      ->check(CLI::NonNegativeNumber);
  add("--loss-spike-persist-k", o.loss_spike.persist_k,
      "loss_spike: warning when this many of the last --loss-spike-persist-n steps spiked")
      ->check(positive);
  add("--loss-spike-persist-n", o.loss_spike.persist_n, "loss_spike: see --loss-spike-persist-k")
      ->check(positive);
  add("--loss-spike-sustain-k", o.loss_spike.sustain_k,
      "loss_spike: critical when this many of the last --loss-spike-sustain-n steps spiked")
      ->check(positive);
  add("--loss-spike-sustain-n", o.loss_spike.sustain_n, "loss_spike: see --loss-spike-sustain-k")
      ->check(positive);

  add("--vanishing-grad-confirm-steps", o.vanishing_grad.confirm_steps,
      "vanishing_grad: consecutive steps with no gradient before it fires")
      ->check(positive);
  add("--vanishing-grad-window", o.vanishing_grad.window,
      "vanishing_grad: healthy steps in the grad_norm baseline")
      ->check(positive);
  add("--vanishing-grad-min-history", o.vanishing_grad.min_history,
      "vanishing_grad: baseline steps before a collapse (not only zero) is judged")
      ->check(positive);
  add("--vanishing-grad-collapse-factor", o.vanishing_grad.collapse_factor,
      "vanishing_grad: grad_norm below this x its median counts as collapsed")
      ->check(fraction);

  add("--rank-divergence-grad-tolerance", o.rank_divergence.grad_tolerance,
      "rank_divergence: ranks' grad_norm may differ by this fraction (float reduction order)")
      ->check(fraction);
  add("--rank-divergence-window", o.rank_divergence.imbalance_window,
      "rank_divergence: steps over which token and loss imbalance are judged")
      ->check(positive);
  add("--rank-divergence-token-imbalance", o.rank_divergence.token_imbalance,
      "rank_divergence: info when one rank has this x the label tokens of another")
      ->check(CLI::Range(1.0, 1e9));
  add("--rank-divergence-loss-imbalance", o.rank_divergence.loss_imbalance,
      "rank_divergence: info when one rank's mean loss is this x another's")
      ->check(CLI::Range(1.0, 1e9));
  add("--link-steps", o.link_steps,
      "an alert starting within this many steps of another's onset (or of an explosion's last "
      "firing step) is its symptom: caused_by, severity info")
      ->check(CLI::NonNegativeNumber);
}

Status CheckAnalyzerOptions(const analyzers::AnalyzerOptions& o) {
  auto never = [](const std::string& history, std::size_t h, const std::string& window,
                  std::size_t w) {
    if (h <= w) return Status::Ok();
    return Status::Error("--" + history + " " + std::to_string(h) + " exceeds --" + window + " " +
                         std::to_string(w) + ": the detector could never judge");
  };
  for (const Status& check :
       {never("grad-explosion-min-history", o.grad_explosion.min_history, "grad-explosion-window",
              o.grad_explosion.window),
        never("loss-spike-min-history", o.loss_spike.min_history, "loss-spike-window",
              o.loss_spike.window),
        never("vanishing-grad-min-history", o.vanishing_grad.min_history, "vanishing-grad-window",
              o.vanishing_grad.window),
        never("token-weighting-min-informative", o.token_weighting.min_informative,
              "token-weighting-window", o.token_weighting.window),
        never("grad-explosion-persist-k", static_cast<std::size_t>(o.grad_explosion.persist_k),
              "grad-explosion-persist-n", o.grad_explosion.persist_n),
        never("loss-spike-persist-k", static_cast<std::size_t>(o.loss_spike.persist_k),
              "loss-spike-persist-n", o.loss_spike.persist_n),
        never("loss-spike-sustain-k", static_cast<std::size_t>(o.loss_spike.sustain_k),
              "loss-spike-sustain-n", o.loss_spike.sustain_n)}) {
    if (!check) return check;
  }
  return Status::Ok();
}

}  // namespace lossguard
