#include "support/records.h"

namespace lossguard::testing {

wire::StepRecord MakeRecord(const std::string& run, std::int64_t step, double loss,
                            std::int64_t rank, std::int64_t world_size) {
  wire::StepRecord r;
  r.run = run;
  r.step = step;
  r.rank = rank;
  r.world_size = world_size;
  r.ga_steps = 4;
  r.micro_batch_size = 2;
  r.loss = loss;
  return r;
}

}  // namespace lossguard::testing
