#include "lossguard/collector/grad_norm.h"

#include <ATen/ATen.h>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "detail/host_read.h"

namespace lossguard::collector {

namespace {
std::vector<torch::Tensor> Gradients(const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  return grads;
}

// The total norm as clip_grad_norm_ computes it: the L2 norm of the per-tensor L2 norms.
torch::Tensor TotalNorm(const std::vector<torch::Tensor>& grads) {
  if (grads.empty()) return torch::zeros({});
  std::vector<torch::Tensor> norms;
  norms.reserve(grads.size());
  for (const torch::Tensor& g : grads) norms.push_back(g.norm(2));
  return torch::stack(norms).norm(2);
}
}  // namespace

GradNormStats ComputeGradNorm(const std::vector<torch::Tensor>& parameters,
                              const std::vector<std::vector<torch::Tensor>>& groups) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads = Gradients(parameters);
  // Everything as tensors first, then one read to the host (one copy per device).
  std::vector<torch::Tensor> values = {TotalNorm(grads)};
  for (const auto& group : groups) values.push_back(TotalNorm(Gradients(group)));
  const std::size_t first_count = values.size();
  for (const torch::Tensor& g : grads) values.push_back((~g.isfinite()).sum());
  const std::vector<double> host = detail::ReadToHost(values);
  GradNormStats stats;
  stats.total_norm = host[0];
  stats.group_norms.assign(host.begin() + 1,
                           host.begin() + static_cast<std::ptrdiff_t>(first_count));
  for (std::size_t i = first_count; i < host.size(); ++i)
    stats.nonfinite += static_cast<std::int64_t>(host[i]);
  return stats;
}

torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& parameters, double max_norm) {
  if (!(max_norm > 0))
    throw std::invalid_argument("max_norm must be > 0, but got " + std::to_string(max_norm));
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads = Gradients(parameters);
  torch::Tensor total = TotalNorm(grads);
  // Multiplying by a coefficient clamped to 1 (as torch.nn.utils.clip_grad_norm_ does) instead of
  // asking whether it is below 1: no host synchronisation. x * 1.0 is x exactly.
  torch::Tensor coefficient = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (torch::Tensor& g : grads) g.mul_(coefficient.to(g.device()).to(g.dtype()));
  return total;
}

}  // namespace lossguard::collector
