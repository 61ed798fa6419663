#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>

#include "lossguard/collector/loss.h"

namespace lossguard::collector {

// Options of LinearCrossEntropy: those of CausalLmLossOptions, the shift, and the chunking.
struct LinearCrossEntropyOptions {
  TORCH_ARG(std::int64_t, ignore_index) = -100;
  TORCH_ARG(Reduction, reduction) = Reduction::kMean;
  // As in CausalLmLossOptions: the result is sum / num_items, whatever kSum or kMean says.
  TORCH_ARG(std::optional<std::int64_t>, num_items) = std::nullopt;
  // true (the default): position t predicts labels[..., t+1], as CausalLmCrossEntropy (pass the
  // labels as they come with the inputs). false: labels are already aligned with the positions.
  TORCH_ARG(bool, shift_labels) = true;
  // Tokens and vocabulary entries per chunk; 0 chooses them from the shapes (a chunk of about 4M
  // float32 logits, 16 MB, whatever the vocabulary). Results do not depend on them beyond
  // floating-point rounding.
  TORCH_ARG(std::int64_t, chunk_tokens) = 0;
  TORCH_ARG(std::int64_t, chunk_vocab) = 0;
};

// Cross entropy of the output projection of `hidden`, fused: the same value and gradients as
// cross_entropy(linear(hidden, weight, bias), shifted labels), without ever materialising the
// [N, V] logits.
//
//   hidden [B, T, D] with labels [B, T], or hidden [N, D] with labels [N] (one sequence, or
//   already flattened with shift_labels(false)); weight [V, D]; bias [V] or undefined.
//
// Works on chunks of tokens x vocabulary entries. The forward pass keeps, per token, only the
// logsumexp of its logits (float32); the backward pass recomputes each chunk's logits and adds its
// share to grad_hidden, grad_weight and grad_bias. Only the gradients that autograd asks for are
// computed.
//
// Dtypes: float32, float64, bfloat16, float16; hidden, weight and bias share one. Chunks are
// computed in float32 (float64 for float64) from chunk-sized copies, never a float32 copy of the
// hidden states, the weight or the logits. Low-precision inputs get one float32 buffer the size
// of the hidden states for grad_hidden's accumulation (N x D, small next to N x V); grad_weight is
// accumulated in float32 per vocabulary chunk. The loss is float32 (float64 for float64 inputs).
//
// Memory beyond inputs and gradients: per-token logsumexp and targets, and one chunk of logits
// with its float32 copies of hidden and weight rows (tests/bench/linear_loss_bench.cc measures it
// against LibTorch's linear + cross_entropy).
//
// Gradients are exact for every reduction, also when most or all labels are ignored (zero
// gradient, a zero loss and never NaN). Throws std::invalid_argument naming the offending value
// for bad shapes, labels outside [0, V) that are not ignore_index, bad num_items or chunk sizes;
// DtypeError for bad dtypes. Host synchronisation: as CausalLmCrossEntropy (only the CPU label
// check reads anything).
torch::Tensor LinearCrossEntropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                 const torch::Tensor& bias, const torch::Tensor& labels,
                                 const LinearCrossEntropyOptions& options = {});

}  // namespace lossguard::collector
