#include "lossguard/collector/guard.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <vector>

namespace lossguard::collector {

namespace {
using analyzers::Kind;
using analyzers::Severity;

// A server episode begins a few steps after the step the guard acted on locally (the server
// confirms over several steps, and judges a step once its ranks are in): within this many steps it
// is the same trouble, already handled.
constexpr std::int64_t kLocalActionSlack = 8;

std::string Number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return text;
}
}  // namespace

Guard::Guard(GuardOptions options) : options_(std::move(options)) {
  if (!options_.warn())
    options_.warn([](std::string_view line) { std::cerr << line << std::endl; });
  if (options_.loss_scale_confirm_steps() < 1 || options_.clear_steps() < 1)
    throw std::invalid_argument("guard: loss_scale_confirm_steps and clear_steps must be >= 1");
  if (!(options_.loss_scale_tolerance() > 0))
    throw std::invalid_argument("guard: loss_scale_tolerance must be > 0");
}

void Guard::Checkpointed(std::int64_t step) { checkpoints_.insert(step); }
void Guard::CheckpointRemoved(std::int64_t step) { checkpoints_.erase(step); }

void Guard::Observe(LocalEpisode& episode, bool condition, std::int64_t step,
                    std::int64_t confirm) {
  if (condition) {
    if (episode.run == 0) episode.first_step = step;
    ++episode.run;
    episode.clear = 0;
    if (!episode.open_since && episode.run >= confirm) episode.open_since = episode.first_step;
    return;
  }
  episode.run = 0;
  if (episode.open_since && ++episode.clear >= options_.clear_steps()) {
    episode.open_since.reset();
    episode.clear = 0;
  }
}

void Guard::LocalVerdicts(std::int64_t step, const StepSignals& signals,
                          std::vector<Verdict>& out) {
  const bool nonfinite_loss = !std::isfinite(signals.loss);
  const bool nonfinite_norm = signals.grad_norm && !std::isfinite(*signals.grad_norm);
  const bool nonfinite_grads = signals.nonfinite_grads && *signals.nonfinite_grads > 0;
  const bool nonfinite = nonfinite_loss || nonfinite_norm || nonfinite_grads;
  const bool new_nonfinite = nonfinite && !nonfinite_.open_since;
  Observe(nonfinite_, nonfinite, step, 1);
  if (nonfinite) {
    // Every such step is judged (a skip_step policy skips each one); a warning is given once an
    // episode.
    std::string what = nonfinite_loss
                           ? "the loss is " + Number(signals.loss)
                           : (nonfinite_norm ? "the gradient norm is " + Number(*signals.grad_norm)
                                             : std::to_string(*signals.nonfinite_grads) +
                                                   " gradient elements are non-finite");
    out.push_back(Verdict{Kind::kNonFinite, Severity::kCritical, step, std::nullopt, std::nullopt,
                          std::move(what), !new_nonfinite});
  }

  if (signals.ref_loss && std::isfinite(*signals.ref_loss) && *signals.ref_loss > 0 &&
      std::isfinite(signals.loss)) {
    const double factor = signals.loss / *signals.ref_loss;
    const bool mismatch = std::abs(factor - 1) > options_.loss_scale_tolerance();
    Observe(loss_scale_, mismatch, step, options_.loss_scale_confirm_steps());
    if (!loss_scale_.open_since) loss_scale_acted_ = false;
    if (loss_scale_.open_since && mismatch && !loss_scale_acted_) {
      loss_scale_acted_ = true;
      out.push_back(Verdict{Kind::kLossScaleMismatch, Severity::kCritical, *loss_scale_.open_since,
                            std::nullopt, std::nullopt,
                            "the loss is " + Number(factor) + "x the token-normalised loss " +
                                Number(*signals.ref_loss),
                            false});
    }
  }
}

void Guard::ServerVerdicts(const client::RunVerdicts& server, std::vector<Verdict>& out) {
  for (const client::OpenEpisode& episode : server.open) {
    const std::optional<Kind> kind = analyzers::ParseKind(episode.kind);
    const std::optional<Severity> severity = analyzers::ParseSeverity(episode.severity);
    // A kind this build does not know (a newer server) has no rule but "*"'s; it is skipped rather
    // than guessed at.
    if (!kind || !severity || *severity == Severity::kInfo || episode.acked) continue;
    if (first_step_ && episode.last_step < *first_step_) continue;  // over before this guard
    auto acted = acted_episodes_.find(episode.id);
    if (acted != acted_episodes_.end() && acted->second >= *severity) continue;
    auto local = last_local_action_.find(*kind);
    if (local != last_local_action_.end() &&
        local->second + kLocalActionSlack >= episode.first_step) {
      acted_episodes_[episode.id] = *severity;  // the same trouble, acted on at its step
      continue;
    }
    out.push_back(Verdict{*kind, *severity, episode.first_step, episode.id, server.through_step,
                          episode.message, false});
  }
}

