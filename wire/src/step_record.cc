#include "lossguard/wire/step_record.h"

#include "lossguard/wire/json_numbers.h"

namespace lossguard::wire {

nlohmann::json ToJson(const StepRecord& record) {
  // Unknown fields first, so that a known field can never be shadowed by one of them.
  nlohmann::json out = record.extra.is_object() ? record.extra : nlohmann::json::object();
  out["run"] = record.run;
  out["step"] = record.step;
  out["rank"] = record.rank;
  out["world_size"] = record.world_size;
  out["ga_steps"] = record.ga_steps;
  out["micro_batch_size"] = record.micro_batch_size;
  out["loss"] = NumberToJson(record.loss);
  if (record.grad_norm) out["grad_norm"] = NumberToJson(*record.grad_norm);
  if (record.tokens) out["tokens"] = *record.tokens;
  if (record.vocab_size) out["vocab_size"] = *record.vocab_size;
  if (record.lr) out["lr"] = NumberToJson(*record.lr);
  if (record.ref_loss) out["ref_loss"] = NumberToJson(*record.ref_loss);
  if (!record.micro.empty()) {
    nlohmann::json micro = nlohmann::json::array();
    for (const MicroBatch& mb : record.micro) {
      nlohmann::json entry = {{"loss", NumberToJson(mb.loss)}, {"tokens", mb.tokens}};
      if (mb.loss_sum) entry["loss_sum"] = NumberToJson(*mb.loss_sum);
      micro.push_back(std::move(entry));
    }
    out["micro"] = std::move(micro);
  }
  if (record.nonfinite_grads) out["nonfinite_grads"] = *record.nonfinite_grads;
  if (record.time) out["time"] = *record.time;
  return out;
}

std::string CanonicalJson(const StepRecord& record) { return ToJson(record).dump(); }

}  // namespace lossguard::wire
