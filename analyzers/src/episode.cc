#include "lossguard/analyzers/episode.h"

namespace lossguard::analyzers {

AlertEvent Episode::Event(AlertEvent::Action action) const {
  return AlertEvent{action,   kind_,     severity_, rank_, first_step_, last_firing_step_,
                    message_, evidence_, attempt_};
}

std::optional<AlertEvent> Episode::Judge(std::int64_t step, const std::optional<Finding>& finding) {
  if (last_judged_ && step <= *last_judged_) return std::nullopt;
  last_judged_ = step;
  if (finding) {
    clear_steps_ = 0;
    const Severity before = severity_;
    severity_ =
        open_ && !finding->caused ? std::max(severity_, finding->severity) : finding->severity;
    if (!open_ || severity_ != before) severity_since_ = step;
    message_ = finding->message;
    evidence_ = finding->evidence;
    // When the episode reached its severity: an isolated spike that escalates says when it did.
    evidence_["severity_since"] = severity_since_;
    last_firing_step_ = step;
    if (!open_) {
      open_ = opened_ = true;
      first_step_ = step;
      return Event(AlertEvent::Action::kOpen);
    }
    return Event(AlertEvent::Action::kExtend);
  }
  if (!open_) return std::nullopt;
  if (++clear_steps_ < resolve_after_) return std::nullopt;
  open_ = false;
  return Event(AlertEvent::Action::kResolve);
}

std::optional<AlertEvent> Episode::Supersede(std::int64_t step) {
  if (!open_) return std::nullopt;
  open_ = false;
  message_ += " (superseded: steps from " + std::to_string(step) + " were sent again)";
  evidence_["superseded_from"] = step;
  return Event(AlertEvent::Action::kResolve);
}

void Episode::Restore(const AlertEvent& e, std::int64_t last_judged, std::int64_t clear_steps) {
  open_ = opened_ = true;
  first_step_ = e.first_step;
  last_firing_step_ = e.last_step;
  severity_ = e.severity;
  message_ = e.message;
  evidence_ = e.evidence;
  severity_since_ = e.evidence.value("severity_since", e.first_step);
  last_judged_ = last_judged;
  clear_steps_ = clear_steps;
}

}  // namespace lossguard::analyzers
