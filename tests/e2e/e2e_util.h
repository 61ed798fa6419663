#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace lossguard::testing {

// A valid v1 record as JSON; tests add what they need.
inline nlohmann::json RecordJson(const std::string& run, std::int64_t step, double loss = 2.0) {
  return {{"run", run},   {"step", step},  {"ga_steps", 4}, {"micro_batch_size", 2},
          {"loss", loss}, {"tokens", 1000}};
}

// NDJSON of steps [first, first + count) of one run.
inline std::string NdjsonSteps(const std::string& run, std::int64_t first, std::int64_t count) {
  std::string out;
  for (std::int64_t step = first; step < first + count; ++step) {
    out += RecordJson(run, step, 2.0 + 1.0 / static_cast<double>(step + 1)).dump();
    out += '\n';
  }
  return out;
}

}  // namespace lossguard::testing
