#include <cmath>

#include "lossguard/analyzers/detectors.h"
#include "lossguard/wire/json_numbers.h"

namespace lossguard::analyzers {

std::optional<Finding> NonFiniteDetector::Observe(const wire::StepRecord& r) {
  auto finite = [](std::optional<double> v) { return !v || std::isfinite(*v); };
  if (std::isfinite(r.loss) && finite(r.ref_loss) && finite(r.grad_norm) &&
      (!r.nonfinite_grads || *r.nonfinite_grads == 0)) {
    return std::nullopt;  // the common case, without building anything
  }
  std::string what;
  nlohmann::json evidence = nlohmann::json::object();
  auto check = [&](const char* name, std::optional<double> value) {
    if (value && !std::isfinite(*value)) {
      what += (what.empty() ? "" : ", ") + std::string(name) + " is " +
              wire::NumberToJson(*value).get<std::string>();
      evidence[name] = wire::NumberToJson(*value);
    }
  };
  check("loss", r.loss);
  check("ref_loss", r.ref_loss);
  check("grad_norm", r.grad_norm);
  if (r.nonfinite_grads && *r.nonfinite_grads > 0) {
    what += (what.empty() ? "" : ", ") + std::to_string(*r.nonfinite_grads) +
            " gradient elements are NaN/Inf";
    evidence["nonfinite_grads"] = *r.nonfinite_grads;
  }
  if (what.empty()) return std::nullopt;
  return Finding{Severity::kCritical,
                 "non-finite values at step " + std::to_string(r.step) + ": " + what, evidence};
}

}  // namespace lossguard::analyzers
