#include "lossguard/collector/loss.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "detail/loss_common.h"

namespace lossguard::collector {

namespace detail {

std::string Shape(const torch::Tensor& tensor) {
  std::string out = "[";
  for (std::int64_t i = 0; i < tensor.dim(); ++i)
    out += (i ? ", " : "") + std::to_string(tensor.size(i));
  return out + "]";
}

void RequireIntegerLabels(const torch::Tensor& labels) {
  if (labels.is_floating_point() || labels.is_complex() || labels.scalar_type() == torch::kBool) {
    throw DtypeError("labels must be integers, but got " +
                     std::string(c10::toString(labels.scalar_type())));
  }
}

void CheckNumItems(const std::optional<std::int64_t>& num_items, Reduction reduction) {
  if (!num_items) return;
  if (*num_items < 0)
    throw std::invalid_argument("num_items must be >= 0, but got " + std::to_string(*num_items));
  if (reduction == Reduction::kNone)
    throw std::invalid_argument("num_items normalises a sum: it does not go with reduction kNone");
}

Targets ShiftedTargets(const torch::Tensor& labels, std::int64_t vocab, std::int64_t ignore_index,
                       bool shift) {
  // Shift the labels, not the logits: position t predicts labels[:, t+1], the last position
  // predicts nothing. The logits (or hidden states) stay a view instead of a sliced copy.
  torch::Tensor targets;
  if (shift) {
    const std::int64_t time = labels.size(1);
    targets = torch::full_like(labels, ignore_index, labels.options().dtype(torch::kLong));
    if (time > 1) targets.slice(1, 0, time - 1).copy_(labels.slice(1, 1));
  } else {
    targets = labels.to(torch::kLong);
  }
  targets = targets.reshape({-1});
  torch::Tensor valid = targets.ne(ignore_index);
  torch::Tensor out_of_range = valid & (targets.lt(0) | targets.ge(vocab));
  if (targets.device().is_cpu()) {
    if (out_of_range.any().item<bool>()) {
      std::int64_t bad = targets.masked_select(out_of_range)[0].item<std::int64_t>();
      throw std::invalid_argument("label " + std::to_string(bad) + " is outside [0, " +
                                  std::to_string(vocab) + ") and is not ignore_index " +
                                  std::to_string(ignore_index));
    }
  } else {
    at::_assert_async(out_of_range.any().logical_not());
  }
  return {targets.masked_fill(~valid, 0), valid};
}

torch::Tensor Reduce(const torch::Tensor& per_token, const torch::Tensor& valid, std::int64_t batch,
                     std::int64_t time, bool shift, Reduction reduction,
                     const std::optional<std::int64_t>& num_items) {
  if (reduction == Reduction::kNone) {
    const std::int64_t predicted = shift ? std::max<std::int64_t>(time - 1, 0) : time;
    return per_token.view({batch, time}).slice(1, 0, predicted);
  }
  if (num_items) {
    // Zero items means every label was ignored: the sum is 0, and so is the loss (not 0/0).
    torch::Tensor sum = per_token.sum();
    return *num_items == 0 ? sum * 0.0 : sum / static_cast<double>(*num_items);
  }
  if (reduction == Reduction::kSum) return per_token.sum();
  // A count that stays on the device: no host synchronisation.
  return per_token.sum() / valid.sum().clamp_min(1).to(per_token.scalar_type());
}

}  // namespace detail

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per forward chunk: about 4M logits (16 MB of float32 scratch), whatever the vocabulary.
std::int64_t ChunkRows(std::int64_t vocab) {
  return std::max<std::int64_t>(1, (std::int64_t{1} << 22) / vocab);
}

// Per-row cross entropy of logits [N, V] (any floating dtype) against targets [N] (already masked:
// ignored rows carry target 0 and weight 0), computed in float32 one chunk of rows at a time.
// Saves the logits as given (no float32 copy) and a logsumexp per row instead of a [N, V]
// log-softmax; the backward pass rebuilds softmax = exp(logits - lse) chunk by chunk into a
// gradient of the logits' own dtype.
class TokenCrossEntropy : public torch::autograd::Function<TokenCrossEntropy> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& targets, const torch::Tensor& weights) {
    // LibTorch's log_softmax kernel is vectorised (its logsumexp is not); run it on row chunks so
    // the scratch stays small, and recover lse = logit[target] - log_softmax[target].
    const std::int64_t rows = logits.size(0), chunk = ChunkRows(logits.size(1));
    const auto float32 = logits.options().dtype(torch::kFloat32);
    torch::Tensor losses = torch::empty({rows}, float32);
    torch::Tensor lse = torch::empty({rows}, float32);
    for (std::int64_t start = 0; start < rows; start += chunk) {
      const std::int64_t n = std::min(chunk, rows - start);
      torch::Tensor x = logits.narrow(0, start, n).to(torch::kFloat32);
      torch::Tensor target = targets.narrow(0, start, n).unsqueeze(1);
      torch::Tensor log_prob = x.log_softmax(1).gather(1, target).squeeze(1);
      losses.narrow(0, start, n).copy_(log_prob.neg());
      lse.narrow(0, start, n).copy_(x.gather(1, target).squeeze(1) - log_prob);
    }
    ctx->save_for_backward({logits, targets, weights, lse});
    return losses.mul_(weights);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& logits = saved[0];
    const torch::Tensor& targets = saved[1];
    const torch::Tensor& weights = saved[2];
    const torch::Tensor& lse = saved[3];
    torch::Tensor row_grad = grad_outputs[0] * weights;  // [N]; 0 for ignored rows
    if (logits.scalar_type() == torch::kFloat32) {
      // One pass over the whole gradient, which has to exist anyway: no chunk copies.
      torch::Tensor grad = logits.sub(lse.unsqueeze(1)).exp_().mul_(row_grad.unsqueeze(1));
      grad.scatter_add_(1, targets.unsqueeze(1), row_grad.neg().unsqueeze(1));
      return {grad, torch::Tensor(), torch::Tensor()};
    }
    torch::Tensor grad = torch::empty_like(logits);
    const std::int64_t rows = logits.size(0), chunk = ChunkRows(logits.size(1));
    for (std::int64_t start = 0; start < rows; start += chunk) {
      const std::int64_t n = std::min(chunk, rows - start);
      torch::Tensor scale = row_grad.narrow(0, start, n).unsqueeze(1);
      torch::Tensor g = logits.narrow(0, start, n)
                            .to(torch::kFloat32)
                            .sub_(lse.narrow(0, start, n).unsqueeze(1))
                            .exp_()
                            .mul_(scale);
      g.scatter_add_(1, targets.narrow(0, start, n).unsqueeze(1), scale.neg());
      grad.narrow(0, start, n).copy_(g);
    }
    return {grad, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor LabelTokens(const torch::Tensor& labels, LabelCount convention,
                          std::int64_t ignore_index) {
  if (labels.dim() != 2)
    throw std::invalid_argument("labels must be [B, T], but got shape " + detail::Shape(labels));
  detail::RequireIntegerLabels(labels);
  torch::Tensor counted = convention == LabelCount::kShifted ? labels.slice(1, 1) : labels;
  return counted.ne(ignore_index).sum();
}

std::int64_t CountLabelTokens(const torch::Tensor& labels, LabelCount convention,
                              std::int64_t ignore_index) {
  return LabelTokens(labels, convention, ignore_index).item<std::int64_t>();
}

torch::Tensor CausalLmCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                   const CausalLmLossOptions& options) {
  using detail::Shape;
  if (logits.dim() != 3)
    throw std::invalid_argument("logits must be [B, T, V], but got shape " + Shape(logits));
  if (!logits.is_floating_point())
    throw DtypeError("logits must be a floating-point tensor, but got " +
                     std::string(c10::toString(logits.scalar_type())));
  if (labels.dim() != 2 || labels.size(0) != logits.size(0) || labels.size(1) != logits.size(1)) {
    throw std::invalid_argument("labels must be [B, T] matching logits [B, T, V] = " +
                                Shape(logits) + ", but got shape " + Shape(labels));
  }
  detail::RequireIntegerLabels(labels);
  detail::CheckNumItems(options.num_items(), options.reduction());
  const std::int64_t batch = logits.size(0), time = logits.size(1), vocab = logits.size(2);
  detail::Targets targets =
      detail::ShiftedTargets(labels, vocab, options.ignore_index(), /*shift=*/true);
  torch::Tensor flat = logits.reshape({batch * time, vocab});
  torch::Tensor per_token =
      TokenCrossEntropy::apply(flat, targets.safe, targets.valid.to(torch::kFloat32));
  return detail::Reduce(per_token, targets.valid, batch, time, /*shift=*/true, options.reduction(),
                        options.num_items());
}

}  // namespace lossguard::collector
