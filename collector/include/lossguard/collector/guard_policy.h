#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lossguard/analyzers/alert_kind.h"

namespace lossguard::collector {

// What the trainer does about a verdict, weakest first (when several verdicts arrive at one step,
// the strongest response wins). The names are wire::kGuardActionNames.
enum class GuardResponse : std::uint8_t {
  kWarn,      // a line in the trainer's log; training goes on (the default)
  kLowerLr,   // multiply the learning rate by the rule's factor from this step on
  kSkipStep,  // do not step the optimizer on this step's gradients
  kRollback,  // restore the last checkpoint before the episode began; go on with later data
  kStop,      // save a checkpoint, flush, exit with kGuardStopExitCode
};
std::string_view GuardResponseName(GuardResponse response);

// The exit status of a trainer the guard stopped (the demo trainers use it; so can yours): distinct
// from a crash (1) and a usage error (2), so that a scheduler can tell "stopped on purpose".
inline constexpr int kGuardStopExitCode = 3;

// One rule: verdicts of `kind` (every kind when nullopt, spelled "*") at `at_least` severity or
// above get `response`.
struct GuardRule {
  std::optional<analyzers::Kind> kind;
  analyzers::Severity at_least = analyzers::Severity::kCritical;
  GuardResponse response = GuardResponse::kWarn;
  double lr_factor = 0.5;  // kLowerLr: in (0, 1)
};

// Which response each verdict gets, and the bounds on the responses that change training. The one
// configuration format of the guard, for the C++ flag, the Python dict and TOML alike:
//
//   loss_scale_mismatch=stop, nonfinite=skip_step, grad_explosion:warning=lower_lr:0.5,
//   loss_spike=rollback, *=warn, max_rollbacks=2
//
// An entry is KIND[:SEVERITY]=RESPONSE[:FACTOR]: KIND an alert kind or "*", SEVERITY "warning" or
// "critical" (default critical: the rule applies from that severity up), RESPONSE one of warn,
// lower_lr, skip_step, rollback, stop; FACTOR only for lower_lr (default 0.5). Bounds:
// max_rollbacks (default 3; one more rollback is a stop), max_lr_lowerings (default 3; more are
// warnings), max_consecutive_skips (default 10; one more skip is a stop: a run that cannot take a
// step is not training); local=off leaves the step's own signals to the server (the guard then acts
// on server verdicts only: for measuring them, or for a trainer whose loss is known to differ from
// its reference by design). Without a rule, a critical verdict is warned about and a warning is
// not.
struct GuardPolicy {
  std::vector<GuardRule> rules;
  std::int64_t max_rollbacks = 3;
  std::int64_t max_lr_lowerings = 3;
  std::int64_t max_consecutive_skips = 10;
  bool local_checks = true;

  // Throws std::invalid_argument naming the entry and what was expected.
  static GuardPolicy Parse(std::string_view spec);
  // The rule for a verdict: of the rules it reaches (severity >= at_least), one for its kind
  // before a "*" one, the one with the highest at_least first. nullptr for none.
  const GuardRule* RuleFor(analyzers::Kind kind, analyzers::Severity severity) const;
  // Parse's format, bounds last; Parse(ToString()) gives the same policy.
  std::string ToString() const;
  // Whether any rule asks for more than a warning.
  bool Acts() const;
};

}  // namespace lossguard::collector
