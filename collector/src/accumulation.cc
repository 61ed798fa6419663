#include "lossguard/collector/accumulation.h"

#include <stdexcept>
#include <string>

#include "detail/host_read.h"
#include "lossguard/collector/linear_loss.h"

namespace lossguard::collector {

namespace {
// A micro-batch's statistics from its token count and loss sum as read to the host.
MicroBatchStats MicroFrom(double tokens, double loss_sum) {
  const auto count = static_cast<std::int64_t>(tokens);
  return {count > 0 ? loss_sum / static_cast<double>(count) : 0.0, count, loss_sum};
}
}  // namespace

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
  for (const torch::Tensor& labels : labels_)
    tokens_.push_back(LabelTokens(labels, options_.label_count(), options_.ignore_index()));
  local_tokens_ = torch::stack(tokens_).sum();
  world_size_ = options_.process_group()    ? options_.process_group()->getSize()
                : options_.all_reduce_sum() ? static_cast<int>(options_.world_size())
                                            : 1;
  if (options_.defer_normalisation()) return;  // counted with the loss sum, by Reduce
  // The one collective before the forward passes: the count normalises every micro-batch's loss.
  // It stays on the device (Normalise divides by it there).
  global_tokens_ = local_tokens_.reshape({1}).clone();
  if (HasRanks()) global_tokens_ = AllReduceSum(global_tokens_);
}

bool AccumulationWindow::HasRanks() const {
  return world_size_ > 1 || static_cast<bool>(options_.all_reduce_sum());
}

void AccumulationWindow::ExpectNext(std::size_t index) const {
  if (index >= labels_.size()) {
    throw std::invalid_argument("micro-batch index " + std::to_string(index) +
                                " is outside a window of " + std::to_string(labels_.size()));
  }
  if (index != loss_sums_.size()) {
    throw std::invalid_argument("micro-batch losses must be computed in order: expected index " +
                                std::to_string(loss_sums_.size()) + ", but got " +
                                std::to_string(index));
  }
}

torch::Tensor AccumulationWindow::Normalise(const torch::Tensor& loss_sum) {
  loss_sums_.push_back(loss_sum.detach());
  if (options_.defer_normalisation()) return loss_sum;
  // A count on the CPU next to a loss on a GPU is a CPU scalar there: nothing is copied or waited
  // for.
  return loss_sum * GradientScale().to(loss_sum.scalar_type());
}

torch::Tensor AccumulationWindow::GradientScale() const {
  const double ranks = options_.gradients_averaged_across_ranks() ? world_size_ : 1;
  // With no label tokens anywhere the sums are 0 with zero gradients, and so is 0 / 1: no NaN, and
  // no branch on a device value.
  return ranks / global_tokens_.reshape({}).to(torch::kFloat64).clamp_min(1);
}

torch::Tensor AccumulationWindow::Loss(std::size_t index, const torch::Tensor& logits) {
  ExpectNext(index);
  return Normalise(CausalLmCrossEntropy(
      logits, labels_[index],
      CausalLmLossOptions().ignore_index(options_.ignore_index()).reduction(Reduction::kSum)));
}

torch::Tensor AccumulationWindow::LinearLoss(std::size_t index, const torch::Tensor& hidden,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& bias) {
  ExpectNext(index);
  return Normalise(LinearCrossEntropy(hidden, weight, bias, labels_[index],
                                      LinearCrossEntropyOptions()
                                          .ignore_index(options_.ignore_index())
                                          .reduction(Reduction::kSum)));
}

void AccumulationWindow::Reduce(const char* caller) {
  if (global_sum_.defined()) return;
  if (loss_sums_.size() != labels_.size()) {
    throw std::logic_error(std::string(caller) + " before Loss() or LinearLoss() for every " +
                           "micro-batch: " + std::to_string(loss_sums_.size()) + " of " +
                           std::to_string(labels_.size()));
  }
  // The record's collective: the loss sum exists only after the last forward pass. Deferred, the
  // token count travels in the same tensor, so the step makes this collective and no other.
  torch::Tensor local_sum = torch::stack(loss_sums_).sum().to(torch::kFloat64).reshape({1});
  if (!options_.defer_normalisation()) {
    global_sum_ = HasRanks() ? AllReduceSum(local_sum) : local_sum;
    return;
  }
  torch::Tensor both = torch::cat(
      {local_sum,
       local_tokens_.to(local_sum.device(), torch::kFloat64, /*non_blocking=*/true).reshape({1})});
  if (HasRanks()) both = AllReduceSum(both);
  global_sum_ = both.narrow(0, 0, 1);
  global_tokens_ = both.narrow(0, 1, 1);
}

void AccumulationWindow::NormaliseGradients(const std::vector<torch::Tensor>& parameters) {
  if (!options_.defer_normalisation()) {
    throw std::logic_error(
        "NormaliseGradients() is for a window with defer_normalisation(true); this window's "
        "losses are normalised already");
  }
  if (gradients_normalised_)
    throw std::logic_error("NormaliseGradients() called twice for one window");
  Reduce("NormaliseGradients()");
  torch::NoGradGuard no_grad;
  const torch::Tensor coefficient = GradientScale();
  for (const torch::Tensor& p : parameters) {
    if (!p.grad().defined()) continue;
    torch::Tensor grad = p.grad();
    grad.mul_(coefficient.to(grad.device()).to(grad.scalar_type()));
  }
  gradients_normalised_ = true;
}

const WindowTotals& AccumulationWindow::Totals() {
  if (totals_) return *totals_;
  Reduce("the window's totals (ReferenceLoss)");
  std::vector<torch::Tensor> values = {global_sum_, global_tokens_, local_tokens_};
  values.insert(values.end(), tokens_.begin(), tokens_.end());
  values.insert(values.end(), loss_sums_.begin(), loss_sums_.end());
  const std::vector<double> host = detail::ReadToHost(values);
  WindowTotals totals;
  totals.global_tokens = static_cast<std::int64_t>(host[1]);
  totals.local_tokens = static_cast<std::int64_t>(host[2]);
  totals.ref_loss =
      totals.global_tokens == 0 ? 0.0 : host[0] / static_cast<double>(totals.global_tokens);
  const std::size_t n = labels_.size();
  for (std::size_t i = 0; i < n; ++i)
    totals.micro.push_back(MicroFrom(host[3 + i], host[3 + n + i]));
  totals_ = std::move(totals);
  return *totals_;
}

std::int64_t AccumulationWindow::local_tokens() const {
  if (totals_) return totals_->local_tokens;
  return static_cast<std::int64_t>(detail::ReadToHost({local_tokens_})[0]);
}

std::int64_t AccumulationWindow::global_tokens() const {
  if (totals_) return totals_->global_tokens;
  if (!global_tokens_.defined()) {
    throw std::logic_error(
        "global_tokens() of a window with defer_normalisation before its collective "
        "(NormaliseGradients or ReferenceLoss)");
  }
  return static_cast<std::int64_t>(detail::ReadToHost({global_tokens_})[0]);
}

std::vector<MicroBatchStats> AccumulationWindow::MicroBatches() const {
  if (totals_) return totals_->micro;
  std::vector<torch::Tensor> values(tokens_.begin(), tokens_.begin() + loss_sums_.size());
  values.insert(values.end(), loss_sums_.begin(), loss_sums_.end());
  const std::vector<double> host = detail::ReadToHost(values);
  std::vector<MicroBatchStats> out;
  const std::size_t n = loss_sums_.size();
  for (std::size_t i = 0; i < n; ++i) out.push_back(MicroFrom(host[i], host[n + i]));
  return out;
}

}  // namespace lossguard::collector
