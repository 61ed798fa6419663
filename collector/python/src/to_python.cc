#include "to_python.h"

#include <string_view>
#include <utility>

namespace lossguard::python {

using namespace pybind11::literals;

std::string PythonNames(std::string message) {
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"LinearLoss()", "linear_loss()"},          {"Loss()", "loss()"},
      {"ReferenceLoss", "reference_loss()"},      {"NormaliseGradients()", "normalise_gradients()"},
      {"global_tokens()", "num_items"},           {"LinearCrossEntropy", "linear_cross_entropy"},
      {"CausalLmCrossEntropy", "causal_lm_loss"},
  };
  for (const auto& [cpp, python] : kNames) {
    for (std::size_t at = message.find(cpp); at != std::string::npos;
         at = message.find(cpp, at + python.size())) {
      message.replace(at, cpp.size(), python);
    }
  }
  return message;
}

pybind11::dict GuardDecisionDict(const collector::GuardDecision& decision) {
  pybind11::object action = pybind11::none();
  // Rare (a verdict acted on): through Python's json rather than a converter of our own.
  if (decision.action) {
    action = pybind11::module_::import("json").attr("loads")(wire::ToJson(*decision.action).dump());
  }
  pybind11::object rollback_to = pybind11::none();
  if (decision.rollback_to) rollback_to = pybind11::int_(*decision.rollback_to);
  return pybind11::dict("response"_a = std::string(collector::GuardResponseName(decision.response)),
                        "action"_a = action, "lr_factor"_a = decision.lr_factor,
                        "rollback_to"_a = rollback_to,
                        "step_optimizer"_a = decision.step_optimizer(), "stop"_a = decision.stop(),
                        "rollback"_a = decision.rollback());
}

pybind11::dict StreamStatsDict(const collector::StreamStats& s) {
  return pybind11::dict("submitted"_a = s.submitted, "delivered"_a = s.delivered,
                        "spooled"_a = s.spooled, "dropped"_a = s.dropped, "rejected"_a = s.rejected,
                        "failed_requests"_a = s.failed_requests, "spool_errors"_a = s.spool_errors);
}

}  // namespace lossguard::python
