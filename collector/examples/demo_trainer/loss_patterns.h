#pragma once
// The loss a trainer computes under each --loss pattern: the correct token-level normalisation
// (the collector's AccumulationWindow), and the public bugs it reproduces.

#include <torch/torch.h>

#include "config.h"
#include "lossguard/collector/accumulation.h"
#include "lossguard/collector/linear_loss.h"
#include "lossguard/collector/loss.h"

namespace lossguard::demo {

using collector::AccumulationWindow;
using collector::CausalLmCrossEntropy;
using collector::CausalLmLossOptions;
using collector::LinearCrossEntropy;
using collector::LinearCrossEntropyOptions;
using collector::Reduction;

// What a trainer with each loss pattern backpropagates and reports, for one micro-batch.
struct MicroLoss {
  torch::Tensor backward;  // what .backward() is called on
  torch::Tensor reported;  // its contribution to the loss the trainer prints (detached; read once
                           // a step, so that the loop does not wait for the device per micro-batch)
};

// The model's output for one micro-batch: the hidden states and the head that projects them.
struct Output {
  torch::Tensor hidden;        // [B, T, D]
  torch::Tensor weight, bias;  // the head: [V, D], [V]
  bool fused;                  // LinearCrossEntropy (else the head's logits, materialised)
};

inline MicroLoss LossFor(const Config& c, AccumulationWindow& window, std::size_t i,
                         const Output& out, const torch::Tensor& labels) {
  torch::Tensor logits;
  if (!out.fused) logits = torch::nn::functional::linear(out.hidden, out.weight, out.bias);
  if (c.loss == "correct") {
    torch::Tensor loss = out.fused ? window.LinearLoss(i, out.hidden, out.weight, out.bias)
                                   : window.Loss(i, logits);  // sum x world_size / global tokens
    return {loss, loss.detach() / static_cast<double>(window.world_size())};
  }
  // The reference, computed alongside (no gradient).
  if (out.fused) {
    window.LinearLoss(i, out.hidden.detach(), out.weight.detach(), out.bias.detach());
  } else {
    window.Loss(i, logits.detach());
  }
  auto token_loss = [&](Reduction reduction) {
    return out.fused
               ? LinearCrossEntropy(out.hidden, out.weight, out.bias, labels,
                                    LinearCrossEntropyOptions().reduction(reduction))
               : CausalLmCrossEntropy(logits, labels, CausalLmLossOptions().reduction(reduction));
  };
  torch::Tensor mean = token_loss(Reduction::kMean);
  double ga = static_cast<double>(c.ga_steps);
  if (c.loss == "sum-no-ga-div") return {mean, mean.detach()};            // Axolotl: GA x too large
  if (c.loss == "mean-of-means") return {mean / ga, mean.detach() / ga};  // pre-fix transformers
  // per-sequence: token-loss sum divided by the number of sequences instead of tokens.
  torch::Tensor per_sequence =
      token_loss(Reduction::kSum) / static_cast<double>(labels.size(0)) / ga;
  return {per_sequence, per_sequence.detach()};
}

}  // namespace lossguard::demo
