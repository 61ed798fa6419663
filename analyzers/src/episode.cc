#include "lossguard/analyzers/episode.h"

namespace lossguard::analyzers {

std::string CauseNote(const nlohmann::json& caused_by) {
  return " (a symptom of the " + caused_by.value("kind", std::string("?")) + " episode from step " +
         std::to_string(caused_by.value("first_step", std::int64_t{0})) + ")";
}

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
    // The message says what happened at the episode's first step, where a reader starts looking;
    // the evidence is the latest step's, with that step's own message.
    if (!open_) first_message_ = finding->message;
    message_ = first_message_ + finding->cause_note;
    evidence_ = finding->evidence;
    // When the episode reached its severity: an isolated spike that escalates says when it did.
    evidence_["severity_since"] = severity_since_;
    last_firing_step_ = step;
    if (!open_) {
      open_ = opened_ = true;
      first_step_ = step;
      return Event(AlertEvent::Action::kOpen);
    }
    evidence_["latest_step"] = step;
    evidence_["latest_message"] = finding->message + finding->cause_note;
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
  message_ = first_message_ = e.message;
  evidence_ = e.evidence;
  if (auto cause = e.evidence.find("caused_by"); cause != e.evidence.end()) {
    if (const std::string note = CauseNote(*cause); first_message_.ends_with(note)) {
      first_message_.resize(first_message_.size() - note.size());
    }
  }
  severity_since_ = e.evidence.value("severity_since", e.first_step);
  last_judged_ = last_judged;
  clear_steps_ = clear_steps;
}

}  // namespace lossguard::analyzers
