#pragma once
// The loss a trainer computes under each --loss pattern: the correct token-level normalisation
// (the collector's AccumulationWindow), and the public bugs it reproduces.

#include <torch/torch.h>

#include "config.h"
#include "lossguard/collector/accumulation.h"
#include "lossguard/collector/loss.h"

namespace lossguard::demo {

using collector::AccumulationWindow;
using collector::CausalLmCrossEntropy;
using collector::CausalLmLossOptions;
using collector::Reduction;

// What a trainer with each loss pattern backpropagates and reports, for one micro-batch.
struct MicroLoss {
  torch::Tensor backward;  // what .backward() is called on
  double reported;         // its contribution to the loss the trainer prints
};

inline MicroLoss LossFor(const Config& c, AccumulationWindow& window, std::size_t i,
                         const torch::Tensor& logits, const torch::Tensor& labels) {
  if (c.loss == "correct") {
    torch::Tensor loss = window.Loss(i, logits);  // sum x world_size / global tokens
    return {loss, loss.item<double>() / static_cast<double>(window.world_size())};
  }
  window.Loss(i, logits.detach());  // the reference, computed alongside (no gradient)
  torch::Tensor mean = CausalLmCrossEntropy(logits, labels);
  double ga = static_cast<double>(c.ga_steps);
  if (c.loss == "sum-no-ga-div") return {mean, mean.item<double>()};  // Axolotl: GA x too large
  if (c.loss == "mean-of-means")
    return {mean / ga, mean.item<double>() / ga};  // pre-fix transformers
  // per-sequence: token-loss sum divided by the number of sequences instead of tokens.
  torch::Tensor per_sequence =
      CausalLmCrossEntropy(logits, labels, CausalLmLossOptions().reduction(Reduction::kSum)) /
      static_cast<double>(labels.size(0)) / ga;
  return {per_sequence, per_sequence.item<double>()};
}

}  // namespace lossguard::demo
