#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lossguard/analyzers/alert_event.h"

namespace lossguard::analyzers {

// Turns per-step findings of one kind (for one rank, or across ranks) into alert episodes: an
// episode opens at the first firing step (its message stays that step's: what happened first),
// extends while the condition holds (the evidence is the latest step's, with latest_step and
// latest_message), resolves once it has been clear for `resolve_after` consecutive judged steps,
// and a later firing opens a new one.
// Steps must be fed in increasing order; a step at or before the last one judged is ignored
// (duplicates and late records cannot reopen or extend the past).
class Episode {
 public:
  Episode(Kind kind, std::optional<std::int64_t> rank, std::int64_t resolve_after,
          std::int64_t attempt = 0)
      : kind_(kind), rank_(rank), resolve_after_(resolve_after), attempt_(attempt) {}

  // The event this judgement causes, if any.
  std::optional<AlertEvent> Judge(std::int64_t step, const std::optional<Finding>& finding);

  bool open() const { return open_; }
  // Ends an open episode because the steps from `step` on are judged anew (their records were
  // replaced): its resolve event, saying so; nullopt when none is open.
  std::optional<AlertEvent> Supersede(std::int64_t step);
  // The latest episode's first and last firing step and evidence, open or resolved; nullopt before
  // the first one opened.
  struct Span {
    std::int64_t first_step, last_step;
    const nlohmann::json* evidence;
  };
  std::optional<Span> latest() const {
    if (!opened_) return std::nullopt;
    return Span{first_step_, last_firing_step_, &evidence_};
  }

  // Continues an episode that was open before a restart (from the stored alert), as if the steps
  // up to last_judged had been judged here, clear_steps of them clear since its last firing.
  void Restore(const AlertEvent& open_episode, std::int64_t last_judged, std::int64_t clear_steps);

 private:
  // The episode's current state as an event of `action`.
  AlertEvent Event(AlertEvent::Action action) const;

  Kind kind_;
  std::optional<std::int64_t> rank_;
  std::int64_t resolve_after_;
  std::int64_t attempt_;
  bool open_ = false;
  bool opened_ = false;  // an episode has opened (and may have resolved since)
  std::int64_t first_step_ = 0;
  std::int64_t last_firing_step_ = 0;
  std::int64_t severity_since_ = 0;  // the step the episode reached its current severity
  std::int64_t clear_steps_ = 0;
  std::optional<std::int64_t> last_judged_;
  Severity severity_ = Severity::kWarning;
  std::string first_message_;  // the first firing step's, without a cause note
  std::string message_;
  nlohmann::json evidence_;
};

}  // namespace lossguard::analyzers
