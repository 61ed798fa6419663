#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace lossguard::wire {

// Bounds of wire format v1's integers (schema/step-record.schema.json states the same).
// Counts (step, tokens, nonfinite_grads): at most 2^53-1, the largest integer a double and
// JavaScript (the dashboard) hold exactly, and far enough from int64's end that step arithmetic
// cannot overflow. Sizes (world_size, ga_steps, micro_batch_size, vocab_size): at most 2^31-1.
inline constexpr std::int64_t kMaxCount = (std::int64_t{1} << 53) - 1;
inline constexpr std::int64_t kMaxSize = (std::int64_t{1} << 31) - 1;

// One micro-batch of an optimizer step, as seen by one rank.
struct MicroBatch {
  double loss = 0;                 // mean token loss of this micro-batch; may be non-finite
  std::int64_t tokens = 0;         // label tokens (not ignore_index), >= 0
  std::optional<double> loss_sum;  // sum of token losses; may be non-finite
};

// One optimizer step on one data-parallel rank: the unit of wire format v1
// (schema/step-record.schema.json). (run, step, rank) is its identity.
//
// Floating-point fields keep non-finite values (NaN, +-Inf) as they are: a NaN loss is a finding.
struct StepRecord {
  std::string run;
  std::int64_t step = 0;
  std::int64_t rank = 0;
  std::int64_t world_size = 1;
  std::int64_t ga_steps = 1;
  std::int64_t micro_batch_size = 1;
  double loss = 0;
  std::optional<double> grad_norm;
  std::optional<std::int64_t> tokens;
  std::optional<std::int64_t> vocab_size;
  std::optional<double> lr;
  std::optional<double> ref_loss;
  std::vector<MicroBatch> micro;
  std::optional<std::int64_t> nonfinite_grads;
  std::optional<double> time;
  // Fields this version does not know, kept verbatim for forward compatibility. Always an object.
  nlohmann::json extra = nlohmann::json::object();
};

// The canonical JSON text of a record: keys sorted, defaults written out, non-finite numbers as the
// strings "NaN", "Infinity", "-Infinity", unknown fields included. Two records are the same record
// exactly when their canonical texts are equal.
std::string CanonicalJson(const StepRecord& record);

// The record as a JSON object in the same canonical form.
nlohmann::json ToJson(const StepRecord& record);

}  // namespace lossguard::wire
