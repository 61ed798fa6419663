#pragma once

#include <cstdint>
#include <string>

#include "lossguard/wire/step_record.h"

namespace lossguard::testing {

// The tests' one record builder: a valid record with the required fields set (ga_steps 4,
// micro_batch_size 2, no optional fields); tests change what they need.
wire::StepRecord MakeRecord(const std::string& run, std::int64_t step, double loss = 2.0,
                            std::int64_t rank = 0, std::int64_t world_size = 1);

}  // namespace lossguard::testing
