#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "lossguard/wire/step_record.h"

namespace lossguard::wire {

// What a trainer's guard did at a step because of a verdict: the record's optional "guard" field
// (schema/step-record.schema.json). A server that predates it keeps it among the record's unknown
// fields; one that knows it validates it (ParseRecord) and indexes it for the alerts it concerns.
inline constexpr std::array<std::string_view, 5> kGuardActionNames = {
    "warn", "lower_lr", "skip_step", "rollback", "stop"};

struct GuardAction {
  std::string action;           // one of kGuardActionNames
  std::string kind;             // the alert kind acted on ("nonfinite", "loss_scale_mismatch", ...)
  std::string severity;         // "warning" | "critical"
  std::string source;           // "local": judged by the collector on the step; "server": a verdict
  std::int64_t first_step = 0;  // where the episode acted on began
  std::optional<std::int64_t> episode;       // the server's alert id (server verdicts)
  std::optional<std::int64_t> seen_through;  // the server had judged the run up to this step
  std::optional<std::int64_t> rollback_to;   // rollback: the checkpoint's step
  std::optional<double> lr_factor;           // lower_lr: the learning rate was multiplied by this
  std::string message;                       // one line for people
};

// The "guard" field's value.
nlohmann::json ToJson(const GuardAction& action);
// The record's guard action, nullopt without one. The record must have passed ParseRecord (which
// validates the field); a record built in code with a malformed one throws std::invalid_argument.
std::optional<GuardAction> GuardActionOf(const StepRecord& record);

}  // namespace lossguard::wire
