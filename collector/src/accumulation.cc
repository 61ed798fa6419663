#include "lossguard/collector/accumulation.h"

#include <stdexcept>
#include <string>

namespace lossguard::collector {

torch::Tensor AccumulationWindow::AllReduceSum(torch::Tensor value) const {
  if (options_.all_reduce_sum()) {
    options_.all_reduce_sum()(value);
    return value;
  }
  if (!options_.process_group()) return value;
  std::vector<torch::Tensor> tensors = {value};
  options_.process_group()->allreduce(tensors)->wait();
  return tensors[0];
}

AccumulationWindow::AccumulationWindow(std::vector<torch::Tensor> micro_batch_labels,
                                       AccumulationOptions options)
    : labels_(std::move(micro_batch_labels)), options_(std::move(options)) {
  if (labels_.empty())
    throw std::invalid_argument("an accumulation window needs at least one micro-batch");
  if (options_.process_group() && options_.all_reduce_sum())
    throw std::invalid_argument(
        "give an accumulation window a process_group or an all_reduce_sum, not both");
  if (options_.world_size() < 1) {
    throw std::invalid_argument("world_size must be >= 1, but got " +
                                std::to_string(options_.world_size()));
  }
  for (const torch::Tensor& labels : labels_) {
    std::int64_t tokens = CountLabelTokens(labels, options_.label_count(), options_.ignore_index());
    tokens_.push_back(tokens);
    local_tokens_ += tokens;
  }
  world_size_ = options_.process_group()    ? options_.process_group()->getSize()
                : options_.all_reduce_sum() ? static_cast<int>(options_.world_size())
                                            : 1;
  torch::Tensor total = AllReduceSum(torch::tensor({local_tokens_}, torch::kLong));
  global_tokens_ = total.item<std::int64_t>();
}

torch::Tensor AccumulationWindow::Loss(std::size_t index, const torch::Tensor& logits) {
  if (index >= labels_.size()) {
    throw std::invalid_argument("micro-batch index " + std::to_string(index) +
                                " is outside a window of " + std::to_string(labels_.size()));
  }
  if (index != loss_sums_.size()) {
    throw std::invalid_argument("micro-batch losses must be computed in order: expected index " +
                                std::to_string(loss_sums_.size()) + ", but got " +
                                std::to_string(index));
  }
  torch::Tensor sum = CausalLmCrossEntropy(
      logits, labels_[index],
      CausalLmLossOptions().ignore_index(options_.ignore_index()).reduction(Reduction::kSum));
  loss_sums_.push_back(sum.detach());
  double ranks = options_.gradients_averaged_across_ranks() ? world_size_ : 1;
  if (global_tokens_ == 0) return sum * 0.0;  // nothing to learn from; a zero gradient, not NaN
  return sum * (ranks / static_cast<double>(global_tokens_));
}

double AccumulationWindow::ReferenceLoss() {
  if (loss_sums_.size() != labels_.size()) {
    throw std::logic_error("ReferenceLoss() before Loss() for every micro-batch: " +
                           std::to_string(loss_sums_.size()) + " of " +
                           std::to_string(labels_.size()));
  }
  torch::Tensor local = torch::stack(loss_sums_).sum().to(torch::kFloat64).reshape({1});
  double global = AllReduceSum(local).item<double>();
  return global_tokens_ == 0 ? 0.0 : global / static_cast<double>(global_tokens_);
}

std::vector<MicroBatchStats> AccumulationWindow::MicroBatches() const {
  std::vector<MicroBatchStats> out;
  for (std::size_t i = 0; i < loss_sums_.size(); ++i) {
    double sum = loss_sums_[i].item<double>();
    out.push_back({tokens_[i] > 0 ? sum / static_cast<double>(tokens_[i]) : 0.0, tokens_[i], sum});
  }
  return out;
}

}  // namespace lossguard::collector
