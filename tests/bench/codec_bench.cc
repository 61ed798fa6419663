// The ingest hot path before SQLite: parse + validate a 1,000-record batch, and canonicalise it.
#include <benchmark/benchmark.h>

#include "lossguard/wire/record_codec.h"

namespace {

std::string Batch(int records) {
  std::string out;
  for (int i = 0; i < records; ++i) {
    out +=
        R"({"run":"bench","step":)" + std::to_string(i) +
        R"(,"rank":0,"world_size":1,"ga_steps":8,"micro_batch_size":1,"loss":2.345678,"ref_loss":2.301234,)"
        R"("grad_norm":1.234567,"tokens":4096,"vocab_size":32000,"lr":0.0003,"time":1795000000.5})"
        "\n";
  }
  return out;
}

void BM_ParseNdjsonBatch(benchmark::State& state) {
  std::string body = Batch(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto parsed = lossguard::wire::ParseBatch(body, lossguard::wire::BodyFormat::kNdjson);
    benchmark::DoNotOptimize(parsed);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_ParseNdjsonBatch)->Arg(1000);

void BM_CanonicalJson(benchmark::State& state) {
  auto parsed = lossguard::wire::ParseBatch(Batch(1000), lossguard::wire::BodyFormat::kNdjson);
  for (auto _ : state) {
    for (const auto& record : parsed.value())
      benchmark::DoNotOptimize(lossguard::wire::CanonicalJson(record));
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_CanonicalJson);

}  // namespace
