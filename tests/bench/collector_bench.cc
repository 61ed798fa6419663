// CausalLmCrossEntropy vs LibTorch's cross_entropy on CPU: forward, and forward + backward, at
// N = 4,096 tokens, V = 32,000 (the shape), in the same run so that the ratio is what
// counts.
//   build/tests/bench/collector_bench --benchmark_filter=tokens:4096
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "lossguard/collector/loss.h"

namespace {

namespace F = torch::nn::functional;
constexpr std::int64_t kSequences = 4;

struct Inputs {
  torch::Tensor logits, labels, shifted_labels;
};

// 4 sequences of tokens / 4 + 1 positions: `tokens` predicted tokens after the shift, 10% ignored.
Inputs MakeInputs(std::int64_t tokens, std::int64_t vocab) {
  torch::manual_seed(0);
  Inputs in;
  in.logits = torch::randn({kSequences, tokens / kSequences + 1, vocab});
  in.labels = torch::randint(0, vocab, {kSequences, tokens / kSequences + 1});
  in.labels.masked_fill_(torch::rand(in.labels.sizes()).lt(0.1), -100);
  in.shifted_labels = in.labels.slice(1, 1).reshape({-1});
  return in;
}

void BM_Lossguard(benchmark::State& state) {
  const std::int64_t tokens = state.range(1), vocab = state.range(2);
  Inputs in = MakeInputs(tokens, vocab);
  for (auto _ : state) {
    auto logits = in.logits.detach().requires_grad_(true);
    auto loss = lossguard::collector::CausalLmCrossEntropy(logits, in.labels);
    if (state.range(0)) loss.backward();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.SetItemsProcessed(state.iterations() * tokens);
}

void BM_LibTorch(benchmark::State& state) {
  const std::int64_t tokens = state.range(1), vocab = state.range(2);
  Inputs in = MakeInputs(tokens, vocab);
  for (auto _ : state) {
    auto logits = in.logits.detach().requires_grad_(true);
    // What a trainer writes: shift, flatten, cross_entropy with ignore_index.
    auto shifted = logits.slice(1, 0, logits.size(1) - 1).reshape({-1, vocab});
    auto loss = F::cross_entropy(shifted, in.shifted_labels,
                                 F::CrossEntropyFuncOptions().ignore_index(-100));
    if (state.range(0)) loss.backward();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.SetItemsProcessed(state.iterations() * tokens);
}

// {backward, tokens, vocab}: the shape, and a small one for the ctest smoke run.
void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"backward", "tokens", "vocab"});
  for (std::int64_t backward : {0, 1}) {
    b->Args({backward, 4096, 32000});
    b->Args({backward, 512, 4096});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_Lossguard)->Apply(Shapes);
BENCHMARK(BM_LibTorch)->Apply(Shapes);

}  // namespace
