#include "lossguard/collector/grad_norm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace lossguard::collector {
namespace {

std::vector<torch::Tensor> ParamsWithGrads(std::uint64_t seed, double scale) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> params = {torch::randn({4, 5}, torch::requires_grad()),
                                       torch::randn({7}, torch::requires_grad()),
                                       torch::randn({3}, torch::requires_grad())};
  for (auto& p : params) p.mutable_grad() = torch::randn_like(p) * scale;
  params.push_back(torch::randn({2}, torch::requires_grad()));  // no gradient: skipped
  return params;
}

std::vector<torch::Tensor> Clone(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) {
    auto copy = p.detach().clone().requires_grad_(true);
    if (p.grad().defined()) copy.mutable_grad() = p.grad().clone();
    out.push_back(copy);
  }
  return out;
}

TEST(GradNorm, TotalMatchesClipGradNormAndGroupsPartitionIt) {
  auto params = ParamsWithGrads(1, 3.0);
  GradNormStats stats = ComputeGradNorm(params, {{params[0]}, {params[1], params[2]}});
  auto copy = Clone(params);
  double reference = torch::nn::utils::clip_grad_norm_(copy, 1e9);
  EXPECT_NEAR(stats.total_norm, reference, 1e-5 * reference);
  EXPECT_EQ(stats.nonfinite, 0);
  ASSERT_EQ(stats.group_norms.size(), 2u);
  EXPECT_NEAR(std::hypot(stats.group_norms[0], stats.group_norms[1]), stats.total_norm,
              1e-5 * stats.total_norm);
  EXPECT_TRUE(torch::equal(params[0].grad(), copy[0].grad()))
      << "computing the norm must not change gradients";
}

TEST(GradNorm, CountsNonFiniteElements) {
  auto params = ParamsWithGrads(2, 1.0);
  params[0].mutable_grad()[1][2] = std::nan("");
  params[1].mutable_grad()[0] = INFINITY;
  params[1].mutable_grad()[3] = -INFINITY;
  GradNormStats stats = ComputeGradNorm(params);
  EXPECT_EQ(stats.nonfinite, 3);
  EXPECT_TRUE(std::isnan(stats.total_norm))
      << "a NaN gradient makes the norm NaN, as in clip_grad_norm_";
}

TEST(GradNorm, ZeroAndMissingGradients) {
  auto p = torch::zeros({3}, torch::requires_grad());
  EXPECT_EQ(ComputeGradNorm({p}).total_norm, 0.0);
  p.mutable_grad() = torch::zeros({3});
  EXPECT_EQ(ComputeGradNorm({p}).total_norm, 0.0);
}

TEST(ClipGradNorm, MatchesLibTorchWhenClippingAndWhenNot) {
  for (double max_norm : {0.5, 1e6}) {
    auto ours = ParamsWithGrads(3, 2.0);
    auto theirs = Clone(ours);
    double our_norm = ClipGradNorm(ours, max_norm).item<double>();
    double their_norm = torch::nn::utils::clip_grad_norm_(theirs, max_norm);
    EXPECT_NEAR(our_norm, their_norm, 1e-5 * their_norm);
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_TRUE(torch::allclose(ours[i].grad(), theirs[i].grad(), 1e-6, 1e-7))
          << "max_norm " << max_norm << " param " << i;
    }
  }
  auto clipped = ParamsWithGrads(3, 2.0);
  ASSERT_GT(ComputeGradNorm(clipped).total_norm, 0.5);
  ClipGradNorm(clipped, 0.5);
  EXPECT_NEAR(ComputeGradNorm(clipped).total_norm, 0.5, 1e-5);
  EXPECT_THROW(ClipGradNorm(ParamsWithGrads(3, 1.0), 0.0), std::invalid_argument);
}

}  // namespace
}  // namespace lossguard::collector
