// Per-record cost of the analyzers alone (no server): RunAnalyzer::Add over GA-8 records with
// micro-batch data, the shape the collector sends, from one rank and from 1,024 (step-major, as a
// job's ranks report: each step judged once its last rank is in).
//   build/tests/bench/analyzer_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "lossguard/analyzers/run_analyzer.h"

namespace {

// `steps` steps of `world_size` ranks each, step-major. Every rank reports the step's grad_norm
// (after the all-reduce, the same gradients), unless `diverging`: then each rank its own, and the
// rank-divergence rule fires at every step, naming most ranks.
std::vector<lossguard::wire::StepRecord> Records(std::int64_t steps, std::int64_t world_size,
                                                 bool diverging = false) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> length(100, 2048);
  std::lognormal_distribution<double> noise(0.0, 0.05);
  std::vector<lossguard::wire::StepRecord> out;
  double step_norm = 0;
  for (std::int64_t i = 0; i < steps * world_size; ++i) {
    const std::int64_t step = i / world_size;
    lossguard::wire::StepRecord r;
    r.run = "bench";
    r.step = step;
    r.rank = i % world_size;
    r.world_size = world_size;
    r.ga_steps = 8;
    r.micro_batch_size = 4;
    r.vocab_size = 32000;
    double level = 2.0 + 8.0 * std::exp(-static_cast<double>(step) / 2000.0), sum = 0;
    std::int64_t tokens = 0;
    for (int m = 0; m < 8; ++m) {
      lossguard::wire::MicroBatch mb;
      mb.tokens = length(rng);
      mb.loss = level * noise(rng);
      mb.loss_sum = mb.loss * static_cast<double>(mb.tokens);
      sum += *mb.loss_sum;
      tokens += mb.tokens;
      r.micro.push_back(mb);
    }
    r.loss = sum / static_cast<double>(tokens);
    r.ref_loss = r.loss;
    r.tokens = tokens;
    if (r.rank == 0 || diverging) step_norm = 1.2 * noise(rng);
    r.grad_norm = step_norm;
    r.lr = 3e-4;
    out.push_back(std::move(r));
  }
  return out;
}

// Arguments: the world size, and whether the ranks' grad norms diverge. The records cycle, their
// steps moved on by the steps they cover.
void BM_RunAnalyzerAdd(benchmark::State& state) {
  const std::int64_t world_size = state.range(0);
  const std::int64_t steps = std::max<std::int64_t>(64, 20000 / world_size);
  const auto records = Records(steps, world_size, state.range(1) != 0);
  lossguard::analyzers::RunAnalyzer analyzer;
  std::size_t i = 0;
  std::int64_t offset = 0;
  for (auto _ : state) {
    lossguard::wire::StepRecord r = records[i];
    r.step += offset;
    benchmark::DoNotOptimize(analyzer.Add(r));
    if (++i == records.size()) {
      i = 0;
      offset += steps;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RunAnalyzerAdd)->Args({1, 0})->Args({1024, 0})->Args({1024, 1});

// The copy the benchmark above makes per record, to subtract.
void BM_RecordCopy(benchmark::State& state) {
  const auto records = Records(1000, 1);
  std::size_t i = 0;
  for (auto _ : state) {
    lossguard::wire::StepRecord r = records[i];
    benchmark::DoNotOptimize(r);
    i = (i + 1) % records.size();
  }
}
BENCHMARK(BM_RecordCopy);

}  // namespace
