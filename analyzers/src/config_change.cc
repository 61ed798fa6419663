#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

RunConfig ConfigOf(const wire::StepRecord& r) {
  return RunConfig{r.ga_steps, r.micro_batch_size, r.world_size};
}

std::optional<Finding> ConfigChangeDetector::Observe(const wire::StepRecord& r) {
  const RunConfig now = ConfigOf(r);
  if (!current_ || *current_ == now) {
    current_ = now;
    return std::nullopt;
  }
  before_ = *current_;
  current_ = now;
  std::string changes;
  nlohmann::json evidence = nlohmann::json::object();
  auto compare = [&](const char* name, std::int64_t was, std::int64_t is) {
    if (was == is) return;
    changes += (changes.empty() ? "" : ", ") + std::string(name) + " " + std::to_string(was) +
               " -> " + std::to_string(is);
    evidence[name] = {{"before", was}, {"after", is}};
  };
  compare("ga_steps", before_.ga_steps, now.ga_steps);
  compare("micro_batch_size", before_.micro_batch_size, now.micro_batch_size);
  compare("world_size", before_.world_size, now.world_size);
  return Finding{Severity::kInfo,
                 "configuration changed at step " + std::to_string(r.step) + ": " + changes,
                 evidence};
}

}  // namespace lossguard::analyzers
