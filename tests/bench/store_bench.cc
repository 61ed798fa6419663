// The storage half of ingest, without HTTP: Store::Ingest of 1,000-record batches of consecutive
// steps (the common case), with the canonical-JSON step included as in the server.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "store/store.h"

namespace {

lossguard::wire::StepRecord Record(std::int64_t step) {
  lossguard::wire::StepRecord r;
  r.run = "bench";
  r.step = step;
  r.ga_steps = 8;
  r.micro_batch_size = 4;
  r.loss = 2.0 + 1.0 / static_cast<double>(step + 1);
  r.ref_loss = r.loss;
  r.grad_norm = 1.25;
  r.tokens = 16384;
  r.vocab_size = 32000;
  r.lr = 3e-4;
  return r;
}

void BM_StoreIngest(benchmark::State& state) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "lossguard-store-bench-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  {
    lossguard::store::StoreOptions options;
    options.durability = state.range(0) ? lossguard::store::Durability::kFull
                                        : lossguard::store::Durability::kNormal;
    lossguard::store::Store store(std::filesystem::path(pattern) / "db", options);
    std::int64_t step = 0;
    for (auto _ : state) {
      state.PauseTiming();
      std::vector<lossguard::wire::StepRecord> batch;
      for (int i = 0; i < 1000; ++i) batch.push_back(Record(step++));
      state.ResumeTiming();
      benchmark::DoNotOptimize(store.Ingest(batch));
    }
    state.SetItemsProcessed(state.iterations() * 1000);
  }
  std::filesystem::remove_all(pattern);
}
BENCHMARK(BM_StoreIngest)->ArgName("sync_full")->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
