#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace lossguard::collector {

struct GradNormStats {
  // Total L2 norm over every gradient (parameters without a gradient are skipped); NaN or Inf when
  // a gradient holds one. Computed as torch::nn::utils::clip_grad_norm_ does.
  double total_norm = 0;
  std::int64_t nonfinite = 0;       // gradient elements that are NaN or +-Inf
  std::vector<double> group_norms;  // L2 norm per group, when groups were given
};

// Gradient statistics before clipping. `groups` (optional) partitions parameters into, e.g., the
// optimizer's parameter groups. Reads gradients only; never modifies them. Waits for the device
// once: the norms and counts are computed as tensors and read to the host together.
GradNormStats ComputeGradNorm(const std::vector<torch::Tensor>& parameters,
                              const std::vector<std::vector<torch::Tensor>>& groups = {});

// Scales gradients so that their total L2 norm is at most `max_norm` and returns the norm before
// clipping as a 0-dim tensor: the same arithmetic as torch.nn.utils.clip_grad_norm_ (every
// gradient times min(1, max_norm / (norm + 1e-6))). Nothing is read to the host. Throws
// std::invalid_argument when max_norm is not > 0.
torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& parameters, double max_norm);

}  // namespace lossguard::collector
