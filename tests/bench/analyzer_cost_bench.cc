// What the analyzers cost at ingest: the real lossguard-server with --analyzers on vs off, same
// records, same run, alternating trials; reports records/s of each and the ratio.
//   build/tests/bench/analyzer_cost_bench            (defaults: the figures in README.md)
// Records are what the collector sends for GA 8 (eight micro-batches, ref_loss, grad_norm, noise),
// spread over `runs` runs streaming at once, so that every detector does its work.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

#include "bench_http.h"
#include "lossguard/client/http_client.h"
#include "support/processes.h"

namespace {

using Clock = std::chrono::steady_clock;
using lossguard::testing::ServerProcess;

// NDJSON bodies of `batch` records each: step-major over `runs` runs.
std::vector<std::string> Bodies(std::int64_t records, std::int64_t batch, int runs) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> length(100, 2048);
  std::lognormal_distribution<double> noise(0.0, 0.05);
  std::vector<std::string> bodies;
  std::string body;
  for (std::int64_t i = 0; i < records; ++i) {
    const std::int64_t step = i / runs;
    const int run = static_cast<int>(i % runs);
    const double level = 2.0 + 8.0 * std::exp(-static_cast<double>(step) / 2000.0);
    std::string micro;
    double sum = 0;
    std::int64_t tokens = 0;
    for (int m = 0; m < 8; ++m) {
      int t = length(rng);
      double loss = level * noise(rng);
      sum += loss * t;
      tokens += t;
      micro += std::string(m ? "," : "") + R"({"loss":)" + std::to_string(loss) + R"(,"tokens":)" +
               std::to_string(t) + R"(,"loss_sum":)" + std::to_string(loss * t) + "}";
    }
    body += R"({"run":"run-)" + std::to_string(run) + R"(","step":)" + std::to_string(step) +
            R"(,"ga_steps":8,"micro_batch_size":4,"loss":)" + std::to_string(sum / tokens) +
            R"(,"ref_loss":)" + std::to_string(sum / tokens) + R"(,"grad_norm":)" +
            std::to_string(1.2 * noise(rng)) + R"(,"tokens":)" + std::to_string(tokens) +
            R"(,"vocab_size":32000,"lr":0.0003,"micro":[)" + micro + "]}\n";
    if ((i + 1) % batch == 0) {
      bodies.push_back(std::move(body));
      body.clear();
    }
  }
  return bodies;
}

double Trial(const std::filesystem::path& dir, const std::vector<std::string>& bodies,
             bool analyzers, int clients, int trial) {
  auto db = dir / ("trial-" + std::to_string(trial) + ".db");
  ServerProcess server(
      {.db = db, .extra_args = {"--sync", "full", "--analyzers", analyzers ? "on" : "off"}});
  double seconds = lossguard::bench::PostConcurrently(server.url(), bodies, clients);
  server.Stop(SIGTERM, std::chrono::seconds(30));
  std::filesystem::remove(db);
  return static_cast<double>(bodies.size()) / seconds;  // batches/s
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lossguard analyzer cost at ingest (real server, --analyzers on vs off)"};
  std::int64_t records = 200'000, batch = 1000;
  int runs = 8, clients = 2, trials = 3;
  app.add_option("--records", records, "records per trial")->capture_default_str();
  app.add_option("--batch", batch, "records per request")->capture_default_str();
  app.add_option("--runs", runs, "runs streaming at once")->capture_default_str();
  app.add_option("--clients", clients, "concurrent connections")->capture_default_str();
  app.add_option("--trials", trials, "trials of each, alternating")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "lossguard-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    const std::filesystem::path dir = pattern;
    const auto bodies = Bodies(records, batch, runs);
    std::vector<double> on, off;
    for (int t = 0; t < trials; ++t) {
      off.push_back(Trial(dir, bodies, false, clients, 2 * t) * static_cast<double>(batch));
      on.push_back(Trial(dir, bodies, true, clients, 2 * t + 1) * static_cast<double>(batch));
      std::printf("trial %d: analyzers off %.0f records/s, on %.0f records/s\n", t, off.back(),
                  on.back());
    }
    std::filesystem::remove_all(dir);
    std::sort(on.begin(), on.end());
    std::sort(off.begin(), off.end());
    const double on_median = on[on.size() / 2], off_median = off[off.size() / 2];
    std::printf(
        "analyzer cost: median %.0f records/s with analyzers, %.0f without: on/off = %.3f "
        "(%lld records of GA-8 runs with micro-batch data, %d runs, batches of %lld, %d clients, "
        "--sync full)\n",
        on_median, off_median, on_median / off_median, static_cast<long long>(records), runs,
        static_cast<long long>(batch), clients);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "analyzer_cost_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
