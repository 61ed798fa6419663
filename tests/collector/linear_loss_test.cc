#include "lossguard/collector/linear_loss.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <string>

namespace lossguard::collector {
namespace {

namespace F = torch::nn::functional;
using ::testing::HasSubstr;

struct Inputs {
  torch::Tensor hidden, weight, bias, labels;  // [B, T, D], [V, D], [V], [B, T]
};

// Labels with `ignored` of them ignore_index, in runs of 8 (the Liger-Kernel #678 pattern).
Inputs MakeInputs(std::int64_t b, std::int64_t t, std::int64_t d, std::int64_t v, double ignored,
                  std::uint64_t seed, torch::ScalarType dtype = torch::kFloat64) {
  torch::manual_seed(seed);
  Inputs in{torch::randn({b, t, d}, torch::kFloat64), torch::randn({v, d}, torch::kFloat64) * 0.5,
            torch::randn({v}, torch::kFloat64), torch::randint(0, v, {b, t})};
  auto runs = torch::rand({b, t / 8 + 1}).lt(ignored).repeat_interleave(8, 1).slice(1, 0, t);
  in.labels.masked_fill_(runs, -100);
  in.hidden = in.hidden.to(dtype);
  in.weight = in.weight.to(dtype);
  in.bias = in.bias.to(dtype);
  return in;
}

// What a trainer writes without lossguard: the head, then shift, flatten and cross_entropy.
torch::Tensor Reference(const torch::Tensor& hidden, const torch::Tensor& weight,
                        const torch::Tensor& bias, const torch::Tensor& labels,
                        torch::nn::CrossEntropyLossOptions::reduction_t reduction) {
  torch::Tensor logits = F::linear(hidden, weight, bias);
  auto shifted = logits.slice(1, 0, logits.size(1) - 1).reshape({-1, logits.size(2)});
  return F::cross_entropy(shifted, labels.slice(1, 1).reshape({-1}),
                          F::CrossEntropyFuncOptions().ignore_index(-100).reduction(reduction));
}

struct Gradients {
  torch::Tensor value, hidden, weight, bias;
};

// Value and gradients of `loss` (a scalar, or per-token values weighted by `weights` so that a
// wrong per-token gradient cannot hide in a symmetric sum).
Gradients Evaluate(const Inputs& in, const std::function<torch::Tensor(const Inputs&)>& loss,
                   const torch::Tensor& weights = {}) {
  Inputs leaf{in.hidden.detach().clone().requires_grad_(true),
              in.weight.detach().clone().requires_grad_(true),
              in.bias.detach().clone().requires_grad_(true), in.labels};
  torch::Tensor value = loss(leaf);
  torch::Tensor scalar = weights.defined() ? (value.reshape({-1}) * weights).sum() : value;
  scalar.backward();
  return {value.detach(), leaf.hidden.grad(), leaf.weight.grad(), leaf.bias.grad()};
}

void ExpectClose(const Gradients& ours, const Gradients& reference, double tolerance,
                 const std::string& what) {
  auto check = [&](const torch::Tensor& a, const torch::Tensor& b, const char* name) {
    ASSERT_TRUE(a.defined() && b.defined()) << what << ": " << name;
    ASSERT_EQ(a.sizes(), b.sizes()) << what << ": " << name;
    const double scale = std::max(1.0, b.abs().max().item<double>());
    const double diff = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
    EXPECT_LE(diff, tolerance * scale) << what << ": " << name << " max abs diff " << diff;
  };
  check(ours.value, reference.value, "loss");
  check(ours.hidden, reference.hidden, "grad_hidden");
  check(ours.weight, reference.weight, "grad_weight");
  check(ours.bias, reference.bias, "grad_bias");
}

// Small chunks force many partial token and vocabulary chunks (97 = 7 x 13 + 6).
const LinearCrossEntropyOptions kTiny = LinearCrossEntropyOptions().chunk_tokens(7).chunk_vocab(13);

TEST(LinearCrossEntropy, MatchesLinearPlusCrossEntropyInFloat64ForEveryReduction) {
  Inputs in = MakeInputs(3, 29, 12, 97, 0.3, 1);
  for (const LinearCrossEntropyOptions& chunks : {LinearCrossEntropyOptions(), kTiny}) {
    const std::string tiling = chunks.chunk_tokens() ? "7 x 13 chunks" : "automatic chunks";
    auto ours = [&](Reduction reduction) {
      return [&, reduction](const Inputs& l) {
        return LinearCrossEntropy(l.hidden, l.weight, l.bias, l.labels,
                                  LinearCrossEntropyOptions(chunks).reduction(reduction));
      };
    };
    ExpectClose(Evaluate(in, ours(Reduction::kMean)),
                Evaluate(in,
                         [](const Inputs& l) {
                           return Reference(l.hidden, l.weight, l.bias, l.labels, torch::kMean);
                         }),
                1e-12, "mean, " + tiling);
    ExpectClose(Evaluate(in, ours(Reduction::kSum)),
                Evaluate(in,
                         [](const Inputs& l) {
                           return Reference(l.hidden, l.weight, l.bias, l.labels, torch::kSum);
                         }),
                1e-12, "sum, " + tiling);
  }
}

TEST(LinearCrossEntropy, ReductionNoneWithLongIgnoreRunsHasTheReferenceGradients) {
  // Liger-Kernel's fused linear cross entropy returned all-zero gradients here (#678).
  Inputs in = MakeInputs(2, 512, 16, 64, 0.9, 2);
  torch::manual_seed(3);
  torch::Tensor weights = torch::rand({2 * 511}, torch::kFloat64);
  Gradients ours = Evaluate(
      in,
      [](const Inputs& l) {
        return LinearCrossEntropy(l.hidden, l.weight, l.bias, l.labels,
                                  LinearCrossEntropyOptions(kTiny).reduction(Reduction::kNone));
      },
      weights);
  Gradients reference = Evaluate(
      in,
      [](const Inputs& l) { return Reference(l.hidden, l.weight, l.bias, l.labels, torch::kNone); },
      weights);
  ASSERT_EQ(ours.value.sizes(), (std::vector<std::int64_t>{2, 511}));
  ours.value = ours.value.reshape({-1});
  ExpectClose(ours, reference, 1e-12, "reduction none, 90% ignored in runs of 8");
  EXPECT_GT(ours.weight.abs().sum().item<double>(), 0) << "the gradients are not all zero";
  EXPECT_GT(ours.hidden.abs().sum().item<double>(), 0);
}

TEST(LinearCrossEntropy, NoLabelsGiveZeroLossAndZeroGradientsNeverNaN) {
  Inputs in = MakeInputs(2, 9, 8, 11, 0.0, 4);
  in.labels.fill_(-100);
  for (auto options :
       {LinearCrossEntropyOptions(), LinearCrossEntropyOptions().reduction(Reduction::kSum),
        LinearCrossEntropyOptions().num_items(0)}) {
    Gradients g = Evaluate(in, [&](const Inputs& l) {
      return LinearCrossEntropy(l.hidden, l.weight, l.bias, l.labels, options);
    });
    EXPECT_EQ(g.value.item<double>(), 0.0);
    for (const torch::Tensor& grad : {g.hidden, g.weight, g.bias}) {
      EXPECT_TRUE(grad.isfinite().all().item<bool>());
      EXPECT_EQ(grad.abs().max().item<double>(), 0.0);
    }
  }
}

TEST(LinearCrossEntropy, NumItemsDividesTheSumAndMatchesTheUnfusedLoss) {
  Inputs in = MakeInputs(2, 17, 8, 23, 0.2, 5, torch::kFloat32);
  auto sum = LinearCrossEntropy(in.hidden, in.weight, in.bias, in.labels,
                                LinearCrossEntropyOptions().reduction(Reduction::kSum));
  auto normalised = LinearCrossEntropy(in.hidden, in.weight, in.bias, in.labels,
                                       LinearCrossEntropyOptions().num_items(1000));
  EXPECT_NEAR(normalised.item<double>(), sum.item<double>() / 1000,
              1e-6 * normalised.item<double>());
  // The same as the unfused CausalLmCrossEntropy on materialised logits.
  auto unfused = CausalLmCrossEntropy(F::linear(in.hidden, in.weight, in.bias), in.labels,
                                      CausalLmLossOptions().reduction(Reduction::kSum));
  EXPECT_NEAR(sum.item<double>(), unfused.item<double>(), 1e-5 * std::abs(unfused.item<double>()));
}

TEST(LinearCrossEntropy, FlatInputsWithAlignedLabelsAndNoBias) {
  // [N, D] with labels already aligned (a packed batch the caller shifted itself), no bias.
  Inputs in = MakeInputs(1, 40, 8, 19, 0.25, 6);
  torch::Tensor flat_hidden = in.hidden.reshape({40, 8});
  torch::Tensor aligned = in.labels.reshape({40});
  Inputs flat{flat_hidden, in.weight, in.bias, aligned};
  Gradients ours = Evaluate(flat, [](const Inputs& l) {
    return LinearCrossEntropy(l.hidden, l.weight, torch::Tensor(), l.labels,
                              LinearCrossEntropyOptions(kTiny).shift_labels(false));
  });
  Gradients reference = Evaluate(flat, [](const Inputs& l) {
    return F::cross_entropy(F::linear(l.hidden, l.weight), l.labels,
                            F::CrossEntropyFuncOptions().ignore_index(-100));
  });
  EXPECT_FALSE(ours.bias.defined()) << "no bias given, none touched";
  ours.bias = reference.bias = torch::zeros({1});
  ExpectClose(ours, reference, 1e-12, "[N, D], shift_labels(false), no bias");
}

TEST(LinearCrossEntropy, ComputesOnlyTheGradientsAutogradAsksFor) {
  Inputs in = MakeInputs(2, 12, 8, 30, 0.1, 7);
  torch::Tensor weight = in.weight.clone().requires_grad_(true);
  torch::Tensor hidden = in.hidden.clone();  // frozen features: only the head learns
  LinearCrossEntropy(hidden, weight, torch::Tensor(), in.labels, kTiny).backward();
  torch::Tensor reference_weight = in.weight.clone().requires_grad_(true);
  Reference(in.hidden, reference_weight, torch::Tensor(), in.labels, torch::kMean).backward();
  EXPECT_TRUE(torch::allclose(weight.grad(), reference_weight.grad(), 1e-12, 1e-12));
}

// Low precision: inputs rounded to bfloat16 / float16, the reference computed in float64 from
// the same rounded values. bfloat16 chunks are multiplied in bfloat16 as LibTorch's linear does
// (float32 accumulation, the logits rounded once), then widened: the loss within 1e-4 relative,
// each gradient within 2^-7 of its largest magnitude (8-bit mantissa), and no further from the
// float64 values than LibTorch's own bfloat16 linear + cross_entropy. float16 has no CPU matrix
// product in LibTorch, so its chunks are widened before multiplying: the loss within 1e-5, the
// gradients within 2^-10.
TEST(LinearCrossEntropy, LowPrecisionInputsAccumulateInFloat32) {
  struct Case {
    torch::ScalarType dtype;
    double loss_tolerance, grad_tolerance;
  };
  for (const Case& test :
       {Case{torch::kBFloat16, 1e-4, 1.0 / 128}, Case{torch::kFloat16, 1e-5, 1.0 / 1024}}) {
    Inputs low = MakeInputs(2, 65, 32, 300, 0.2, 8, test.dtype);
    Inputs exact{low.hidden.to(torch::kFloat64), low.weight.to(torch::kFloat64),
                 low.bias.to(torch::kFloat64), low.labels};
    Gradients ours = Evaluate(low, [](const Inputs& l) {
      return LinearCrossEntropy(l.hidden, l.weight, l.bias, l.labels,
                                LinearCrossEntropyOptions().chunk_tokens(16).chunk_vocab(64));
    });
    EXPECT_EQ(ours.value.scalar_type(), torch::kFloat32);
    EXPECT_EQ(ours.hidden.scalar_type(), test.dtype);
    EXPECT_EQ(ours.weight.scalar_type(), test.dtype);
    Gradients reference = Evaluate(exact, [](const Inputs& l) {
      return Reference(l.hidden, l.weight, l.bias, l.labels, torch::kMean);
    });
    const std::string name = c10::toString(test.dtype);
    EXPECT_NEAR(ours.value.item<double>(), reference.value.item<double>(),
                test.loss_tolerance * reference.value.item<double>())
        << name;
    ExpectClose(ours, reference, test.grad_tolerance, name);
    if (test.dtype == torch::kBFloat16) {
      Gradients libtorch = Evaluate(low, [](const Inputs& l) {
        return Reference(l.hidden, l.weight, l.bias, l.labels, torch::kMean);
      });
      auto error = [](const torch::Tensor& a, const torch::Tensor& b) {
        return (a.to(torch::kFloat64) - b).abs().max().item<double>();
      };
      EXPECT_LE(error(ours.value, reference.value), error(libtorch.value, reference.value));
      EXPECT_LE(error(ours.hidden, reference.hidden), error(libtorch.hidden, reference.hidden));
      EXPECT_LE(error(ours.weight, reference.weight), error(libtorch.weight, reference.weight));
    }
  }
}

TEST(LinearCrossEntropy, ASecondBackwardThroughTheForwardGradientsIsRefused) {
  // float32 with a reduced loss: the gradients come from the forward pass and the first backward
  // hands them over, so a retained graph cannot give them twice.
  Inputs in = MakeInputs(2, 8, 4, 10, 0.0, 10, torch::kFloat32);
  torch::Tensor weight = in.weight.clone().requires_grad_(true);
  torch::Tensor loss = LinearCrossEntropy(in.hidden, weight, torch::Tensor(), in.labels);
  loss.backward({}, /*retain_graph=*/true);
  EXPECT_THAT([&] { loss.backward(); },
              ::testing::ThrowsMessage<std::exception>(HasSubstr("a second time (retain_graph)")));
}

TEST(LinearCrossEntropy, BadArgumentsAreRefusedWithTheValueNamed) {
  Inputs in = MakeInputs(2, 8, 4, 10, 0.0, 9, torch::kFloat32);
  auto call = [&](const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& b,
                  const torch::Tensor& y, LinearCrossEntropyOptions options = {}) {
    return [=] { LinearCrossEntropy(h, w, b, y, options); };
  };
  using ::testing::ThrowsMessage;
  EXPECT_THAT(
      call(in.hidden[0][0], in.weight, in.bias, in.labels),
      ThrowsMessage<std::invalid_argument>(HasSubstr("hidden must be [B, T, D] or [N, D]")));
  EXPECT_THAT(call(in.hidden, in.weight.slice(1, 0, 3), in.bias, in.labels),
              ThrowsMessage<std::invalid_argument>(HasSubstr("weight must be [V, D] with D = 4")));
  EXPECT_THAT(call(in.hidden, in.weight, in.bias.slice(0, 0, 9), in.labels),
              ThrowsMessage<std::invalid_argument>(HasSubstr("bias must be [V] = [10]")));
  EXPECT_THAT(call(in.hidden, in.weight, in.bias, in.labels.slice(1, 0, 7)),
              ThrowsMessage<std::invalid_argument>(HasSubstr("labels must be [B, T] matching")));
  EXPECT_THAT(call(in.hidden, in.weight.to(torch::kFloat64), in.bias, in.labels),
              ThrowsMessage<DtypeError>(HasSubstr("weight must have the dtype of hidden (Float)")));
  EXPECT_THAT(call(in.hidden.to(torch::kInt), in.weight, in.bias, in.labels),
              ThrowsMessage<DtypeError>(HasSubstr("hidden must be float32, float64, bfloat16")));
  EXPECT_THAT(call(in.hidden, in.weight, in.bias, in.labels.to(torch::kFloat32)),
              ThrowsMessage<DtypeError>(HasSubstr("labels must be integers")));
  torch::Tensor out_of_range = in.labels.clone();
  out_of_range[1][3] = 10;
  EXPECT_THAT(call(in.hidden, in.weight, in.bias, out_of_range),
              ThrowsMessage<std::invalid_argument>(HasSubstr("label 10 is outside [0, 10)")));
  EXPECT_THAT(
      call(in.hidden, in.weight, in.bias, in.labels, LinearCrossEntropyOptions().chunk_vocab(-1)),
      ThrowsMessage<std::invalid_argument>(HasSubstr("must be >= 0 (0: automatic)")));
  EXPECT_THAT(call(in.hidden, in.weight, in.bias, in.labels,
                   LinearCrossEntropyOptions().reduction(Reduction::kNone).num_items(3)),
              ThrowsMessage<std::invalid_argument>(HasSubstr("does not go with reduction kNone")));
}

}  // namespace
}  // namespace lossguard::collector
