#include "lossguard/wire/guard_action.h"

#include <stdexcept>

#include "lossguard/wire/record_codec.h"

namespace lossguard::wire {

nlohmann::json ToJson(const GuardAction& action) {
  nlohmann::json out = {{"action", action.action},         {"kind", action.kind},
                        {"severity", action.severity},     {"source", action.source},
                        {"first_step", action.first_step}, {"message", action.message}};
  if (action.episode) out["episode"] = *action.episode;
  if (action.seen_through) out["seen_through"] = *action.seen_through;
  if (action.rollback_to) out["rollback_to"] = *action.rollback_to;
  if (action.lr_factor) out["lr_factor"] = *action.lr_factor;
  return out;
}

std::optional<GuardAction> GuardActionOf(const StepRecord& record) {
  auto found = record.extra.find("guard");
  if (found == record.extra.end() || found->is_null()) return std::nullopt;
  auto parsed = ParseGuardAction(*found);
  if (!parsed) throw std::invalid_argument(parsed.error().Describe());
  return parsed.value();
}

}  // namespace lossguard::wire
