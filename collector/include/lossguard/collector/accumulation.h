#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
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
};

// What one micro-batch contributed; values are read from the device when asked for.
struct MicroBatchStats {
  double loss = 0;          // mean token loss of the micro-batch (0 when it has no label tokens)
  std::int64_t tokens = 0;  // label tokens under the window's LabelCount
  double loss_sum = 0;      // sum of its token losses
};

// One optimizer step's gradient accumulation, done right: the loss of the step is the sum of token
// losses over all micro-batches and all ranks divided by the total number of label tokens, so the
// result does not depend on how the same tokens are split into micro-batches, GA steps and ranks.
//
//   AccumulationWindow window(labels_of_each_micro_batch, options);  // counts, all-reduces
//   for (i...) window.Loss(i, model(inputs[i])).backward();
//   double ref_loss = window.ReferenceLoss();                        // for the step record
//
// Not thread-safe. With a process group, the constructor and ReferenceLoss() are collectives: every
// rank must call them, in the same order.
class AccumulationWindow {
 public:
  // Counts label tokens of every micro-batch up front (before any forward pass) and all-reduces the
  // total across ranks. Throws std::invalid_argument for an empty window, labels that are not
  // [B, T] integer tensors, both a process_group and an all_reduce_sum, or world_size < 1.
  explicit AccumulationWindow(std::vector<torch::Tensor> micro_batch_labels,
                              AccumulationOptions options = {});

  // The loss to backpropagate for micro-batch `index` given its logits [B, T, V]: its summed token
  // loss x (world_size if gradients are averaged) / global label tokens. Summed over the window and
  // ranks, these give exactly the gradient of the token-level mean loss.
  torch::Tensor Loss(std::size_t index, const torch::Tensor& logits);

  // Sum of token losses over every micro-batch and rank / global label tokens: the correctly
  // normalised loss of the step (wire format's ref_loss). 0 when the window has no label tokens.
  // Requires Loss() to have been called for every micro-batch.
  double ReferenceLoss();

  std::size_t ga_steps() const { return labels_.size(); }
  std::int64_t local_tokens() const { return local_tokens_; }
  std::int64_t global_tokens() const { return global_tokens_; }
  int world_size() const { return world_size_; }
  // Per micro-batch statistics, in order, for those whose Loss() has been computed.
  std::vector<MicroBatchStats> MicroBatches() const;

 private:
  // Sums `value` over the ranks (a collective); unchanged without ranks.
  torch::Tensor AllReduceSum(torch::Tensor value) const;

  std::vector<torch::Tensor> labels_;
  AccumulationOptions options_;
  std::vector<std::int64_t> tokens_;
  std::vector<torch::Tensor> loss_sums_;  // detached, one per Loss() call
  std::int64_t local_tokens_ = 0;
  std::int64_t global_tokens_ = 0;
  int world_size_ = 1;
};

}  // namespace lossguard::collector
