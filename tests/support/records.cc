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

std::vector<wire::StepRecord> MakeSteps(const std::string& run, std::int64_t first,
                                        std::int64_t count, double loss, double per_step,
                                        std::int64_t world_size) {
  std::vector<wire::StepRecord> out;
  for (std::int64_t step = first; step < first + count; ++step) {
    for (std::int64_t rank = 0; rank < world_size; ++rank) {
      out.push_back(
          MakeRecord(run, step, loss + per_step * static_cast<double>(step), rank, world_size));
    }
  }
  return out;
}

}  // namespace lossguard::testing
