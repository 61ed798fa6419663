#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <vector>

#include "lossguard/collector/loss.h"

namespace lossguard::collector {

struct AccumulationOptions {
  TORCH_ARG(std::int64_t, ignore_index) = -100;
  TORCH_ARG(LabelCount, label_count) = LabelCount::kShifted;
  // Data-parallel ranks: the label-token count and the reference loss are all-reduced through it.
  TORCH_ARG(c10::intrusive_ptr<c10d::ProcessGroup>, process_group);
  // Or, for a process group the C++ side cannot hold (the Python package passes
  // torch.distributed's, whatever its backend): a function that sums a tensor in place across
  // `world_size` ranks, as a collective. Not together with process_group.
  TORCH_ARG(std::function<void(torch::Tensor&)>, all_reduce_sum);
  TORCH_ARG(std::int64_t, world_size) = 1;  // the ranks all_reduce_sum spans
  // DDP averages gradients over ranks (it divides their sum by world_size). When true (the
  // default), each micro-batch loss is multiplied by world_size to cancel that average. Set false
  // when gradients are summed across ranks instead.
  TORCH_ARG(bool, gradients_averaged_across_ranks) = true;
  // When to divide by the step's global label-token count:
  //   false (the default): before backward. The constructor all-reduces the count and each
  //     micro-batch's loss comes out normalised, so any trainer can backpropagate it as it is.
  //     Two collectives a step with ranks: the count, and the record's loss sum.
  //   true: after backward. Loss()/LinearLoss() return each micro-batch's token-loss sum, and
  //     NormaliseGradients() divides the accumulated gradients once the last backward is done
  //     (what Megatron-LM's per-token loss does). One collective a step carries the count and
  //     the loss sum together. NormaliseGradients() must then be called before the gradient norm,
  //     clipping and the optimizer step.
  TORCH_ARG(bool, defer_normalisation) = false;
};

// What one micro-batch contributed.
struct MicroBatchStats {
  double loss = 0;          // mean token loss of the micro-batch (0 when it has no label tokens)
  std::int64_t tokens = 0;  // label tokens under the window's LabelCount
  double loss_sum = 0;      // sum of its token losses
};

// Everything a step record needs from the window, read to the host at once.
struct WindowTotals {
  double ref_loss = 0;             // global loss sum / global label tokens; 0 without tokens
  std::int64_t local_tokens = 0;   // this rank, all micro-batches
  std::int64_t global_tokens = 0;  // all micro-batches and ranks
  std::vector<MicroBatchStats> micro;
};

// One optimizer step's gradient accumulation, done right: the loss of the step is the sum of token
// losses over all micro-batches and all ranks divided by the total number of label tokens, so the
// result does not depend on how the same tokens are split into micro-batches, GA steps and ranks.
//
//   AccumulationWindow window(labels_of_each_micro_batch, options);  // counts, all-reduces
//   for (i...) window.Loss(i, model(inputs[i])).backward();          // or LinearLoss(i, hidden, W)
//   double ref_loss = window.ReferenceLoss();                        // for the step record
//
// What waits for the device, and the collectives (with ranks):
//   - the constructor: one all-reduce (the label-token count, needed before the first backward),
//     none with defer_normalisation; the count stays a device tensor, nothing is read.
//   - Loss / LinearLoss: neither (the normalisation divides by the count on the device).
//   - NormaliseGradients (defer_normalisation only): the step's one all-reduce (count and loss
//     sum together) unless made already; scales the gradients on the device, reads nothing.
//   - Totals, ReferenceLoss, and Collector::RecordStep / Describe through them: the record's
//     all-reduce (the loss sum, which exists only after the last forward pass; with
//     defer_normalisation the same one as NormaliseGradients') unless made already, and one
//     device-to-host read of everything the record needs; later calls reuse both. Without ranks
//     there is no all-reduce at all.
//   - local_tokens(), global_tokens(), MicroBatches() before Totals(): one read each.
// A trainer on a GPU should ask for the totals after optimizer.step() has been queued, so that
// the read waits for work that is already done or about to be.
//
// Not thread-safe. With a process group, the constructor and Totals() (ReferenceLoss, Describe)
// are collectives: every rank must call them, in the same order.
class AccumulationWindow {
 public:
  // Counts label tokens of every micro-batch up front (before any forward pass) and all-reduces the
  // total across ranks. Throws std::invalid_argument for an empty window, labels that are not
  // [B, T] integer tensors, both a process_group and an all_reduce_sum, or world_size < 1.
  explicit AccumulationWindow(std::vector<torch::Tensor> micro_batch_labels,
                              AccumulationOptions options = {});

