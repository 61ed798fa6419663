#include "lossguard/analyzers/episode.h"

namespace lossguard::analyzers {

std::optional<AlertEvent> Episode::Judge(std::int64_t step, const std::optional<Finding>& finding) {
  if (last_judged_ && step <= *last_judged_) return std::nullopt;
  last_judged_ = step;
  auto event = [&](AlertEvent::Action action) {
    return AlertEvent{action,   kind_,    severity_, rank_, first_step_, last_firing_step_,
                      message_, evidence_};
  };
  if (finding) {
    clear_steps_ = 0;
    severity_ =
        open_ && !finding->caused ? std::max(severity_, finding->severity) : finding->severity;
    message_ = finding->message;
    evidence_ = finding->evidence;
    last_firing_step_ = step;
    if (!open_) {
      open_ = opened_ = true;
      first_step_ = step;
      return event(AlertEvent::Action::kOpen);
    }
    return event(AlertEvent::Action::kExtend);
  }
  if (!open_) return std::nullopt;
  if (++clear_steps_ < resolve_after_) return std::nullopt;
  open_ = false;
  return event(AlertEvent::Action::kResolve);
}

void Episode::Restore(const AlertEvent& e, std::int64_t last_judged, std::int64_t clear_steps) {
  open_ = opened_ = true;
  first_step_ = e.first_step;
  last_firing_step_ = e.last_step;
  severity_ = e.severity;
  message_ = e.message;
  evidence_ = e.evidence;
  last_judged_ = last_judged;
  clear_steps_ = clear_steps;
}

}  // namespace lossguard::analyzers
