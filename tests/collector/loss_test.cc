#include "lossguard/collector/loss.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace lossguard::collector {
namespace {

namespace F = torch::nn::functional;
using ::testing::HasSubstr;

// The reference: shift logits and labels the usual way and ask LibTorch's own cross_entropy.
torch::Tensor Reference(const torch::Tensor& logits, const torch::Tensor& labels,
                        torch::nn::CrossEntropyLossOptions::reduction_t reduction) {
  auto shift_logits =
      logits.slice(1, 0, logits.size(1) - 1).reshape({-1, logits.size(2)}).to(torch::kFloat32);
  auto shift_labels = labels.slice(1, 1).reshape({-1});
  return F::cross_entropy(shift_logits, shift_labels,
                          F::CrossEntropyFuncOptions().ignore_index(-100).reduction(reduction));
}

struct Batch {
  torch::Tensor logits;
  torch::Tensor labels;
};

// Labels with `ignored` fraction of ignore_index, in long runs (the Liger-Kernel failure pattern).
Batch MakeBatch(std::int64_t b, std::int64_t t, std::int64_t v, double ignored,
                std::uint64_t seed) {
  torch::manual_seed(seed);
  Batch batch{torch::randn({b, t, v}) * 3, torch::randint(0, v, {b, t})};
  auto runs = torch::rand({b, t / 8 + 1}).lt(ignored).repeat_interleave(8, 1).slice(1, 0, t);
  batch.labels.masked_fill_(runs, -100);
  batch.logits.requires_grad_(true);
  return batch;
}

void ExpectGradientsMatch(const Batch& batch,
                          const std::function<torch::Tensor(const torch::Tensor&)>& ours,
                          const std::function<torch::Tensor(const torch::Tensor&)>& reference) {
  auto logits_a = batch.logits.detach().clone().requires_grad_(true);
  auto logits_b = batch.logits.detach().clone().requires_grad_(true);
  auto a = ours(logits_a);
  auto b = reference(logits_b);
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << a << " vs " << b;
  (a.dim() ? a.sum() : a).backward();
  (b.dim() ? b.sum() : b).backward();
  EXPECT_TRUE(torch::allclose(logits_a.grad(), logits_b.grad(), 1e-5, 1e-7))
      << "max abs diff " << (logits_a.grad() - logits_b.grad()).abs().max().item<double>();
}

TEST(CausalLmCrossEntropy, SumAndMeanMatchLibTorchInValueAndGradient) {
  Batch batch = MakeBatch(4, 33, 97, 0.3, 1);
  ExpectGradientsMatch(
      batch,
      [&](const torch::Tensor& l) {
        return CausalLmCrossEntropy(l, batch.labels,
                                    CausalLmLossOptions().reduction(Reduction::kSum));
      },
      [&](const torch::Tensor& l) { return Reference(l, batch.labels, torch::kSum); });
  ExpectGradientsMatch(
      batch, [&](const torch::Tensor& l) { return CausalLmCrossEntropy(l, batch.labels); },
      [&](const torch::Tensor& l) { return Reference(l, batch.labels, torch::kMean); });
}

TEST(CausalLmCrossEntropy, ReductionNoneWithLongIgnoreRunsHasTheReferenceGradients) {
  // Liger-Kernel returned all-zero gradients here; weight each token differently so that a wrong
  // gradient cannot hide behind a symmetric sum.
  Batch batch = MakeBatch(2, 512, 64, 0.9, 2);
  auto weights = torch::rand({2 * 511});
  ExpectGradientsMatch(
      batch,
      [&](const torch::Tensor& l) {
        return (CausalLmCrossEntropy(l, batch.labels,
                                     CausalLmLossOptions().reduction(Reduction::kNone))
                    .reshape({-1}) *
                weights)
            .sum();
      },
      [&](const torch::Tensor& l) {
        return (Reference(l, batch.labels, torch::kNone) * weights).sum();
      });
  auto logits = batch.logits.detach().clone().requires_grad_(true);
  CausalLmCrossEntropy(logits, batch.labels, CausalLmLossOptions().reduction(Reduction::kNone))
      .sum()
      .backward();
  EXPECT_GT(logits.grad().abs().sum().item<double>(), 0)
      << "gradients must reach the unignored tokens";
  auto none = CausalLmCrossEntropy(batch.logits, batch.labels,
                                   CausalLmLossOptions().reduction(Reduction::kNone));
  EXPECT_EQ(none.sizes(), (std::vector<std::int64_t>{2, 511}));
}

TEST(CausalLmCrossEntropy, AllLabelsIgnoredGivesZeroNotNaN) {
  Batch batch = MakeBatch(3, 10, 11, 0.0, 3);
  batch.labels.fill_(-100);
  for (auto options : {CausalLmLossOptions(), CausalLmLossOptions().reduction(Reduction::kSum),
                       CausalLmLossOptions().num_items(0)}) {
    auto logits = batch.logits.detach().clone().requires_grad_(true);
    auto loss = CausalLmCrossEntropy(logits, batch.labels, options);
    EXPECT_EQ(loss.item<double>(), 0.0);
    loss.backward();
    EXPECT_TRUE(logits.grad().isfinite().all().item<bool>());
    EXPECT_EQ(logits.grad().abs().sum().item<double>(), 0.0);
  }
}

TEST(CausalLmCrossEntropy, NumItemsNormalisesTheSum) {
  Batch batch = MakeBatch(2, 20, 30, 0.2, 4);
  auto sum = CausalLmCrossEntropy(batch.logits, batch.labels,
                                  CausalLmLossOptions().reduction(Reduction::kSum));
  auto normalised =
      CausalLmCrossEntropy(batch.logits, batch.labels, CausalLmLossOptions().num_items(123));
  EXPECT_NEAR(normalised.item<double>(), sum.item<double>() / 123, 1e-6);
}

TEST(CausalLmCrossEntropy, LowPrecisionLogitsAreComputedInFloat32) {
  Batch batch = MakeBatch(2, 16, 40, 0.1, 5);
  auto half = batch.logits.detach().to(torch::kBFloat16).requires_grad_(true);
  auto loss = CausalLmCrossEntropy(half, batch.labels);
  EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
  auto reference = Reference(half.detach().to(torch::kFloat32), batch.labels, torch::kMean);
  EXPECT_NEAR(loss.item<double>(), reference.item<double>(), 1e-5);
  loss.backward();
  EXPECT_EQ(half.grad().scalar_type(), torch::kBFloat16);
}

TEST(CausalLmCrossEntropy, BadInputIsRefusedWithTheValue) {
  auto logits = torch::randn({2, 5, 7});
  auto labels = torch::randint(0, 7, {2, 5});
  EXPECT_THAT([&] { CausalLmCrossEntropy(logits[0], labels); },
              ::testing::ThrowsMessage<std::invalid_argument>(
                  HasSubstr("[B, T, V], but got shape [5, 7]")));
  EXPECT_THAT([&] { CausalLmCrossEntropy(logits, labels.slice(1, 0, 4)); },
              ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("but got shape [2, 4]")));
  auto bad = labels.clone();
  bad[1][3] = 9;
  EXPECT_THAT(
      [&] { CausalLmCrossEntropy(logits, bad); },
      ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("label 9 is outside [0, 7)")));
  EXPECT_THAT([&] { CausalLmCrossEntropy(logits, labels, CausalLmLossOptions().num_items(-1)); },
              ::testing::ThrowsMessage<std::invalid_argument>(
                  HasSubstr("num_items must be >= 0, but got -1")));
  EXPECT_THAT(
      [&] {
        CausalLmCrossEntropy(logits, labels,
                             CausalLmLossOptions().num_items(3).reduction(Reduction::kNone));
      },
      ::testing::ThrowsMessage<std::invalid_argument>(
          HasSubstr("does not go with reduction kNone")));
  EXPECT_THAT(
      [&] { CausalLmCrossEntropy(logits, labels.to(torch::kFloat32)); },
      ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("labels must be integers")));
  // Dtype errors are their own type (the Python package raises them as TypeError).
  EXPECT_THAT(
      [&] { CausalLmCrossEntropy(logits, labels.to(torch::kBool)); },
      ::testing::ThrowsMessage<DtypeError>(HasSubstr("labels must be integers, but got Bool")));
  EXPECT_THAT([&] { CausalLmCrossEntropy(logits.to(torch::kLong), labels); },
              ::testing::ThrowsMessage<DtypeError>(
                  HasSubstr("logits must be a floating-point tensor, but got Long")));
  EXPECT_THAT([&] { CountLabelTokens(labels.to(torch::kFloat64), LabelCount::kShifted); },
              ::testing::ThrowsMessage<DtypeError>(HasSubstr("labels must be integers")));
}

TEST(CountLabelTokens, ShiftedCountsOneLessPerSequenceWhoseFirstLabelCounts) {
  auto labels =
      torch::tensor({{5, 6, 7, -100}, {-100, 1, 2, 3}, {4, -100, -100, -100}}, torch::kLong);
  EXPECT_EQ(CountLabelTokens(labels, LabelCount::kUnshifted), 7);
  EXPECT_EQ(CountLabelTokens(labels, LabelCount::kShifted),
            5);  // rows 0 and 2 lose their first label
}

}  // namespace
}  // namespace lossguard::collector
