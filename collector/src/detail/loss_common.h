#pragma once
// What the causal-LM losses share (CausalLmCrossEntropy, LinearCrossEntropy): argument checks with
// messages that name the value, the label shift, and the reductions. Private to the collector.

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lossguard/collector/loss.h"

namespace lossguard::collector::detail {

std::string Shape(const torch::Tensor& tensor);

// Throws DtypeError unless `labels` holds integers.
void RequireIntegerLabels(const torch::Tensor& labels);

// Throws std::invalid_argument for num_items < 0 or num_items with reduction kNone.
void CheckNumItems(const std::optional<std::int64_t>& num_items, Reduction reduction);

// The targets of a flattened [rows] prediction: `labels` [B, T] shifted by one position when
// `shift` (position t predicts labels[:, t+1]; the last position of each sequence predicts
// nothing), as they are otherwise.
struct Targets {
  torch::Tensor safe;   // [B*T] long: the target, 0 where ignored (a valid index for gathers)
  torch::Tensor valid;  // [B*T] bool: not ignore_index
};

// Checks that every label that is not ignore_index lies in [0, vocab) and throws
// std::invalid_argument naming the first one that does not. On the CPU the check reads the labels;
// on another device it is an asynchronous device-side assertion (no host synchronisation: a bad
// label fails the next synchronising call with a generic message).
Targets ShiftedTargets(const torch::Tensor& labels, std::int64_t vocab, std::int64_t ignore_index,
                       bool shift);

// Reduces per-position losses [B*T] (0 where ignored) as `reduction` and `num_items` say; kNone
// returns [B, T-1] when `shift`, [B, T] otherwise. No host synchronisation.
torch::Tensor Reduce(const torch::Tensor& per_token, const torch::Tensor& valid, std::int64_t batch,
                     std::int64_t time, bool shift, Reduction reduction,
                     const std::optional<std::int64_t>& num_items);

}  // namespace lossguard::collector::detail