GuardDecision Guard::Decide(const Verdict& verdict) const {
  GuardDecision decision;
  const GuardRule* rule = options_.policy().RuleFor(verdict.kind, verdict.severity);
  if (rule == nullptr && verdict.severity < Severity::kCritical) return decision;  // not acted on
  decision.response = rule ? rule->response : GuardResponse::kWarn;
  if (decision.response == GuardResponse::kWarn && verdict.repeat) return decision;
  if (decision.response == GuardResponse::kLowerLr) decision.lr_factor = rule->lr_factor;
  wire::GuardAction action;
  action.kind = std::string(analyzers::KindName(verdict.kind));
  action.severity = std::string(analyzers::SeverityName(verdict.severity));
  action.source = verdict.episode ? "server" : "local";
  action.first_step = verdict.first_step;
  action.episode = verdict.episode;
  action.seen_through = verdict.seen_through;
  action.message = verdict.what;
  decision.action = std::move(action);
  return decision;
}

GuardDecision Guard::Bound(GuardDecision decision, const Verdict& verdict, std::string& why) {
  const GuardPolicy& policy = options_.policy();
  switch (decision.response) {
    case GuardResponse::kRollback: {
      auto after = checkpoints_.lower_bound(verdict.first_step);
      if (stats_.rollbacks >= policy.max_rollbacks) {
        decision.response = GuardResponse::kStop;
        why = "rolled back " + std::to_string(stats_.rollbacks) + " times already (max_rollbacks)";
      } else if (after == checkpoints_.begin()) {
        decision.response = GuardResponse::kStop;
        why = "no checkpoint before step " + std::to_string(verdict.first_step);
      } else {
        decision.rollback_to = *std::prev(after);
        ++stats_.rollbacks;
        // Checkpoints after the target were taken on the way into the trouble.
        checkpoints_.erase(after, checkpoints_.end());
        nonfinite_ = {};
        loss_scale_ = {};
        loss_scale_acted_ = false;
      }
      break;
    }
    case GuardResponse::kLowerLr:
      if (stats_.lr_lowerings >= policy.max_lr_lowerings) {
        decision.response = GuardResponse::kWarn;
        decision.lr_factor = 1;
        why = "the learning rate was lowered " + std::to_string(stats_.lr_lowerings) +
              " times already (max_lr_lowerings)";
      } else {
        ++stats_.lr_lowerings;
        stats_.lr_scale *= decision.lr_factor;
      }
      break;
    case GuardResponse::kSkipStep:
      if (stats_.consecutive_skips >= policy.max_consecutive_skips) {
        decision.response = GuardResponse::kStop;
        why = std::to_string(stats_.consecutive_skips) +
              " steps in a row skipped already (max_consecutive_skips)";
      }
      break;
    case GuardResponse::kWarn:
    case GuardResponse::kStop:
      break;
  }
  return decision;
}

GuardDecision Guard::Check(std::int64_t step, const StepSignals& signals,
                           const client::RunVerdicts* server) {
  if (!first_step_) first_step_ = step;
  std::vector<Verdict> verdicts;
  if (options_.policy().local_checks) LocalVerdicts(step, signals, verdicts);
  if (server) ServerVerdicts(*server, verdicts);

  GuardDecision best;
  const Verdict* chosen = nullptr;
  for (const Verdict& verdict : verdicts) {
    GuardDecision decision = Decide(verdict);
    if (decision.action && (!best.action || decision.response > best.response)) {
      best = std::move(decision);
      chosen = &verdict;
    }
  }
  // Every verdict of the step is handled by the strongest response (a weaker one is subsumed).
  for (const Verdict& verdict : verdicts) {
    if (verdict.episode) {
      acted_episodes_[*verdict.episode] = verdict.severity;
    } else {
      last_local_action_[verdict.kind] = step;
    }
  }
  if (chosen == nullptr) {
    stats_.consecutive_skips = 0;
    return best;
  }
  std::string why;
  best = Bound(std::move(best), *chosen, why);
  stats_.consecutive_skips =
      best.response == GuardResponse::kSkipStep ? stats_.consecutive_skips + 1 : 0;
  ++stats_.responses[best.response];

  wire::GuardAction& action = *best.action;
  action.action = std::string(GuardResponseName(best.response));
  if (best.rollback_to) action.rollback_to = best.rollback_to;
  if (best.response == GuardResponse::kLowerLr) action.lr_factor = best.lr_factor;
  std::string line =
      "lossguard guard: step " + std::to_string(step) + ": " + action.severity + " " + action.kind +
      " since step " + std::to_string(action.first_step) + " (" +
      (chosen->episode ? "server episode " + std::to_string(*chosen->episode) +
                             ", judged through step " + std::to_string(*chosen->seen_through)
                       : std::string("judged on this step")) +
      "): " + action.message + " -> " + action.action;
  if (best.rollback_to) line += " to the checkpoint of step " + std::to_string(*best.rollback_to);
  if (best.response == GuardResponse::kLowerLr)
    line += " (x" + Number(best.lr_factor) + ", now x" + Number(stats_.lr_scale) + ")";
  if (!why.empty()) line += " (" + why + ")";
  if (verdicts.size() > 1) line += "; " + std::to_string(verdicts.size() - 1) + " more verdict(s)";
  options_.warn()(line);
  action.message = line.substr(line.find(": ", line.find("step")) + 2);
  if (action.message.size() > 1000) action.message.resize(1000);
  return best;
}

}  // namespace lossguard::collector
