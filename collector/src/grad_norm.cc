#include "lossguard/collector/grad_norm.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>

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
  GradNormStats stats;
  stats.total_norm = TotalNorm(grads).item<double>();
  for (const torch::Tensor& g : grads)
    stats.nonfinite += (~g.isfinite()).sum().item<std::int64_t>();
  for (const auto& group : groups)
    stats.group_norms.push_back(TotalNorm(Gradients(group)).item<double>());
  return stats;
}

double ClipGradNorm(const std::vector<torch::Tensor>& parameters, double max_norm) {
  if (!(max_norm > 0))
    throw std::invalid_argument("max_norm must be > 0, but got " + std::to_string(max_norm));
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads = Gradients(parameters);
  torch::Tensor total = TotalNorm(grads);
  torch::Tensor coefficient = max_norm / (total + 1e-6);
  if (coefficient.item<double>() < 1) {
    for (torch::Tensor& g : grads) g.mul_(coefficient.to(g.dtype()));
  }
  return total.item<double>();
}

}  // namespace lossguard::collector
