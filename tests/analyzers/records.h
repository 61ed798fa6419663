#pragma once

#include "lossguard/wire/step_record.h"

namespace lossguard::analyzers::testing {

// A minimal record of run "r": what a trainer without the collector sends.
inline wire::StepRecord Step(std::int64_t step, double loss, std::int64_t ga = 1,
                             std::int64_t world = 1, std::int64_t rank = 0) {
  wire::StepRecord r;
  r.run = "r";
  r.step = step;
  r.rank = rank;
  r.loss = loss;
  r.ga_steps = ga;
  r.world_size = world;
  r.micro_batch_size = 1;
  return r;
}

}  // namespace lossguard::analyzers::testing
