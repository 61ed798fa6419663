#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "lossguard/analyzers/alert_kind.h"

namespace lossguard::analyzers {

// What a detector concluded about one step: the condition holds, with why and the numbers behind
// it.
struct Finding {
  Severity severity = Severity::kWarning;
  std::string message;
  nlohmann::json evidence = nlohmann::json::object();
  // A symptom of another episode (evidence.caused_by names it): its severity is as given, not
  // escalated to the episode's highest so far, and its episode's message ends with cause_note.
  bool caused = false;
  std::string cause_note;
};

// " (a symptom of the KIND episode from step N)", from evidence.caused_by.
std::string CauseNote(const nlohmann::json& caused_by);

// A change to an alert episode, for the store to apply.
struct AlertEvent {
  enum class Action {
    kOpen,     // a new episode starts at first_step
    kExtend,   // the open episode now reaches last_step (message and evidence updated)
    kResolve,  // the condition has been clear long enough; last_step is its last firing step
  };
  Action action = Action::kOpen;
  Kind kind = Kind::kNonFinite;
  Severity severity = Severity::kWarning;
  std::optional<std::int64_t> rank;  // nullopt: judged across ranks
  std::int64_t first_step = 0;
  std::int64_t last_step = 0;
  std::string message;
  nlohmann::json evidence = nlohmann::json::object();
  // Which judgement of the run's steps: 0, and one more each time re-sent steps were judged anew
  // (RunAnalyzer::Supersede). Part of the episode's key.
  std::int64_t attempt = 0;
};

}  // namespace lossguard::analyzers
