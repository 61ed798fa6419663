#include "lossguard/collector/linear_loss.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "detail/loss_common.h"

namespace lossguard::collector {

namespace {

using detail::Shape;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A chunk of about 4M logits (16 MB of float32); vocabulary chunks of at most 8,192 entries and
// about as many weight elements.
constexpr std::int64_t kChunkElements = std::int64_t{1} << 22;

struct Tiling {
  std::int64_t rows;  // tokens per chunk
  std::int64_t cols;  // vocabulary entries per chunk
};

Tiling ChooseTiling(std::int64_t tokens, std::int64_t vocab, std::int64_t dim,
                    const LinearCrossEntropyOptions& options) {
  std::int64_t cols = options.chunk_vocab();
  if (cols == 0) {
    // Balanced vocabulary chunks (V = 32,000 at D = 512: 4 of 8,000), so that the last is not a
    // sliver; wide enough for an efficient matrix product.
    const std::int64_t widest =
        std::clamp<std::int64_t>(kChunkElements / std::max<std::int64_t>(dim, 1), 256, 8192);
    const std::int64_t chunks = (vocab + widest - 1) / widest;
    cols = (vocab + chunks - 1) / chunks;
  }
  cols = std::max<std::int64_t>(1, std::min(cols, vocab));
  std::int64_t rows = options.chunk_tokens();
  if (rows == 0) rows = std::max<std::int64_t>(1, kChunkElements / cols);
  rows = std::max<std::int64_t>(1, std::min(rows, tokens));
  return {rows, cols};
}

torch::ScalarType AccumulationType(const torch::Tensor& hidden) {
  return hidden.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// Whether products of `dtype` run in that dtype (LibTorch's CPU kernels have no float16 matrix
// product: float16 chunks are widened to float32 first).
bool MultipliesIn(torch::ScalarType dtype, const torch::Device& device) {
  return dtype != torch::kHalf || !device.is_cpu();
}

// A chunk's logits h @ w^T (+ b) in the accumulation type. Low-precision inputs are multiplied in
// their own dtype where the device can, as LibTorch's linear does (its kernels accumulate in
// float32 and round the result; on this CPU oneDNN's bfloat16 product is ~100x faster than a
// float32 one), and only the chunk of logits is widened to float32.
torch::Tensor ChunkLogits(torch::Tensor h, torch::Tensor w, torch::Tensor b,
                          torch::ScalarType acc) {
  if (!MultipliesIn(h.scalar_type(), h.device())) {
    h = h.to(acc);
    w = w.to(acc);
    if (b.defined()) b = b.to(acc);
  }
  torch::Tensor logits = b.defined() ? at::addmm(b, h, w.t()) : at::mm(h, w.t());
  return logits.scalar_type() == acc ? logits : logits.to(acc);
}

// out (accumulation type) += a (accumulation type) @ b (input dtype): in the input dtype's
// product for low-precision inputs (where the device has one), summed into `out` in its own
// precision.
void AddProduct(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b) {
  if (b.scalar_type() == out.scalar_type()) {
    out.addmm_(a, b);
  } else if (!MultipliesIn(b.scalar_type(), b.device())) {
    out.addmm_(a, b.to(out.scalar_type()));
  } else {
    out.add_(at::mm(a.to(b.scalar_type()), b));
  }
}

// The rows of a token chunk whose target falls in the vocabulary chunk [first, first + cols), and
// the target's column there (0 for the others, a valid index).
struct InChunk {
  torch::Tensor mask, column;
};
InChunk TargetsIn(const torch::Tensor& targets, std::int64_t first, std::int64_t cols) {
  torch::Tensor local = targets - first;
  return {local.ge(0) & local.lt(cols), local.clamp(0, cols - 1).unsqueeze(1)};
}

// Per-token cross entropy of hidden [N, D] projected by weight [V, D] (+ bias [V]) against targets
// [N] (ignored rows carry target 0 and valid false, and a loss of 0). No bias is an empty tensor:
// autograd functions take defined tensors only.
class LinearTokenCrossEntropy : public torch::autograd::Function<LinearTokenCrossEntropy> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& weight, const torch::Tensor& given_bias,
                               const torch::Tensor& targets, const torch::Tensor& valid,
                               std::int64_t rows, std::int64_t cols) {
    const torch::ScalarType acc = AccumulationType(hidden);
    const auto acc_options = hidden.options().dtype(acc);
    const std::int64_t tokens = hidden.size(0), vocab = weight.size(0);
    const torch::Tensor bias = given_bias.numel() > 0 ? given_bias : torch::Tensor();
    torch::Tensor losses = torch::empty({tokens}, acc_options);
    torch::Tensor lse = torch::empty({tokens}, acc_options);
    for (std::int64_t t0 = 0; t0 < tokens; t0 += rows) {
      const std::int64_t n = std::min(rows, tokens - t0);
      torch::Tensor h = hidden.narrow(0, t0, n);
      torch::Tensor chunk_targets = targets.narrow(0, t0, n);
      // A running logsumexp over the vocabulary chunks: max so far and the sum of exp(x - max).
      torch::Tensor max = torch::full({n}, -std::numeric_limits<double>::infinity(), acc_options);
      torch::Tensor sum = torch::zeros({n}, acc_options);
      torch::Tensor target_logit = torch::zeros({n}, acc_options);
      for (std::int64_t v0 = 0; v0 < vocab; v0 += cols) {
        const std::int64_t c = std::min(cols, vocab - v0);
        torch::Tensor logits = ChunkLogits(h, weight.narrow(0, v0, c),
                                           bias.defined() ? bias.narrow(0, v0, c) : bias, acc);
        InChunk in = TargetsIn(chunk_targets, v0, c);
        target_logit.add_(logits.gather(1, in.column).squeeze(1).masked_fill_(~in.mask, 0));
        torch::Tensor new_max = torch::maximum(max, std::get<0>(logits.max(1)));
        sum.mul_((max - new_max).exp_()).add_(logits.sub_(new_max.unsqueeze(1)).exp_().sum(1));
        max = new_max;
      }
      torch::Tensor chunk_lse = sum.log_().add_(max);
      lse.narrow(0, t0, n).copy_(chunk_lse);
      // where, not a product with the mask: an ignored row never contributes, even a NaN.
      losses.narrow(0, t0, n).copy_(
          torch::where(valid.narrow(0, t0, n), chunk_lse - target_logit, torch::zeros_like(max)));
    }
    ctx->save_for_backward({hidden, weight, given_bias, targets, valid, lse});
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["cols"] = cols;
    return losses;
  }

