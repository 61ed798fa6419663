#pragma once

#include <cmath>
#include <optional>

#include "lossguard/wire/step_record.h"

namespace lossguard::analyzers {

// The two ways of averaging a step's micro-batch losses on one rank.

// Token-weighted: sum of token losses / label tokens (the correct normalisation). nullopt without
// tokens or when the sum is not finite and positive.
inline std::optional<double> TokenWeightedMicroMean(const wire::StepRecord& r) {
  double sum = 0;
  double tokens = 0;  // a double: 65,536 micro-batches of up to 2^53-1 tokens overflow int64
  for (const wire::MicroBatch& mb : r.micro) {
    sum += mb.loss_sum ? *mb.loss_sum : mb.loss * static_cast<double>(mb.tokens);
    tokens += static_cast<double>(mb.tokens);
  }
  if (tokens <= 0 || !std::isfinite(sum) || sum <= 0) return std::nullopt;
  return sum / tokens;
}

// Unweighted mean of the micro-batch means (what transformers reported before its GA fix), when at
// least two micro-batches have tokens.
inline std::optional<double> MeanOfMicroMeans(const wire::StepRecord& r) {
  double sum = 0;
  int n = 0;
  for (const wire::MicroBatch& mb : r.micro) {
    if (mb.tokens <= 0 || !std::isfinite(mb.loss)) continue;
    sum += mb.loss;
    ++n;
  }
  if (n < 2) return std::nullopt;
  return sum / n;
}

}  // namespace lossguard::analyzers
