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
  // float32 logits, 16 MB, whatever the vocabulary; the forward-gradient way takes whole
  // vocabulary rows and only chunk_tokens). Results do not depend on them beyond floating-point
  // rounding.
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
// Works on chunks of tokens x vocabulary entries; only the gradients autograd asks for are
// computed. Two ways, chosen by what is asked:
//   - float32/float64, gradients wanted, reduction kSum or kMean (or num_items): each token chunk's
//     logits over the whole vocabulary are turned into their gradient during the forward pass,
//     which then makes the three matrix products of linear + cross_entropy and nothing is
//     recomputed. grad_hidden, grad_weight and grad_bias are held from the forward pass to the
//     backward pass (backward scales them): backpropagate a micro-batch's loss before the next
//     micro-batch's forward, as gradient accumulation does.
//   - otherwise (kNone, bfloat16/float16, no gradients): the forward pass keeps one logsumexp per
//     token; the backward pass recomputes each chunk's logits, vocabulary chunks outside, so that
//     each chunk of grad_weight is accumulated in float32 and written once.
//
// Dtypes: float32, float64, bfloat16, float16; hidden, weight and bias share one. bfloat16 chunks
// are multiplied in bfloat16 (as LibTorch's linear: float32 accumulation, the result rounded),
// float16 ones in float32 (LibTorch has no float16 CPU product); softmax, logsumexp and every sum
// are float32 (float64 for float64). Never a float32 copy of the hidden states, the weight or the
// logits: low-precision inputs get one float32 buffer the size of the hidden states for
// grad_hidden (N x D, small next to N x V). The loss is float32 (float64 for float64 inputs).
// tests/bench/linear_loss_bench.cc measures memory and time against LibTorch's linear +
// cross_entropy.
//
// Gradients are exact for every reduction, also when most or all labels are ignored (zero
// gradient, a zero loss and never NaN). Throws std::invalid_argument naming the offending value
// for bad shapes, devices, labels outside [0, V) that are not ignore_index, bad num_items or chunk
// sizes; DtypeError for bad dtypes. Host synchronisation: as CausalLmCrossEntropy (only the CPU
// label check reads anything).
torch::Tensor LinearCrossEntropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                 const torch::Tensor& bias, const torch::Tensor& labels,
                                 const LinearCrossEntropyOptions& options = {});

}  // namespace lossguard::collector