  // d loss_i / d logits_ij = softmax_ij - [j == target_i], times grad_i (0 for ignored rows):
  // recomputed chunk by chunk, vocabulary chunks outside so that each grad_weight chunk is
  // accumulated in float32 and written once.
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &hidden = saved[0], &weight = saved[1];
    const torch::Tensor bias = saved[2].numel() > 0 ? saved[2] : torch::Tensor();
    const torch::Tensor &targets = saved[3], &valid = saved[4], &lse = saved[5];
    const std::int64_t rows = ctx->saved_data["rows"].toInt();
    const std::int64_t cols = ctx->saved_data["cols"].toInt();
    const bool need_hidden = ctx->needs_input_grad(0);
    const bool need_weight = ctx->needs_input_grad(1);
    const bool need_bias = bias.defined() && ctx->needs_input_grad(2);
    const torch::ScalarType acc = AccumulationType(hidden);
    const auto acc_options = hidden.options().dtype(acc);
    const std::int64_t tokens = hidden.size(0), vocab = weight.size(0), dim = hidden.size(1);

    torch::Tensor scale =
        torch::where(valid, grad_outputs[0].to(acc), torch::zeros({}, acc_options));
    torch::Tensor grad_hidden =
        need_hidden ? torch::zeros({tokens, dim}, acc_options) : torch::Tensor();
    torch::Tensor grad_weight = need_weight ? torch::empty_like(weight) : torch::Tensor();
    torch::Tensor grad_bias = need_bias ? torch::empty_like(bias) : torch::Tensor();
    const bool weight_in_acc = weight.scalar_type() == acc;
    for (std::int64_t v0 = 0; v0 < vocab; v0 += cols) {
      const std::int64_t c = std::min(cols, vocab - v0);
      torch::Tensor w = weight.narrow(0, v0, c);
      torch::Tensor b = bias.defined() ? bias.narrow(0, v0, c) : bias;
      torch::Tensor gw;
      if (need_weight) {
        gw = weight_in_acc ? grad_weight.narrow(0, v0, c).zero_()
                           : torch::zeros({c, dim}, acc_options);
      }
      torch::Tensor gb = need_bias ? torch::zeros({c}, acc_options) : torch::Tensor();
      for (std::int64_t t0 = 0; t0 < tokens; t0 += rows) {
        const std::int64_t n = std::min(rows, tokens - t0);
        torch::Tensor h = hidden.narrow(0, t0, n);
        torch::Tensor chunk_scale = scale.narrow(0, t0, n);
        torch::Tensor grad_logits = ChunkLogits(h, w, b, acc);
        grad_logits.sub_(lse.narrow(0, t0, n).unsqueeze(1)).exp_().mul_(chunk_scale.unsqueeze(1));
        InChunk in = TargetsIn(targets.narrow(0, t0, n), v0, c);
        grad_logits.scatter_add_(1, in.column,
                                 chunk_scale.neg().masked_fill_(~in.mask, 0).unsqueeze(1));
        if (need_hidden) {
          torch::Tensor rows_of_grad = grad_hidden.narrow(0, t0, n);
          AddProduct(rows_of_grad, grad_logits, w);
        }
        if (need_weight) AddProduct(gw, grad_logits.t(), h);
        if (need_bias) gb.add_(grad_logits.sum(0));
      }
      if (need_weight && !weight_in_acc) grad_weight.narrow(0, v0, c).copy_(gw);
      if (need_bias) grad_bias.narrow(0, v0, c).copy_(gb);
    }
    if (need_hidden) grad_hidden = grad_hidden.to(hidden.scalar_type());
    return {grad_hidden,     grad_weight,     grad_bias,      torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// sum_i weight_i x loss_i over tokens i, for float32 and float64 inputs when gradients are wanted
// and the reduction gives one number: then d loss / d logits_i = weight_i x (softmax_i - onehot_i)
// is known in the forward pass already, up to the scalar that backward brings. Each token chunk's
// logits (all of the vocabulary: rows x V) are computed once and turned into their gradient in
// place, so the pass makes the three matrix products of linear + cross_entropy and no fourth to
// recompute them; backward only scales the gradients it kept. (Low-precision inputs take
// LinearTokenCrossEntropy, whose vocabulary-outer backward accumulates grad_weight in float32 one
// chunk at a time; here it is accumulated over token chunks in the weight's own dtype.)
class LinearCrossEntropyWithGradients
    : public torch::autograd::Function<LinearCrossEntropyWithGradients> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& weight, const torch::Tensor& given_bias,
                               const torch::Tensor& targets, const torch::Tensor& valid,
                               const torch::Tensor& token_weights, std::int64_t rows) {
    const torch::Tensor bias = given_bias.numel() > 0 ? given_bias : torch::Tensor();
    const bool need_hidden = hidden.requires_grad(), need_weight = weight.requires_grad();
    const bool need_bias = bias.defined() && bias.requires_grad();
    const std::int64_t tokens = hidden.size(0), dim = hidden.size(1);
    torch::Tensor loss = torch::zeros({}, hidden.options());
    torch::Tensor grad_hidden =
        need_hidden ? torch::empty({tokens, dim}, hidden.options()) : torch::Tensor();
    torch::Tensor grad_weight = need_weight ? torch::zeros_like(weight) : torch::Tensor();
    torch::Tensor grad_bias = need_bias ? torch::zeros_like(bias) : torch::Tensor();
    for (std::int64_t t0 = 0; t0 < tokens; t0 += rows) {
      const std::int64_t n = std::min(rows, tokens - t0);
      torch::Tensor h = hidden.narrow(0, t0, n);
      torch::Tensor target = targets.narrow(0, t0, n).unsqueeze(1);
      torch::Tensor w = token_weights.narrow(0, t0, n).unsqueeze(1);
      torch::Tensor logits = ChunkLogits(h, weight, bias, hidden.scalar_type());  // [n, V]
      torch::Tensor target_logit = logits.gather(1, target).squeeze(1);
      torch::Tensor max = std::get<0>(logits.max(1, /*keepdim=*/true));
      torch::Tensor sum = logits.sub_(max).exp_().sum(1, /*keepdim=*/true);
      torch::Tensor token_loss = (sum.log() + max).squeeze(1) - target_logit;
      loss.add_(torch::where(valid.narrow(0, t0, n), token_loss, torch::zeros_like(token_loss))
                    .mul_(w.squeeze(1))
                    .sum());
      // softmax x weight, minus weight at the target: the logits' gradient, in place.
      torch::Tensor grad_logits = logits.mul_(w / sum);
      grad_logits.scatter_add_(1, target, w.neg());
      if (need_hidden) {
        torch::Tensor rows_of_grad = grad_hidden.narrow(0, t0, n);
        at::mm_out(rows_of_grad, grad_logits, weight);
      }
      if (need_weight) grad_weight.addmm_(grad_logits.t(), h);
      if (need_bias) grad_bias.add_(grad_logits.sum(0));
    }
    // Kept as plain data, not saved variables: backward scales them in place and lets them go, so
    // that no second copy of grad_weight ([V, D]) ever exists.
    if (need_hidden) ctx->saved_data["grad_hidden"] = grad_hidden;
    if (need_weight) ctx->saved_data["grad_weight"] = grad_weight;
    if (need_bias) ctx->saved_data["grad_bias"] = grad_bias;
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const torch::Tensor& scale = grad_outputs[0];
    auto take = [&](const char* name) {
      auto found = ctx->saved_data.find(name);
      if (found == ctx->saved_data.end()) return torch::Tensor();
      torch::Tensor grad = found->second.toTensor();
      ctx->saved_data.erase(found);
      return grad.mul_(scale);
    };
    if (ctx->saved_data.count("released") != 0) {
      throw std::runtime_error(
          "LinearCrossEntropy: backward through the same loss a second time (retain_graph): its "
          "gradients were computed in the forward pass and handed over by the first backward");
    }
    ctx->saved_data["released"] = true;
    return {take("grad_hidden"), take("grad_weight"), take("grad_bias"), torch::Tensor(),
            torch::Tensor(),     torch::Tensor(),     torch::Tensor()};
  }
};

void RequireLossDtype(const torch::Tensor& tensor, const char* name) {
  const torch::ScalarType type = tensor.scalar_type();
  if (type != torch::kFloat32 && type != torch::kFloat64 && type != torch::kBFloat16 &&
      type != torch::kFloat16) {
    throw DtypeError(std::string(name) +
                     " must be float32, float64, bfloat16 or float16, but got " +
                     c10::toString(type));
  }
}

void RequireSameDtypeAndDevice(const torch::Tensor& tensor, const char* name,
                               const torch::Tensor& hidden) {
  if (tensor.scalar_type() != hidden.scalar_type()) {
    throw DtypeError(std::string(name) + " must have the dtype of hidden (" +
                     c10::toString(hidden.scalar_type()) + "), but got " +
                     c10::toString(tensor.scalar_type()));
  }
  if (tensor.device() != hidden.device()) {
    throw std::invalid_argument(std::string(name) + " must be on hidden's device (" +
                                hidden.device().str() + "), but is on " + tensor.device().str());
  }
}

}  // namespace

