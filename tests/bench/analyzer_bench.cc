// Per-record cost of the analyzers alone (no server): RunAnalyzer::Add over GA-8 records with
// micro-batch data, the shape the collector sends.
//   build/tests/bench/analyzer_bench
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>

#include "lossguard/analyzers/run_analyzer.h"

namespace {

std::vector<lossguard::wire::StepRecord> Records(std::int64_t count) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> length(100, 2048);
  std::lognormal_distribution<double> noise(0.0, 0.05);
  std::vector<lossguard::wire::StepRecord> out;
  for (std::int64_t step = 0; step < count; ++step) {
    lossguard::wire::StepRecord r;
    r.run = "bench";
    r.step = step;
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
    r.grad_norm = 1.2 * noise(rng);
    r.lr = 3e-4;
    out.push_back(std::move(r));
  }
  return out;
}

void BM_RunAnalyzerAdd(benchmark::State& state) {
  const auto records = Records(20'000);
  lossguard::analyzers::RunAnalyzer analyzer;
  std::size_t i = 0;
  std::int64_t offset = 0;
  for (auto _ : state) {
    lossguard::wire::StepRecord r = records[i];
    r.step += offset;
    benchmark::DoNotOptimize(analyzer.Add(r));
    if (++i == records.size()) {
      i = 0;
      offset += static_cast<std::int64_t>(records.size());
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RunAnalyzerAdd);

// The copy the benchmark above makes per record, to subtract.
void BM_RecordCopy(benchmark::State& state) {
  const auto records = Records(1000);
  std::size_t i = 0;
  for (auto _ : state) {
    lossguard::wire::StepRecord r = records[i];
    benchmark::DoNotOptimize(r);
    i = (i + 1) % records.size();
  }
}
BENCHMARK(BM_RecordCopy);

}  // namespace
