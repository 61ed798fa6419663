#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <stdexcept>

namespace lossguard::collector {

enum class Reduction {
  kNone,  // per-token losses, shape [B, T-1]; ignored positions are 0
  kSum,   // sum of token losses
  kMean,  // sum / number of predicted label tokens in this call; 0 (not NaN) when there are none
};

// Which label tokens a count includes. Causal LM position t predicts labels[:, t+1], so the first
// label of each sequence is never predicted.
enum class LabelCount {
  // labels[:, 1:] != ignore_index: exactly the tokens that contribute to the loss. The default:
  // with it, sum / count is the true mean token loss.
  kShifted,
  // labels != ignore_index before the shift: what Hugging Face transformers counts for
  // num_items_in_batch. About one token per sequence more than kShifted, so the loss comes out
  // slightly lower; use it to reproduce transformers' numbers exactly.
  kUnshifted,
};

// Options in the style of torch::nn::functional::CrossEntropyFuncOptions (chained setters).
struct CausalLmLossOptions {
  TORCH_ARG(std::int64_t, ignore_index) = -100;
  TORCH_ARG(Reduction, reduction) = Reduction::kMean;
  // Normalise by a count supplied by the caller (e.g. label tokens of the whole accumulation window
  // across ranks): the result is sum / num_items, whatever kSum or kMean says. Not with kNone.
  TORCH_ARG(std::optional<std::int64_t>, num_items) = std::nullopt;
};

// A tensor of the wrong dtype (logits that are not floating point, labels that are not integers).
// A std::invalid_argument, so that callers catching that see it too; the Python package raises it
// as TypeError.
class DtypeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Causal-LM cross entropy: logits [B, T, V] and labels [B, T] (integer; ignore_index marks
// positions without a label). Position t of the logits predicts labels[:, t+1]. Any floating
// dtype: computed in float32 one chunk of rows at a time, without a float32 copy of low-precision
// logits; the loss is float32 and the gradient has the logits' dtype. Gradients are exact for every
// reduction, also when most or all labels are ignored (those positions get zero gradient; zero
// tokens give a zero loss, never NaN).
//
// It does not keep a [N, V] log-softmax for the backward pass (it recomputes the softmax from the
// logits the caller already holds), which is why it is as fast as, or faster than,
// torch::nn::functional::cross_entropy (tests/bench/collector_bench.cc).
//
// Throws std::invalid_argument naming the offending value for bad shapes, labels outside [0, V)
// that are not ignore_index, num_items < 0, or num_items with reduction kNone; DtypeError for
// bad dtypes. Host synchronisation: the label range check reads the labels on the CPU; on another
// device it is a device-side assertion and nothing waits for the device.
torch::Tensor CausalLmCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                   const CausalLmLossOptions& options = {});

// Number of label tokens in `labels` [B, T] under `convention`, as a 0-dim int64 tensor on the
// labels' device (no host synchronisation). Throws std::invalid_argument for another shape,
// DtypeError for labels that are not integers.
torch::Tensor LabelTokens(const torch::Tensor& labels, LabelCount convention,
                          std::int64_t ignore_index = -100);

// The same count read to the host (a synchronisation when the labels are on a device).
std::int64_t CountLabelTokens(const torch::Tensor& labels, LabelCount convention,
                              std::int64_t ignore_index = -100);

}  // namespace lossguard::collector
