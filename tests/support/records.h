#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lossguard/wire/step_record.h"

namespace lossguard::testing {

// The tests' one record builder: a valid record with the required fields set (ga_steps 4,
// micro_batch_size 2, no optional fields); tests change what they need.
wire::StepRecord MakeRecord(const std::string& run, std::int64_t step, double loss = 2.0,
                            std::int64_t rank = 0, std::int64_t world_size = 1);

// Records of steps [first, first + count), every rank of `world_size` at each step, in (step, rank)
// order (as MakeRecord makes them); the loss is `loss` at step 0 and moves by `per_step` a step.
std::vector<wire::StepRecord> MakeSteps(const std::string& run, std::int64_t first,
                                        std::int64_t count, double loss = 2.0,
                                        double per_step = 0.001, std::int64_t world_size = 1);

// A number of a record's JSON: the value, or NaN where the record carries a non-finite value as a
// string ("NaN", "Infinity", "-Infinity"); tests that read it only ask whether it is finite.
inline double JsonNumber(const nlohmann::json& value) {
  return value.is_string() ? std::nan("") : value.get<double>();
}

}  // namespace lossguard::testing