torch::Tensor LinearCrossEntropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                 const torch::Tensor& bias, const torch::Tensor& labels,
                                 const LinearCrossEntropyOptions& options) {
  if (hidden.dim() != 3 && hidden.dim() != 2)
    throw std::invalid_argument("hidden must be [B, T, D] or [N, D], but got shape " +
                                Shape(hidden));
  RequireLossDtype(hidden, "hidden");
  const std::int64_t dim = hidden.size(-1);
  if (weight.dim() != 2 || weight.size(1) != dim || weight.size(0) < 1) {
    throw std::invalid_argument("weight must be [V, D] with D = " + std::to_string(dim) +
                                " (hidden " + Shape(hidden) + ") and V >= 1, but got shape " +
                                Shape(weight));
  }
  RequireSameDtypeAndDevice(weight, "weight", hidden);
  const std::int64_t vocab = weight.size(0);
  if (bias.defined()) {
    if (bias.dim() != 1 || bias.size(0) != vocab) {
      throw std::invalid_argument("bias must be [V] = [" + std::to_string(vocab) +
                                  "], but got shape " + Shape(bias));
    }
    RequireSameDtypeAndDevice(bias, "bias", hidden);
  }
  const bool sequences = hidden.dim() == 3;
  const bool labels_match = sequences ? labels.dim() == 2 && labels.size(0) == hidden.size(0) &&
                                            labels.size(1) == hidden.size(1)
                                      : labels.dim() == 1 && labels.size(0) == hidden.size(0);
  if (!labels_match) {
    throw std::invalid_argument(
        std::string("labels must be ") +
        (sequences ? "[B, T] matching hidden [B, T, D] = " : "[N] matching hidden [N, D] = ") +
        Shape(hidden) + ", but got shape " + Shape(labels));
  }
  detail::RequireIntegerLabels(labels);
  if (labels.device() != hidden.device()) {
    throw std::invalid_argument("labels must be on hidden's device (" + hidden.device().str() +
                                "), but are on " + labels.device().str());
  }
  detail::CheckNumItems(options.num_items(), options.reduction());
  if (options.chunk_tokens() < 0 || options.chunk_vocab() < 0) {
    throw std::invalid_argument(
        "chunk_tokens and chunk_vocab must be >= 0 (0: automatic), but got " +
        std::to_string(options.chunk_tokens()) + " and " + std::to_string(options.chunk_vocab()));
  }

  const std::int64_t batch = sequences ? hidden.size(0) : 1;
  const std::int64_t time = sequences ? hidden.size(1) : hidden.size(0);
  detail::Targets targets = detail::ShiftedTargets(labels.reshape({batch, time}), vocab,
                                                   options.ignore_index(), options.shift_labels());
  const torch::Tensor flat = hidden.reshape({batch * time, dim});
  const torch::Tensor bias_or_empty = bias.defined() ? bias : torch::empty({0}, weight.options());
  const bool wants_gradients =
      torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad() ||
                                        (bias.defined() && bias.requires_grad()));
  if (wants_gradients && options.reduction() != Reduction::kNone &&
      AccumulationType(hidden) == hidden.scalar_type()) {
    // One number with gradients in float32/64: the gradients come out of the forward pass.
    torch::Tensor token_weights = targets.valid.to(hidden.scalar_type());
    if (options.num_items()) {
      token_weights.div_(static_cast<double>(std::max<std::int64_t>(*options.num_items(), 1)));
      if (*options.num_items() == 0) token_weights.zero_();
    } else if (options.reduction() == Reduction::kMean) {
      token_weights.div_(targets.valid.sum().clamp_min(1).to(hidden.scalar_type()));
    }
    // Chunks of whole vocabulary rows.
    const Tiling rows_only = ChooseTiling(batch * time, vocab, dim,
                                          LinearCrossEntropyOptions(options).chunk_vocab(vocab));
    return LinearCrossEntropyWithGradients::apply(flat, weight, bias_or_empty, targets.safe,
                                                  targets.valid, token_weights, rows_only.rows);
  }
  const Tiling tiling = ChooseTiling(batch * time, vocab, dim, options);
  torch::Tensor per_token = LinearTokenCrossEntropy::apply(
      flat, weight, bias_or_empty, targets.safe, targets.valid, tiling.rows, tiling.cols);
  torch::Tensor loss = detail::Reduce(per_token, targets.valid, batch, time, options.shift_labels(),
                                      options.reduction(), options.num_items());
  return sequences || options.reduction() != Reduction::kNone ? loss : loss.reshape({-1});
}

}  // namespace lossguard::collector