  // The loss to backpropagate for micro-batch `index` given its logits [B, T, V]: its summed token
  // loss x (world_size if gradients are averaged) / global label tokens. Summed over the window and
  // ranks, these give exactly the gradient of the token-level mean loss. Micro-batches are taken
  // in order, each once. With defer_normalisation: the summed token loss alone.
  torch::Tensor Loss(std::size_t index, const torch::Tensor& logits);

  // The same from the final hidden states [B, T, D] and the output projection (weight [V, D],
  // bias [V] or undefined), through LinearCrossEntropy: the [B, T, V] logits never exist.
  torch::Tensor LinearLoss(std::size_t index, const torch::Tensor& hidden,
                           const torch::Tensor& weight, const torch::Tensor& bias = {});

  // With defer_normalisation, after the last backward (and DDP's gradient all-reduce): multiplies
  // every gradient of `parameters` by (world_size if gradients are averaged) / global label tokens,
  // which makes them exactly the gradients of the token-level mean loss. A collective. Throws
  // std::logic_error without defer_normalisation, before a loss for every micro-batch, or when
  // called a second time.
  void NormaliseGradients(const std::vector<torch::Tensor>& parameters);

  // What the step record needs (see above for what it waits for). Requires a loss for every
  // micro-batch.
  const WindowTotals& Totals();

  // Totals().ref_loss: the correctly normalised loss of the step (wire format's ref_loss).
  double ReferenceLoss() { return Totals().ref_loss; }

  std::size_t ga_steps() const { return labels_.size(); }
  std::int64_t local_tokens() const;   // read from the device unless Totals() was read
  std::int64_t global_tokens() const;  // likewise; num_items of the step
  int world_size() const { return world_size_; }
  // Per micro-batch statistics, in order, for those whose loss has been computed.
  std::vector<MicroBatchStats> MicroBatches() const;

 private:
  // Whether sums go through a collective (ranks, or an all_reduce_sum the caller gave).
  bool HasRanks() const;
  // Sums `value` over the ranks (a collective); unchanged without ranks.
  torch::Tensor AllReduceSum(torch::Tensor value) const;
  // Checks that `index` is the next micro-batch.
  void ExpectNext(std::size_t index) const;
  // Records the micro-batch's summed loss and returns it normalised (or not, when deferred).
  torch::Tensor Normalise(const torch::Tensor& loss_sum);
  // (world_size if gradients are averaged) / global label tokens (1 without tokens), float64 on
  // the count's device: what a loss sum, or its gradients, are multiplied by.
  torch::Tensor GradientScale() const;
  // The record's collective, once: global_sum_, and global_tokens_ when deferred.
  void Reduce(const char* caller);

  std::vector<torch::Tensor> labels_;
  AccumulationOptions options_;
  std::vector<torch::Tensor> tokens_;     // 0-dim int64, one per micro-batch
  std::vector<torch::Tensor> loss_sums_;  // detached 0-dim, one per loss computed
  torch::Tensor local_tokens_;            // 0-dim int64
  torch::Tensor global_tokens_;           // [1], all-reduced (when deferred: by Reduce)
  torch::Tensor global_sum_;              // [1] float64, all-reduced by Reduce
  int world_size_ = 1;
  bool gradients_normalised_ = false;
  std::optional<WindowTotals> totals_;
};

}  // namespace lossguard::collector
